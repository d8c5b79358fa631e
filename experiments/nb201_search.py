"""NASI on NAS-Bench-201: hyper-parameters tuned on validation accuracy, then the results table.

Two commands (JSON + Markdown out, raw runs cached under ``--cache`` so a re-run reuses them):

    python experiments/nb201_search.py tune  --output docs/runs/nb201_tune.json
    python experiments/nb201_search.py table --tuned docs/runs/nb201_tune.json \\
        --output docs/runs/nb201_search_table.json

**Replay.** Every ``G_t`` is taken at ``alpha_0`` and ``R`` depends on the cell only through
``s``, so one search run with ``mu = 0`` (its history holds ``s_t`` and
``G_t = grad_alpha s(A_t)``) gives, exactly, the search at any ``(mu, nu)``, NASI-FIX or
NASI-ADA, and any ``T`` up to its length (:func:`nasi_jax.search.replay`, tested equal to
fresh searches). So ``tune`` runs one ``mu = 0`` search per ``(batch size, tau)`` and replays
a grid of ``(mu, nu)``; ``table`` runs one ``mu = 0`` search of 4T = 400 steps per data mode
and reads NASI-FIX / NASI-ADA at T = 100 and 4T = 400 from it.

**Tuning procedure** (``tune``): real CIFAR-10 batches (NB201's train half), tuning seeds
1000-1007 (never used in the table), 2T = 200 steps. Grid: ``(b, tau)`` in
``{(16, 1), (8, 1), (8, 0.5), (8, 2)}``; per run, ``mu`` in ``{0.5, 1, 2, 4}`` and ``nu``
(FIX: the ceiling; ADA: its initial value) at the 5 %, 10 %, ..., 95 % quantiles of the
``s`` values the run saw, ADA also at 2, 5 and 10 times their maximum; and ``mu = 0`` (no
ceiling); each with both read-outs of the cell (``argmax`` over all ops, or over all but
``none`` as DARTS reads genotypes: :func:`nasi_jax.search.read_out`). ``mu = 0`` is reported
as its own row ("no ceiling"); NASI-FIX and NASI-ADA take their best ``mu > 0``. Criterion: the mean over seeds of the selected cell's **CIFAR-10 validation
accuracy** (NB201 ``cifar10-valid``), averaged over the cells selected at T = 100 and at
2T = 200. ``(b, tau)`` is shared by FIX and ADA (best sum of the two variants' criteria),
then each variant takes its best ``(mu, nu)``. Test accuracies are not read while tuning.

**Search network.** The supernet searched is NB201's skeleton with C = 16 and
``cells_per_stage = 1`` (``--cells-per-stage``), not the 5 of the evaluation network: on
this 2-core CPU a step then takes about 0.12 s instead of 0.55 s (b = 16), which is what
makes 10 seeds x 3 data modes x 400 steps fit in a session.

**Other values.** Everything this script does not set is the ``paper`` preset's (hard
samples, xi = 1, PyTorch init, BatchNorm with batch statistics; nu = 100 and the ``argmax``
read-out, which the ``mu = 0`` runs do not use): the defaults the tuning ran with.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

import numpy as np

from _common import (add_data_args, config_record, fmt_ms, load_run, md_header, md_row,  # noqa: E402
                     run_record, save_run, write_result)  # (experiments/ is on sys.path)

from nasi_jax import data as data_lib, nb201_table, search
from nasi_jax.spaces import get_space, nb201

PAPER_ROWS = [  # PAPER.md section 6 (Shu et al., ICLR 2022, Table 1)
    {"method": "NASI (T), paper", "cifar10_test": "93.08±0.24", "cifar100_test": "69.51±0.59",
     "imagenet16_test": "40.87±0.85", "cost": "30 GPU-s"},
    {"method": "NASI (4T), paper", "cifar10_test": "93.55±0.10", "cifar100_test": "71.20±0.14",
     "imagenet16_test": "44.84±1.41", "cost": "120 GPU-s"},
    {"method": "best cell in the space", "cifar10_test": "94.37", "cifar100_test": "73.51",
     "imagenet16_test": "47.31", "cost": "-"},
]
TUNE_GRID = [(16, 1.0), (8, 1.0), (8, 0.5), (8, 2.0)]
TUNE_SEEDS = list(range(1000, 1008))
TUNE_STEPS = 200
MUS = (0.5, 1.0, 2.0, 4.0)
QUANTILES = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))
ADA_MULTIPLES = (2.0, 5.0, 10.0)
TABLE_SEEDS = list(range(10))
TABLE_MODES = ("real", "random-labels", "random")
T, T4 = 100, 400


def base_config(args, **kw) -> search.SearchConfig:
    """The search this script runs: the ``paper`` preset's values (the defaults the tuning ran
    with) but for the network size, ``mu = 0`` and ``kw``."""
    return search.SearchConfig(space="nb201", preset="paper", channels=args.channels,
                               cells_per_stage=args.cells_per_stage, mu=0.0, **kw)


# The execution every cached run is keyed with (the defaults; ``conv_impl='auto'`` is
# ``xla`` for NB201): execution choices give the same numbers.
KEY_EXECUTION = search.Execution(conv_impl="xla")


def run_path(cfg: search.SearchConfig, seeds, cache: str) -> str:
    """Where the ``mu = 0`` run of ``cfg`` and ``seeds`` is cached: keyed by the config (all
    fields in the layout of the config before presets and the execution split, but the
    read-out, which the run does not use) and the seeds."""
    conf = {k: v for k, v in config_record(cfg, KEY_EXECUTION).items()
            if k not in ("readout", "preset", "objective", "candidates")}
    key = json.dumps({"config": conf, "seeds": list(seeds)}, sort_keys=True)
    return os.path.join(cache, hashlib.sha256(key.encode()).hexdigest()[:16] + ".npz")


def mu0_run(cfg: search.SearchConfig, seeds, args) -> search.SearchResult:
    """The ``mu = 0`` search, cached in ``args.cache`` by config and seeds."""
    path = run_path(cfg, seeds, args.cache)
    if os.path.exists(path):
        res, meta = load_run(path, dataclasses.replace(cfg, readout="argmax"), seeds)
        want_dir = None if cfg.data == "random" else os.path.abspath(args.data_dir)
        if meta.get("data_dir") != want_dir or "G" not in res.history:
            raise SystemExit(f"{path} was written from other data ({meta.get('data_dir')}) or by an "
                             "older version without G; delete it or choose another --cache")
        return res
    images = labels = None
    if cfg.data != "random":
        images, labels = data_lib.load_data_for_mode(cfg.data, args.data_dir)
    print(f"[nb201_search] {cfg.data} b={cfg.batch_size} tau={cfg.tau} T={cfg.steps} "
          f"seeds {seeds[0]}..{seeds[-1]}", file=sys.stderr, flush=True)
    res = search.run_search(cfg, seeds, images=images, labels=labels, progress=True)
    save_run(path, res, data_dir=args.data_dir)
    return res


def selected(res, table, *, mu, nu, nu_mode, steps, metrics, readout="argmax"):
    """Per-seed benchmark lookups of the cells the replayed search selects."""
    _, ops = search.replay(res, mu=mu, nu=nu, nu_mode=nu_mode, steps=steps, readout=readout)
    strs = [nb201.arch_to_str(o) for o in ops]
    rows = [table.lookup(a) for a in strs]
    return strs, {m: [r[m] for r in rows] for m in metrics}


def candidates(s: np.ndarray):
    """The (variant, mu, nu) grid for one run's ``s`` values (module docstring)."""
    qs = np.quantile(s, QUANTILES)
    out = [("none", 0.0, 1.0, "no ceiling")]
    for mu in MUS:
        out += [("fix", mu, float(v), f"q{int(round(q * 100)):02d}") for q, v in zip(QUANTILES, qs)]
        out += [("ada", mu, float(v), f"q{int(round(q * 100)):02d}") for q, v in zip(QUANTILES, qs)]
        out += [("ada", mu, float(m * s.max()), f"{m:g}x max") for m in ADA_MULTIPLES]
    return out


