"""The training-free league on NAS-Bench-201: every proxy of the harness, at our protocol and at
its published one, against the table's accuracies, beside the published correlations.

    python experiments/league.py --cells 2000 --protocols ours,published --output docs/runs/league_2000.json
    nasi score --proxy ensemble --cells all --output runs/ensemble_all/ensemble.csv   # then:
    python experiments/league.py --cells all --reuse runs/ensemble_all --protocols ours \
        --proxies synflow,params,flops,meco@agnostic,az_expressivity@agnostic,\
az_progressivity@agnostic,az_trainability@agnostic --output docs/runs/league_all.json

* **Cells**: a uniform sample of ``--cells`` distinct NB201 cells drawn with ``--seed``
  (:func:`nasi_jax.scoring.parse_cells`), ``all`` (15 625) or a file of cells; every proxy
  scores the same cells with ``theta_0`` and the batch of ``PRNGKey(seed)``, through
  :func:`nasi_jax.scoring.score_cells` (one compilation per proxy and protocol; resumable
  CSVs in ``--workdir``, so the command can be stopped and rerun). The slow proxies
  (``--slow``, :data:`SLOW_DEFAULT`: the exact NTK trace, GraSP, TE-NAS) score
  the last N cells of the sample only (the sample's order is random, so a uniform sample
  too; NumPy's draw of 2 000 cells with seed 0 ends with its draw of 1 000, in another
  order); their rows say how many.
* **Reuse**: a cell's score depends on the cell, the settings and the seed only, so cells
  already scored in another score file of the workdir (or of ``--reuse`` folders) with the
  same settings (:func:`config_key`: without the settings a proxy ignores) are read, not
  recomputed (:func:`prefill`).
* **Protocols**: ``ours`` (``--batch-size`` 16 real CIFAR-10 images of NB201's train half with
  their labels, PyTorch's default init, train-mode BatchNorm) for every proxy; ``published``
  where the proxy's paper used another (:data:`PUBLISHED_PROTOCOL`: ZiCo two batches of 64
  real images, MeCo one real image, AZ-NAS 64 Gaussian inputs and Kaiming-normal weights,
  NAS-Bench-Suite-Zero's 64 real images for its data-reading proxies; SynFlow reads one
  all-ones image whatever the batch); ``agnostic`` (16 Gaussian inputs and random labels) for
  the proxies that read data (:data:`AGNOSTIC_PROXIES`). ``NAME@PROTOCOL`` in ``--proxies``
  picks one. Only CIFAR-10 images exist here: the CIFAR-100 and ImageNet16-120 correlations
  score the cells on CIFAR-10 inputs (the published ones used each dataset's own).
* **Correlations**: Spearman rho and Kendall tau-b of ``sign * score`` with CIFAR-10,
  CIFAR-100, ImageNet16-120 test and CIFAR-10 validation accuracy (200 epochs); ties get
  average ranks. A cell whose score is undefined in the paper's code (``-inf``/NaN there: an
  identity or a dead cell for AZ-NAS) gets :func:`nasi_jax.scoring.proxies.floor`, ranks last
  with the others like it, and is counted (``floored``). Beside them: Spearman rho between a
  published protocol's score and ours (b 16) cell by cell, and between ours and
  NAS-Bench-Suite-Zero's published score of the same cell (``--nbsz``; its proxies only).
* **Cost** (``--rates``): cells per second after compiling, each row's settings timed alone
  on a few cells once and kept in the workdir; run it on a quiet machine (the scoring itself
  may share the CPU: its progress rates are not the cost).
* **Published values** (:data:`PUBLISHED`): each with its source and protocol; they are
  quoted, not re-derived.
* **Aggregates**: ``sum_m log(rank_m / N)`` over components (AZ-NAS's non-linear rank
  aggregation, :func:`nasi_jax.scoring.rank_aggregate`). An *ensemble*'s components are chosen
  on CIFAR-10 *validation* accuracy of the cells with an even position in the sample
  (``tune``) and reported on the odd ones (``check``) and on all; the registered aggregates
  (:data:`nasi_jax.scoring.ensemble.ENSEMBLES`, ``nasi score --proxy NAME``) are reported
  wherever the rows hold all their components.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import itertools
import json
import os
import sys
import time

import numpy as np
from scipy import stats

from _common import add_data_args, md_header, run_record, write_result  # noqa: E402  (experiments/ is on sys.path)

from proxy_correlation import NBSZ_COLUMN, nbsz_scores  # noqa: E402

from nasi_jax import data as data_lib, nb201_table, records, scoring
from nasi_jax.scoring import proxies as proxies_lib
from nasi_jax.scoring.cells import cells_digest, meta_path, read_scores
from nasi_jax.scoring.ensemble import ENSEMBLES, rank_aggregate
from nasi_jax.spaces import nb201

METRICS = ("cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid")
OURS = {"batch_size": 16, "data": "real", "init_scheme": "pytorch"}
PUBLISHED_PROTOCOL = {
    "zico": ({"batch_size": 128, "data": "real"}, "2 batches of 64 real images (ZiCo's search scripts: batch 64, 2 batches)"),
    "meco": ({"batch_size": 1, "data": "real"}, "one real image (MeCo's NB201 script)"),
    "az_expressivity": ({"batch_size": 64, "data": "random", "init_scheme": "kaiming"},
                        "64 Gaussian inputs, Kaiming-normal weights (AZ-NAS's NB201 notebook)"),
    "az_progressivity": ({"batch_size": 64, "data": "random", "init_scheme": "kaiming"}, "as az_expressivity"),
    "az_trainability": ({"batch_size": 64, "data": "random", "init_scheme": "kaiming"}, "as az_expressivity"),
    **{name: ({"batch_size": 64, "data": "real"}, "64 real images (NAS-Bench-Suite-Zero's protocol)")
       for name in ("grad_norm", "snip", "grasp", "jacob_cov", "naswot")},
}
DATA_FREE = {"synflow": ("data", "batch_size"), "params": ("data", "batch_size", "init_scheme"),
             "flops": ("data", "batch_size", "init_scheme")}
"""Settings a proxy does not read (SynFlow's input is one all-ones image; parameters and FLOPs
read neither data nor weights): two scorings differing only there give the same scores, so a
score file of either serves both (:func:`prefill`, the registered aggregates)."""
SLOW_DEFAULT = "ntk_trace:40,grasp:100,grasp@published:40,te_nas_cond:300"
"""Rows scored on the last N cells of the sample (a uniform sample too): the three slowest
proxies, at 0.1-2 cells/s on 2 cores (cells/s in docs/runs/league_2000.md), within one
session's CPU; every other row, published protocols included, scores all the cells. On an
accelerator, pass ``--slow ''`` for all cells."""
AGNOSTIC_PROXIES = ("nasi", "jacob_cov", "naswot", "zico", "meco", "swap", "az_expressivity",
                    "az_progressivity", "az_trainability")
"""Scored again with ``--protocols agnostic``: 16 Gaussian inputs and random labels (AZ-NAS's
scores on Kaiming-normal weights, as their paper): what an aggregate can use without data."""


def protocol_settings(name: str, proto: str, batch_size: int):
    """``(ScoreConfig overrides, description)`` of ``name`` under ``proto``, or None if the
    proxy has no such protocol."""
    if proto == "ours":
        return {**OURS, "batch_size": batch_size}, "ours"
    if proto == "published":
        if name not in PUBLISHED_PROTOCOL:
            return None
        kw, what = PUBLISHED_PROTOCOL[name]
        return {**OURS, **kw}, what
    if proto == "agnostic":
        if name not in AGNOSTIC_PROXIES:
            return None
        init = "kaiming" if name.startswith("az_") else "pytorch"
        return ({**OURS, "batch_size": batch_size, "data": "random", "init_scheme": init},
                "Gaussian inputs, random labels")
    raise SystemExit(f"unknown protocol {proto!r}: choose ours, published, agnostic")


def config_key(cfg: dict) -> str:
    """A comparable form of a ScoreConfig dict, without the settings its proxy ignores."""
    cfg = {k: v for k, v in cfg.items() if k not in DATA_FREE.get(cfg["proxy"], ())}
    return json.dumps(cfg, sort_keys=True)


def prefill(out: str, cfg, seed: int, index, archs, dirs) -> int:
    """Start ``out`` (a ``score_cells`` CSV and its meta file) from the cells of ``index``
    (arch strings ``archs``) already scored with the same settings (:func:`config_key`) and
    seed in other score files under ``dirs``: a cell's score depends on the cell, the weights and the batch, which the
    settings and the seed fix, not on which other cells are scored. Returns the cells taken.
    Does nothing if ``out`` exists."""
    if os.path.exists(out):
        return 0
    want, seen, done = config_key(dataclasses.asdict(cfg)), set(index), {}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.csv"))):
            if not os.path.exists(meta_path(path)) or os.path.abspath(path) == os.path.abspath(out):
                continue
            with open(meta_path(path)) as fh:
                meta = json.load(fh)
            cfg_old = {**dataclasses.asdict(cfg), **meta.get("config", {})}
            if (meta.get("seed") != seed or meta.get("index_kind") != "nb201"
                    or config_key(cfg_old) != want):
                continue
            for ix, v in read_scores(path, meta["config"]["proxy"]).items():
                if ix in seen:
                    done.setdefault(ix, v)
    if not done:
        return 0
    records.write_json_atomic(meta_path(out), {  # the meta first: a CSV without it is refused
        "config": dataclasses.asdict(cfg), "seed": int(seed), "index_kind": "nb201", "cells": len(index),
        "cells_sha256_16": cells_digest(index), "prefilled_from": sorted(dirs), "prefilled_cells": len(done)})
    lines = [f"{ix},{arch},{done[ix]!r}" for ix, arch in zip(index, archs) if ix in done]
    records.write_text_atomic(out, "\n".join([f"index,arch_str,{cfg.proxy}", *lines]) + "\n")
    return len(done)


NBSZ = "NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS 2022 D&B), 9 445 cells without unreachable ops, CIFAR-10 test, b = 64"
PUBLISHED = {  # proxy: (spearman C10, kendall C10, source and protocol)
    "synflow": (0.78, None, NBSZ), "naswot": (0.81, None, NBSZ), "jacob_cov": (0.80, None, NBSZ),
    "params": (0.80, None, NBSZ), "flops": (0.77, None, NBSZ), "snip": (0.60, None, NBSZ),
    "grad_norm": (0.60, None, NBSZ), "grasp": (0.54, None, NBSZ),
    "te_nas_cond": (0.72, None, "TE-NAS as re-run in the VKDNW paper (CVPR 2025), NB201 CIFAR-10"),
    "zico": (0.80, 0.589, "ZiCo (ICLR 2023), all 15 625 NATS-Bench TSS cells, CIFAR-10 test (as quoted in issue 19; "
                          "the table itself not read here)"),
    "meco": (0.89, None, "MeCo (NeurIPS 2023) abstract, NATS-Bench TSS, CIFAR-10 (its script: cifar10-valid's test accuracy)"),
    "swap": (0.90, None, "SWAP (ICLR 2024) abstract: with its size regularisation, CIFAR-100 validation accuracy"),
    "az_expressivity": (None, 0.569, "AZ-NAS (CVPR 2024) Table 4 (secondary copy), all cells, CIFAR-10 test"),
    "az_progressivity": (None, 0.521, "AZ-NAS (CVPR 2024) Table 4 (secondary copy)"),
    "az_trainability": (None, 0.349, "AZ-NAS (CVPR 2024) Table 4 (secondary copy)"),
    "ensemble": (0.913, 0.741, "AZ-NAS aggregate of E, P, T, FLOPs: its repository's NB201 notebook, all cells, b = 64"),
}
DEFAULT_PROXIES = ("synflow", "params", "flops", "meco", "az_expressivity", "az_progressivity",
                   "az_trainability", "swap", "naswot", "jacob_cov", "zico", "nasi", "grad_norm", "snip",
                   "te_nas_cond", "grasp", "ntk_trace")
ENSEMBLE_POOL = ("synflow", "naswot", "jacob_cov", "zico", "meco", "swap", "az_expressivity",
                 "az_progressivity", "az_trainability", "flops", "nasi")


def correlations(x, accs, mask=None):
    """Spearman and Kendall tau-b of ``x`` with each accuracy in ``accs``, over ``mask``."""
    mask = np.ones(len(x), bool) if mask is None else mask
    return {m: {"spearman": float(stats.spearmanr(x[mask], acc[mask])[0]),
                "kendall": float(stats.kendalltau(x[mask], acc[mask])[0])} for m, acc in accs.items()}


def measure_rate(cfg, ops, seed, images, labels, n):
    """``(cells per second, compile seconds)`` of :func:`nasi_jax.scoring.score_cells` for
    ``cfg``: one cell compiles; then the first ``n // 4`` and the first ``n`` cells of ``ops``
    are timed, and the rate is the difference's (the per-call set-up cancels). The scorer reads
    ``images`` and ``labels`` only where ``cfg.data`` needs them."""
    kw = dict(seed=seed, images=images, labels=labels, progress=False)

    def timed(cells):
        t0 = time.perf_counter()
        scoring.score_cells(cfg, cells, **kw)
        return time.perf_counter() - t0
    compile_s = timed(ops[:1])
    k = max(1, n // 4)
    small, big = timed(ops[:k]), timed(ops[:n])
    return (n - k) / max(big - small, 1e-9), compile_s


def best_cell(x, accs, archs) -> dict:
    """The cell of the sample with the highest ``x`` (the first of ties) and its accuracies:
    what scoring every cell of the sample and keeping the best would select."""
    i = int(np.argmax(x))
    return {"arch": archs[i], **{m: float(accs[m][i]) for m in METRICS}}


def choose_ensemble(scores, signs, acc_valid, tune, pool, max_size=5):
    """The subset of ``pool`` (up to ``max_size`` components) whose rank aggregate has the
    highest Spearman rho with CIFAR-10 validation accuracy on the ``tune`` cells
    (exhaustive; ranks computed on the tune cells alone)."""
    best = (-2.0, ())
    pool = [p for p in pool if p in scores]
    for k in range(1, max_size + 1):
        for combo in itertools.combinations(pool, k):
            agg = rank_aggregate([scores[c][tune] for c in combo], [signs[c] for c in combo])
            rho = stats.spearmanr(agg, acc_valid[tune])[0]
            if rho > best[0]:
                best = (float(rho), combo)
    return best


def parse_plan(proxies: str, protocols: str, batch_size: int):
    """``[(name, protocol, settings, description)]`` from ``--proxies`` (``NAME`` under every
    protocol of ``--protocols`` it has, or ``NAME@PROTOCOL`` under that one only)."""
    plan = []
    for item in [s for s in proxies.split(",") if s]:
        name, _, only = item.partition("@")
        if name not in scoring.PROXIES:
            raise SystemExit(f"unknown proxy {name!r}; choose from {sorted(scoring.PROXIES)}")
        for proto in ([only] if only else [s for s in protocols.split(",") if s]):
            got = protocol_settings(name, proto, batch_size)
            if got is None and only:
                raise SystemExit(f"{name} has no {proto!r} protocol")
            if got is not None:
                plan.append((name, proto, *got))
    return plan


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="1000", help="a number N (a seeded sample) or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=OURS["batch_size"], help="our protocol's batch")
    p.add_argument("--proxies", default=",".join(DEFAULT_PROXIES),
                   help="comma-separated NAME (under each of --protocols it has) or NAME@PROTOCOL")
    p.add_argument("--protocols", default="ours,published,agnostic",
                   help="comma-separated: ours, published, agnostic")
    p.add_argument("--slow", default=SLOW_DEFAULT,
                   help="NAME:N or NAME@PROTOCOL:N,... proxies (under every protocol, or the one named) "
                        "scored on the last N cells of the sample only (a uniform sample too: the "
                        "sample's order is random)")
    p.add_argument("--ensemble-max", type=int, default=4, help="most components in the ensemble")
    p.add_argument("--reuse", default="", help="comma-separated folders of other score files (as "
                   "--workdir's) whose cells, scored with the same settings and seed, are read, not "
                   "recomputed (the workdir is always searched)")
    p.add_argument("--rates", action="store_true",
                   help="measure each row's cells/s after compiling (--rate-cells cells; 8 for the "
                        "--slow proxies) once, kept in the workdir; run it on a quiet machine")
    p.add_argument("--rate-cells", type=int, default=32)
    add_data_args(p, nbsz=True)
    p.add_argument("--workdir", default="runs/league")
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    table = nb201_table.load_nb201_table(a.benchmark)
    ops, index, _ = scoring.parse_cells(a.cells, seed=a.seed, table=table)
    archs = [nb201.arch_to_str(o) for o in ops]
    canon = [str(table.columns["canonical_arch_str"][i]) for i in index]
    accs = {m: np.array([table.lookup(i)[m] for i in index]) for m in METRICS}
    images, labels = data_lib.load_data_for_mode("real", a.data_dir)
    published_scores = nbsz_scores(a.nbsz, canon)
    plan = parse_plan(a.proxies, a.protocols, a.batch_size)
    slow = {k: int(v) for k, v in (item.split(":") for item in a.slow.split(",") if item)}
    dirs = [a.workdir] + [d for d in a.reuse.split(",") if d]
    t0 = time.perf_counter()
    rows, scores, signs, configs = [], {}, {}, {}
    spec = os.path.splitext(os.path.basename(a.cells))[0]  # a number, 'all' or a file of cells
    tag = f"{spec}_s{a.seed}"
    n_all = len(ops)
    for name, proto, kw, what in plan:
        cfg = scoring.ScoreConfig(proxy=name, **kw)
        n = min(slow.get(f"{name}@{proto}", slow.get(name, n_all)), n_all)
        sub = tag if n == n_all else f"{spec}_last{n}_s{a.seed}"
        out = os.path.join(a.workdir, f"{name}_{cfg.data}_b{cfg.batch_size}_{cfg.init_scheme}_{sub}.csv")
        part = slice(n_all - n, n_all)  # the last n cells of the sample (all of them when n = n_all)
        taken = prefill(out, cfg, a.seed, index[part], archs[part], dirs)
        print(f"[league] {name} ({proto}: b {cfg.batch_size}, {cfg.data}, {cfg.init_scheme}; {n} cells"
              f"{f', {taken} read from earlier score files' if taken else ''})", file=sys.stderr, flush=True)
        vals = scoring.score_cells(cfg, ops[part], seed=a.seed, output=out, index=index[part], index_kind="nb201",
                                   images=images, labels=labels, progress=True)  # read as cfg.data needs
        vals = np.concatenate([np.full(n_all - n, np.nan), vals])
        mask = ~np.isnan(vals)
        sign = scoring.PROXIES[name].sign
        key = name if proto == "ours" else f"{name}@{proto}"
        scores[key], signs[key], configs[key] = vals, sign, dataclasses.asdict(cfg)
        floored = int(np.sum(vals[mask] <= float(proxies_lib.floor(np.float32)) / 2))
        pub = PUBLISHED.get(name, (None, None, None))
        row = {"proxy": name, "protocol": proto, "protocol_text": what, "config": dataclasses.asdict(cfg),
               "cells": int(mask.sum()), "floored": floored, "sign": sign,
               "correlations": correlations(sign * vals, accs, mask),
               "published": {"spearman_cifar10": pub[0], "kendall_cifar10": pub[1], "source": pub[2]}}
        if proto != "ours" and name in scores:  # how this protocol's score agrees with ours (b 16)
            both = mask & ~np.isnan(scores[name])
            row["vs_ours"] = {"cells": int(both.sum()),
                              "spearman": float(stats.spearmanr(vals[both], scores[name][both])[0]),
                              "ours_spearman_cifar10_test": float(stats.spearmanr(
                                  scores[name][both], accs["cifar10_test"][both])[0])}
        col = NBSZ_COLUMN.get(name)
        if col and published_scores:  # NAS-Bench-Suite-Zero's score of the same cell
            sel = [i for i in np.flatnonzero(mask) if archs[i] == canon[i] and canon[i] in published_scores]
            theirs = np.array([float(published_scores[canon[i]][col]) for i in sel])
            ok = theirs > -1e7  # -1e8 marks a failed published score
            if ok.sum() > 2:
                row["vs_nbsz"] = {"cells": int(ok.sum()), "batch_size": 64,
                                  "spearman": float(stats.spearmanr(vals[sel][ok], theirs[ok])[0])}
        if a.rates:
            m = min(8 if n < n_all else a.rate_cells, n)
            rate_file = os.path.join(a.workdir, f"rate_{key}_{cfg.data}_b{cfg.batch_size}_{cfg.init_scheme}_n{m}.json")
            if not os.path.exists(rate_file):
                r, c = measure_rate(cfg, ops[part], a.seed, images, labels, m)
                records.write_json_atomic(rate_file, {"cells_per_s": r, "compile_s": c, "cells": m,
                                                      "config": dataclasses.asdict(cfg), "versions": records.versions()})
            with open(rate_file) as fh:
                row["rate"] = json.load(fh)
        rows.append(row)
        c = row["correlations"]["cifar10_test"]
        print(f"[league] {key}: rho {c['spearman']:.3f} tau {c['kendall']:.3f}", file=sys.stderr, flush=True)

    full = {k for k, v in scores.items() if not np.isnan(v).any()}  # aggregates use full columns only
    pos = np.arange(n_all)
    tune, check = pos % 2 == 0, pos % 2 == 1
    ens = {}
    pools = {"any data": [c for c in ENSEMBLE_POOL if c in full],
             "data-agnostic": [c for c in ("synflow", "flops", "params") if c in full]
             + [f"{c}@agnostic" for c in AGNOSTIC_PROXIES if f"{c}@agnostic" in full]}
    for label, pool in pools.items():
        if len(pool) < 2 or (label == "any data" and set(pool) <= set(pools["data-agnostic"])):
            continue  # nothing to choose, or the data-agnostic pool again
        rho_tune, combo = choose_ensemble(scores, signs, accs["cifar10_valid"], tune, pool, a.ensemble_max)
        agg = rank_aggregate([scores[c] for c in combo], [signs[c] for c in combo])
        ens[f"{label} ensemble"] = {"pool": pool, "components": list(combo), "tune_spearman_cifar10_valid": rho_tune,
                                    "check": correlations(agg, accs, check), "all": correlations(agg, accs),
                                    "best_cell": best_cell(agg, accs, archs)}
    by_config = {config_key(configs[k]): k for k in full}
    for ename, e in ENSEMBLES.items():  # the registered aggregates (nasi score --proxy NAME)
        keys = [by_config.get(config_key(dataclasses.asdict(scoring.ScoreConfig(proxy=c.proxy, **dict(c.settings)))))
                for c in e.components]
        if all(keys):
            agg = rank_aggregate([scores[k] for k in keys], [signs[k] for k in keys])
            ens[f"`{ename}` (nasi score --proxy {ename})"] = {"components": keys, "all": correlations(agg, accs),
                                                             "best_cell": best_cell(agg, accs, archs)}
    for label, suffix in (("AZ-NAS E+P+T+FLOPs, our protocol", ""), ("AZ-NAS E+P+T+FLOPs, b 16 Gaussian", "@agnostic")):
        az = [f"{c}{suffix}" for c in ("az_expressivity", "az_progressivity", "az_trainability")]
        if all(c in full for c in az) and "flops" in full:
            agg = rank_aggregate([scores[c] for c in az + ["flops"]], [1, 1, 1, 1])
            ens[label] = {"components": az + ["flops"], "all": correlations(agg, accs),
                          "best_cell": best_cell(agg, accs, archs)}
    out = run_record(__file__, argv, cells=n_all, cells_spec=a.cells, seed=a.seed, rows=rows,
                     ensemble=ens, tune_cells=int(tune.sum()), check_cells=int(check.sum()),
                     wall_time_s=time.perf_counter() - t0)
    text = markdown(out, a, tune, check)
    write_result(a.output, out, text)
    print(text)


def markdown(out, a, tune, check) -> str:
    """The league's page: one row per proxy and protocol, then the aggregates."""
    md = [f"Command: `{out['command']}`", "",
          f"{out['cells']} NB201 cells (seed {a.seed}; slow proxies on the last cells of the sample, "
          "as the cells column says); ρ / τ of sign·score (average ranks for ties); C100 and IN16 "
          "correlations with CIFAR-10 inputs. *vs ours*: Spearman ρ between this protocol's score and "
          "ours (b 16) over the cells (in brackets: our protocol's ρ C10 test on the same cells); *vs NBSZ*: between ours and NAS-Bench-Suite-Zero's published score "
          "of the same cell (b 64, cells without unreachable ops); cells/s: after compiling, measured "
          "alone on this machine (`--rates`).", "",
          *md_header("proxy", "protocol", "cells", "floored", "ρ C10 test", "τ C10 test", "ρ C100 test",
                     "ρ IN16 test", "ρ C10 valid", "vs ours", "vs NBSZ (cells)", "cells/s",
                     "published ρ / τ (C10)", "source")]
    for r in out["rows"]:
        c, pub, cfg = r["correlations"], r["published"], r["config"]
        pubs = " / ".join("-" if v is None else f"{v:.3f}".rstrip("0") for v in (pub["spearman_cifar10"], pub["kendall_cifar10"]))
        nbsz = f"{r['vs_nbsz']['spearman']:.3f} ({r['vs_nbsz']['cells']})" if "vs_nbsz" in r else "-"
        rate = f"{r['rate']['cells_per_s']:.2f}" if "rate" in r else "-"
        vo = r.get("vs_ours")
        vs_ours = "-" if vo is None else f"{vo['spearman']:.3f} ({vo['ours_spearman_cifar10_test']:.3f})"
        md.append(f"| {r['proxy']} | {r['protocol']} (b {cfg['batch_size']}, {cfg['data']}, {cfg['init_scheme']}) | "
                  f"{r['cells']} | {r['floored']} | {c['cifar10_test']['spearman']:.3f} | {c['cifar10_test']['kendall']:.3f} | "
                  f"{c['cifar100_test']['spearman']:.3f} | {c['imagenet16_test']['spearman']:.3f} | "
                  f"{c['cifar10_valid']['spearman']:.3f} | {vs_ours} | {nbsz} | "
                  f"{rate} | {pubs} | {pub['source'] or '-'} |")
    if out["ensemble"]:
        md += ["", "Aggregates (sum of log rank / N; higher is better). An *ensemble*'s components are chosen "
               f"(up to {a.ensemble_max}, exhaustively) on CIFAR-10 validation ρ of the {int(tune.sum())} tune "
               f"cells (even positions), checked on the {int(check.sum())} others; the registered aggregates "
               "(`nasi_jax.scoring.ensemble.ENSEMBLES`) were fixed before this run.", "",
               *md_header("aggregate", "components", "cells", "ρ C10 test", "τ C10 test", "ρ C100 test",
                          "ρ IN16 test", "ρ C10 valid", "its best cell: C10 / C100 / IN16 test")]
        for label, e in out["ensemble"].items():
            lines = ([(f"{label}, check cells", int(check.sum()), e["check"])] if "check" in e else [])
            lines.append((f"{label}, all", out["cells"], e["all"]))
            for text_, n, c in lines:
                b = e.get("best_cell") if text_.endswith(", all") else None
                best = "-" if b is None else " / ".join(f"{b[m]:.2f}" for m in METRICS[:3])
                md.append(f"| {text_} | {', '.join(e['components'])} | {n} | {c['cifar10_test']['spearman']:.3f} | "
                          f"{c['cifar10_test']['kendall']:.3f} | {c['cifar100_test']['spearman']:.3f} | "
                          f"{c['imagenet16_test']['spearman']:.3f} | {c['cifar10_valid']['spearman']:.3f} | {best} |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
