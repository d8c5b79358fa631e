"""The training-free league on NAS-Bench-201: every proxy of the harness, at our protocol and at
its published one, against the table's accuracies, beside the published correlations.

    python experiments/league.py --cells 1000 --output docs/runs/league_1000.json

* **Cells**: a uniform sample of ``--cells`` distinct NB201 cells drawn with ``--seed``
  (:func:`nasi_jax.scoring.parse_cells`), or ``all`` (15 625); every proxy scores the same
  cells with ``theta_0`` and the batch of ``PRNGKey(seed)``, through
  :func:`nasi_jax.scoring.score_cells` (one compilation per proxy and protocol; resumable
  CSVs in ``--workdir``, so the command can be stopped and rerun).
* **Protocols**: ``ours`` (``--batch-size`` 16 real CIFAR-10 images of NB201's train half with
  their labels, PyTorch's default init, train-mode BatchNorm) for every proxy; ``published``
  where the proxy's paper used another (:data:`PUBLISHED_PROTOCOL`: ZiCo two batches of 64
  real images, MeCo one real image, AZ-NAS 64 Gaussian inputs and Kaiming-normal weights;
  NASWOT's and jacob_cov's 64 images are ``experiments/proxy_correlation.py``'s protocol
  check); ``agnostic`` (16 Gaussian inputs and random
  labels) for the proxies that read data (:data:`AGNOSTIC_PROXIES`). Only CIFAR-10 images exist here: the CIFAR-100
  and ImageNet16-120 correlations score the cells on CIFAR-10 inputs (the published ones used
  each dataset's own).
* **Correlations**: Spearman rho and Kendall tau-b of ``sign * score`` with CIFAR-10,
  CIFAR-100, ImageNet16-120 test and CIFAR-10 validation accuracy (200 epochs); ties get
  average ranks. A cell whose score is undefined in the paper's code (``-inf``/NaN there: an
  identity or a dead cell for AZ-NAS) gets :func:`nasi_jax.scoring.proxies.floor`, ranks last
  with the others like it, and is counted (``floored``).
* **Published values** (:data:`PUBLISHED`): each with its source and protocol; they are
  quoted, not re-derived.
* **Ensemble**: ``sum_m log(rank_m / N)`` over components (AZ-NAS's non-linear rank
  aggregation, :func:`nasi_jax.scoring.rank_aggregate`), the components chosen on CIFAR-10 *validation* accuracy of the cells with an
  even position in the sample (``tune``) and reported on the odd ones (``check``) and on all.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import time

import numpy as np
from scipy import stats

from _common import add_data_args, md_header, run_record, write_result  # noqa: E402  (experiments/ is on sys.path)

from nasi_jax import data as data_lib, nb201_table, scoring
from nasi_jax.scoring import proxies as proxies_lib
from nasi_jax.scoring.ensemble import rank_aggregate

METRICS = ("cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid")
OURS = {"batch_size": 16, "data": "real", "init_scheme": "pytorch"}
PUBLISHED_PROTOCOL = {
    "zico": ({"batch_size": 128, "data": "real"}, "2 batches of 64 real images (ZiCo's search scripts: batch 64, 2 batches)"),
    "meco": ({"batch_size": 1, "data": "real"}, "one real image (MeCo's NB201 script)"),
    "az_expressivity": ({"batch_size": 64, "data": "random", "init_scheme": "kaiming"},
                        "64 Gaussian inputs, Kaiming-normal weights (AZ-NAS's NB201 notebook)"),
    "az_progressivity": ({"batch_size": 64, "data": "random", "init_scheme": "kaiming"}, "as az_expressivity"),
    "az_trainability": ({"batch_size": 64, "data": "random", "init_scheme": "kaiming"}, "as az_expressivity"),
}
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
DEFAULT_PROXIES = ("nasi", "grad_norm", "snip", "synflow", "jacob_cov", "naswot", "params", "flops",
                   "zico", "meco", "swap", "az_expressivity", "az_progressivity", "az_trainability")
ENSEMBLE_POOL = ("synflow", "naswot", "jacob_cov", "zico", "meco", "swap", "az_expressivity",
                 "az_progressivity", "az_trainability", "flops", "nasi")


def correlations(x, accs, mask=None):
    mask = np.ones(len(x), bool) if mask is None else mask
    return {m: {"spearman": float(stats.spearmanr(x[mask], acc[mask])[0]),
                "kendall": float(stats.kendalltau(x[mask], acc[mask])[0])} for m, acc in accs.items()}


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="1000", help="a number N (a seeded sample) or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=OURS["batch_size"], help="our protocol's batch")
    p.add_argument("--proxies", default=",".join(DEFAULT_PROXIES))
    p.add_argument("--protocols", default="ours,published,agnostic",
                   help="comma-separated: ours, published, agnostic")
    p.add_argument("--ensemble-max", type=int, default=4, help="most components in the ensemble")
    add_data_args(p)
    p.add_argument("--workdir", default="runs/league")
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    table = nb201_table.load_nb201_table(a.benchmark)
    ops, index, _ = scoring.parse_cells(a.cells, seed=a.seed, table=table)
    accs = {m: np.array([table.lookup(i)[m] for i in index]) for m in METRICS}
    images, labels = data_lib.load_data_for_mode("real", a.data_dir)
    names = [s for s in a.proxies.split(",") if s]
    protocols = [s for s in a.protocols.split(",") if s]
    t0 = time.perf_counter()
    rows, scores, signs = [], {}, {}
    tag = f"{a.cells}_s{a.seed}"
    for name in names:
        for proto in protocols:
            got = protocol_settings(name, proto, a.batch_size)
            if got is None:
                continue
            kw, what = got
            cfg = scoring.ScoreConfig(proxy=name, **kw)
            out = os.path.join(a.workdir, f"{name}_{cfg.data}_b{cfg.batch_size}_{cfg.init_scheme}_{tag}.csv")
            print(f"[league] {name} ({proto}: b {cfg.batch_size}, {cfg.data}, {cfg.init_scheme})", file=sys.stderr, flush=True)
            vals = scoring.score_cells(cfg, ops, seed=a.seed, output=out, index=index, index_kind="nb201",
                                       images=images if cfg.data != "random" else None,
                                       labels=labels if cfg.data == "real" else None, progress=True)
            sign = scoring.PROXIES[name].sign
            key = name if proto == "ours" else f"{name}@{proto}"
            scores[key], signs[key] = vals, sign
            floored = int(np.sum(vals <= float(proxies_lib.floor(np.float32)) / 2))
            pub = PUBLISHED.get(name, (None, None, None))
            rows.append({"proxy": name, "protocol": proto, "protocol_text": what, "config": dataclasses.asdict(cfg),
                         "cells": len(vals), "floored": floored, "sign": sign,
                         "correlations": correlations(sign * vals, accs),
                         "published": {"spearman_cifar10": pub[0], "kendall_cifar10": pub[1], "source": pub[2]}})
            c = rows[-1]["correlations"]["cifar10_test"]
            print(f"[league] {key}: rho {c['spearman']:.3f} tau {c['kendall']:.3f}", file=sys.stderr, flush=True)

    # the ensembles: components chosen on validation accuracy of the tune half
    pos = np.arange(len(ops))
    tune, check = pos % 2 == 0, pos % 2 == 1
    ens = {}
    pools = {"any data": [c for c in ENSEMBLE_POOL if c in scores],
             "data-agnostic": [c for c in ("synflow", "flops", "params") if c in scores]
             + [f"{c}@agnostic" for c in AGNOSTIC_PROXIES if f"{c}@agnostic" in scores]}
    for label, pool in pools.items():
        if len(pool) < 2:
            continue
        rho_tune, combo = choose_ensemble(scores, signs, accs["cifar10_valid"], tune, pool, a.ensemble_max)
        agg = rank_aggregate([scores[c] for c in combo], [signs[c] for c in combo])
        ens[label] = {"pool": pool, "components": list(combo), "tune_spearman_cifar10_valid": rho_tune,
                      "check": correlations(agg, accs, check), "all": correlations(agg, accs)}
    for label, suffix in (("AZ-NAS E+P+T+FLOPs, our protocol", ""), ("AZ-NAS E+P+T+FLOPs, its protocol", "@published"),
                          ("AZ-NAS E+P+T+FLOPs, b 16 Gaussian", "@agnostic")):
        az = [f"{c}{suffix}" for c in ("az_expressivity", "az_progressivity", "az_trainability")]
        if all(c in scores for c in az) and "flops" in scores:
            ens[label] = {"components": az + ["flops"], "all": correlations(
                rank_aggregate([scores[c] for c in az + ["flops"]], [1, 1, 1, 1]), accs)}
    out = run_record(__file__, argv, cells=len(ops), cells_spec=a.cells, seed=a.seed, rows=rows,
                     ensemble=ens, tune_cells=int(tune.sum()), check_cells=int(check.sum()),
                     wall_time_s=time.perf_counter() - t0)
    md = [f"Command: `{out['command']}`", "",
          f"{len(ops)} NB201 cells (seed {a.seed}); ρ / τ of sign·score (average ranks for ties); "
          "C100 and IN16 correlations with CIFAR-10 inputs.", "",
          *md_header("proxy", "protocol", "floored", "ρ C10 test", "τ C10 test", "ρ C100 test", "ρ IN16 test",
                     "ρ C10 valid", "published ρ / τ (C10)", "source")]
    for r in rows:
        c, pub = r["correlations"], r["published"]
        cfg = r["config"]
        pubs = " / ".join("-" if v is None else f"{v:.3f}".rstrip("0") for v in (pub["spearman_cifar10"], pub["kendall_cifar10"]))
        md.append(f"| {r['proxy']} | {r['protocol']} (b {cfg['batch_size']}, {cfg['data']}, {cfg['init_scheme']}) | "
                  f"{r['floored']} | {c['cifar10_test']['spearman']:.3f} | {c['cifar10_test']['kendall']:.3f} | "
                  f"{c['cifar100_test']['spearman']:.3f} | {c['imagenet16_test']['spearman']:.3f} | "
                  f"{c['cifar10_valid']['spearman']:.3f} | {pubs} | {pub['source'] or '-'} |")
    if ens:
        md += ["", "Aggregates (sum of log rank / N; higher is better). An ensemble's components are chosen "
               f"(up to {a.ensemble_max}, exhaustively) on CIFAR-10 validation ρ of the {int(tune.sum())} tune "
               f"cells (even positions), checked on the {int(check.sum())} others.", "",
               *md_header("aggregate", "components", "cells", "ρ C10 test", "τ C10 test", "ρ C100 test",
                          "ρ IN16 test", "ρ C10 valid")]
        for label, e in ens.items():
            lines = ([(f"{label} ensemble, check cells", int(check.sum()), e["check"])] if "check" in e else [])
            lines.append((f"{label}{' ensemble' if 'check' in e else ''}, all", len(ops), e["all"]))
            for text_, n, c in lines:
                md.append(f"| {text_} | {', '.join(e['components'])} | {n} | {c['cifar10_test']['spearman']:.3f} | "
                          f"{c['cifar10_test']['kendall']:.3f} | {c['cifar100_test']['spearman']:.3f} | "
                          f"{c['imagenet16_test']['spearman']:.3f} | {c['cifar10_valid']['spearman']:.3f} |")
    text = "\n".join(md) + "\n"
    write_result(a.output, out, text)
    print(text)


if __name__ == "__main__":
    main()