def tune(args):
    table = nb201_table.load_nb201_table(args.benchmark)
    t0 = time.perf_counter()
    runs = []
    for b, tau in args.grid:
        cfg = base_config(args, steps=TUNE_STEPS, batch_size=b, tau=tau, data="real")
        res = mu0_run(cfg, TUNE_SEEDS, args)
        rows = []
        for variant, mu, nu, label in candidates(res.history["s"]):
            mode = "adaptive" if variant == "ada" else "fixed"
            for readout in get_space("nb201").readouts:
                vals = []
                for steps in (T, TUNE_STEPS):
                    _, acc = selected(res, table, mu=mu, nu=nu, nu_mode=mode, steps=steps,
                                      metrics=("cifar10_valid",), readout=readout)
                    vals.append(float(np.mean(acc["cifar10_valid"])))
                rows.append({"variant": variant, "mu": mu, "nu": nu, "nu_label": label,
                             "readout": readout, "cifar10_valid_T": vals[0],
                             "cifar10_valid_2T": vals[1], "criterion": float(np.mean(vals))})
        best = {v: max((r for r in rows if r["variant"] == v), key=lambda r: r["criterion"])
                for v in ("fix", "ada", "none")}
        runs.append({"batch_size": b, "tau": tau, "run_time_s": res.run_time_s,
                     "compile_time_s": res.compile_time_s, "best": best, "grid": rows})
        print(f"[tune] b={b} tau={tau}: FIX {best['fix']['criterion']:.2f} "
              f"(mu={best['fix']['mu']}, nu={best['fix']['nu']:.4g}, {best['fix']['readout']}), "
              f"ADA {best['ada']['criterion']:.2f} (mu={best['ada']['mu']}, nu={best['ada']['nu']:.4g}, "
              f"{best['ada']['readout']})", file=sys.stderr, flush=True)
    chosen_run = max(runs, key=lambda r: r["best"]["fix"]["criterion"] + r["best"]["ada"]["criterion"])
    choice = {v: {"batch_size": chosen_run["batch_size"], "tau": chosen_run["tau"],
                  "mu": chosen_run["best"][v]["mu"], "nu": chosen_run["best"][v]["nu"],
                  "nu_mode": "adaptive" if v == "ada" else "fixed",
                  "readout": chosen_run["best"][v]["readout"],
                  "criterion_cifar10_valid": chosen_run["best"][v]["criterion"]}
              for v in ("fix", "ada")}
    out = run_record(__file__, args.argv, grid=args.grid,
                     procedure=__doc__.split("**Tuning procedure**")[1].split("**Search network.**")[0].strip(),
                     seeds=TUNE_SEEDS, steps=TUNE_STEPS, data="real",
                     search_network={"channels": args.channels, "cells_per_stage": args.cells_per_stage},
                     choice=choice, runs=runs, wall_time_s=time.perf_counter() - t0)
    md = ["# NASI on NB201: hyper-parameters chosen on CIFAR-10 validation accuracy", "",
          f"Command: `{out['command']}`", "",
          *md_header("b", "tau", "best FIX (mu, nu, read-out)", "FIX valid", "best ADA (mu, nu_init, read-out)",
                     "ADA valid", "run s")]
    for r in runs:
        f, a = r["best"]["fix"], r["best"]["ada"]
        md.append(f"| {r['batch_size']} | {r['tau']:g} | {f['mu']:g}, {f['nu']:.4g} ({f['nu_label']}), {f['readout']} | "
                  f"{f['criterion']:.2f} | {a['mu']:g}, {a['nu']:.4g} ({a['nu_label']}), {a['readout']} | {a['criterion']:.2f} | "
                  f"{r['run_time_s']:.0f} |")
    md += ["", "Chosen: " + "; ".join(f"{v.upper()}: b={c['batch_size']}, tau={c['tau']:g}, mu={c['mu']:g}, "
                                       f"nu={c['nu']:.4g} ({c['nu_mode']}), read-out {c['readout']}"
                                       for v, c in choice.items()), ""]
    write_result(args.output, out, "\n".join(md))
    print(json.dumps(choice))


def table_cmd(args):
    with open(args.tuned) as fh:
        choice = json.load(fh)["choice"]
    if (choice["fix"]["batch_size"], choice["fix"]["tau"]) != (choice["ada"]["batch_size"], choice["ada"]["tau"]):
        raise SystemExit("the tuned FIX and ADA must share batch size and tau (one run serves both)")
    b, tau = choice["fix"]["batch_size"], choice["fix"]["tau"]
    table = nb201_table.load_nb201_table(args.benchmark)
    seeds = list(range(args.seeds))
    # search wall time: one seed alone, 4T steps, timed here (not the cached batch runs,
    # which shared the machine with other jobs); the T time is its first quarter
    tcfg = base_config(args, steps=T4, batch_size=b, tau=tau, data="random")
    timing = search.run_search(tcfg, [0])
    per_seed_s = timing.run_time_s
    print(f"[table] one 4T search: {per_seed_s:.1f}s (+{timing.compile_time_s:.1f}s compile)",
          file=sys.stderr, flush=True)
    results = []
    for mode in [m for m in TABLE_MODES if m in args.modes.split(",")]:
        cfg = base_config(args, steps=T4, batch_size=b, tau=tau, data=mode)
        res = mu0_run(cfg, seeds, args)
        variants = [("NASI-FIX", choice["fix"]), ("NASI-ADA", choice["ada"]),
                    ("no ceiling (mu=0)", {**choice["fix"], "mu": 0.0, "nu": 1.0, "nu_mode": "fixed"})]
        for name, c in variants:
            for steps in (T, T4):
                strs, acc = selected(res, table, mu=c["mu"], nu=c["nu"], nu_mode=c["nu_mode"],
                                     steps=steps, metrics=tuple(nb201_table.METRICS), readout=c["readout"])
                results.append({"data": mode, "method": name, "steps": steps, "mu": c["mu"],
                                "nu": c["nu"], "nu_mode": c["nu_mode"], "readout": c["readout"],
                                "cells": strs,
                                "summary": {m: nb201_table.summarize(v) for m, v in acc.items()},
                                "search_s_per_seed": per_seed_s * steps / T4,
                                "compile_s": timing.compile_time_s,
                                "batch_run_s": res.run_time_s})
    rng = np.random.default_rng(0)  # the random-cell baseline: a uniform cell per seed
    codes = rng.choice(len(table.arch_strs), size=len(seeds), replace=False)
    rand = [table.lookup(int(c)) for c in codes]
    results.append({"data": "-", "method": "random cell (uniform)", "steps": 0,
                    "cells": [r["arch_str"] for r in rand],
                    "summary": {m: nb201_table.summarize([r[m] for r in rand]) for m in nb201_table.METRICS},
                    "search_s_per_seed": 0.0, "compile_s": 0.0})
    out = run_record(__file__, args.argv, tuned=choice, seeds=seeds,
                     search_network={"channels": args.channels, "cells_per_stage": args.cells_per_stage,
                                     "batch_size": b, "tau": tau},
                     results=results, paper=PAPER_ROWS)
    md = md_header("data", "method", "T", "CIFAR-10 test", "CIFAR-100 test", "ImageNet16-120 test",
                   "CIFAR-10 valid", "search s / seed")
    for r in results:
        s = r["summary"]
        md.append(md_row([r["data"], r["method"], r["steps"] or "-", fmt_ms(s["cifar10_test"]),
                          fmt_ms(s["cifar100_test"]), fmt_ms(s["imagenet16_test"]),
                          fmt_ms(s["cifar10_valid"]), f"{r['search_s_per_seed']:.1f}"]))
    for p in PAPER_ROWS:
        md.append(f"| real | {p['method']} | | {p['cifar10_test']} | {p['cifar100_test']} | "
                  f"{p['imagenet16_test']} | | {p['cost']} |")
    text = "\n".join([f"Command: `{out['command']}`", "", *md, ""])
    write_result(args.output, out, text)
    print(text)


def _grid(text):
    try:
        return [(int(b), float(t)) for b, t in (item.split(":") for item in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid takes b:tau pairs such as '16:1,8:0.5', got {text!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("tune", "table"):
        q = sub.add_parser(name)
        q.add_argument("--output", required=True)
        add_data_args(q)
        q.add_argument("--cache", default="runs/nb201_mu0")
        q.add_argument("--channels", type=int, default=16)
        q.add_argument("--cells-per-stage", type=int, default=1)
        if name == "tune":
            q.add_argument("--grid", type=_grid, default=TUNE_GRID,
                           help="(b, tau) pairs to run, e.g. '16:1,8:0.5' (default: the documented grid)")
        if name == "table":
            q.add_argument("--tuned", required=True)
            q.add_argument("--seeds", type=int, default=len(TABLE_SEEDS))
            q.add_argument("--modes", default=",".join(TABLE_MODES),
                           help=f"data modes to run, a subset of {','.join(TABLE_MODES)}")
    args = p.parse_args(argv)
    args.argv = argv  # the record's command
    (tune if args.cmd == "tune" else table_cmd)(args)


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
