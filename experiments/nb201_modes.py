"""NASI on NB201 at full depth in the three data modes: tuning check, Table 2, held-out seeds.

Five commands, each writing JSON (and Markdown beside it); raw mu = 0 runs are cached in
``--cache`` (``experiments/_common.py``), so a re-run reuses them:

    python experiments/nb201_modes.py tune    --output docs/runs/nb201_modes_tune.json
    python experiments/nb201_modes.py timing  --output docs/runs/nb201_modes_timing.json
    python experiments/nb201_modes.py table   --tuned docs/runs/nb201_modes_tune.json \\
        --timing docs/runs/nb201_modes_timing.json --output docs/runs/nb201_modes_table.json
    python experiments/nb201_modes.py heldout --output docs/runs/nb201_heldout.json
    (the acceptance runs are plain `nasi search` commands: experiments/README.md)

**Search network and values.** NB201's skeleton at full depth (C = 16, N = 5), b = 8,
tau = 0.5 and the read-out without ``none``, as in the ``nb201-*`` presets
(:mod:`nasi_jax.presets`); ``mu``, ``nu`` and the ceiling rule per data mode as below.

**Tuning check** (``tune``). The real-data values (FIX: mu = 1, nu = 91.22 fixed; ADA: mu = 1,
nu from 115.2, adaptive) were chosen on CIFAR-10 validation accuracy with real batches
(``experiments/nb201_search.py tune --cells-per-stage 5``). For each data mode (real,
random labels, Gaussian inputs), one mu = 0 search on the tuning seeds 1000-1007 (2T = 200
steps) is replayed over the same grid as that tuning (mu in {0.5, 1, 2, 4}, nu at the 5 %,
..., 95 % quantiles of the run's s, ADA also at 2, 5, 10 times their maximum; both
read-outs), scored by the same criterion: the mean CIFAR-10 *validation* accuracy of the
selected cells at T = 100 and 2T = 200. Decision rule, fixed before looking: a data mode keeps
the real-data values unless its own best grid point beats them on the criterion by more than
two standard errors of the paired per-seed difference (8 seeds); then it takes its own.
Test accuracies are not read.

**Table 2 at full depth** (``table``). Seeds 0-9, one mu = 0 search of 4T = 400 steps per data
mode, replayed into NASI-FIX and NASI-ADA with each mode's values (its presets) at T = 100 and
4T = 400 (the first T steps of a run are the T-step search), plus the no-ceiling row
(mu = 0). Beside them, training-free baselines at the same wall-clock budget per seed (from
``timing``): a uniform random cell, and best-of-k by parameter count, k = the cells
``nasi score --proxy params`` scores in one search's time (k cells drawn uniformly without
replacement, the one with most parameters kept; 10 draws). And the paper's rows.

**Timing** (``timing``): run alone on a quiet machine. One seed of the ``nb201-random`` preset
for 4T steps (compile apart; T's time is its first quarter) and the parameter-count proxy's
rate on 2 000 cells, in the same process.

**Held-out check** (``heldout``). The chosen FIX preset of each data mode re-run as fresh
searches (not replays) on seeds 2000-2009, used neither in tuning nor in the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from _common import (add_data_args, config_record, fmt_ms, md_header, md_row, mu0_run,  # noqa: E402
                     run_record, write_result)  # (experiments/ is on sys.path)
from nb201_search import ADA_MULTIPLES, MUS, PAPER_ROWS, QUANTILES  # noqa: E402

from nasi_jax import data as data_lib, nb201_table, presets, search
from nasi_jax.core import objective
from nasi_jax.spaces import get_space, nb201

MODES = ("real", "random-labels", "random")
TUNE_SEEDS = list(range(1000, 1008))
TABLE_SEEDS = list(range(10))
HELDOUT_SEEDS = list(range(2000, 2010))
T, T2, T4 = 100, 200, 400
FIX_PRESET = {m: f"nb201-{m}" for m in MODES}
ADA_PRESET = {m: f"nb201-{m}-ada" for m in MODES}


def mode_config(mode: str, steps: int) -> search.SearchConfig:
    """The mu = 0 search of a data mode: the FIX preset's network, b and tau."""
    return search.SearchConfig(preset=FIX_PRESET[mode], steps=steps, mu=0.0)


def preset_values(name: str) -> dict:
    v = presets.get_preset(name).values_for("nb201")
    return {k: v[k] for k in ("mu", "nu", "nu_mode", "readout")}


def lookups(res, table, *, mu, nu, nu_mode, readout, steps):
    """The benchmark rows of the cells the replayed search selects, one per seed."""
    _, ops = search.replay(res, mu=mu, nu=nu, nu_mode=nu_mode, steps=steps, readout=readout)
    return [table.lookup(nb201.arch_to_str(o)) for o in ops]


def per_seed_criterion(res, table, **values) -> np.ndarray:
    """Per seed: CIFAR-10 validation accuracy of the cell at T and at 2T, averaged."""
    vals = [[r["cifar10_valid"] for r in lookups(res, table, steps=t, **values)] for t in (T, T2)]
    return np.mean(vals, axis=0)


def grid(s: np.ndarray):
    qs = np.quantile(s, QUANTILES)
    for mu in MUS:
        for q, v in zip(QUANTILES, qs):
            yield "fix", dict(mu=mu, nu=float(v), nu_mode="fixed"), f"q{int(round(q * 100)):02d}"
            yield "ada", dict(mu=mu, nu=float(v), nu_mode="adaptive"), f"q{int(round(q * 100)):02d}"
        for m in ADA_MULTIPLES:
            yield "ada", dict(mu=mu, nu=float(m * s.max()), nu_mode="adaptive"), f"{m:g}x max"


def tune(args):
    table = nb201_table.load_nb201_table(args.benchmark)
    out = run_record(__file__, args.argv, seeds=TUNE_SEEDS, steps=T2,
                     procedure=__doc__.split("**Tuning check**")[1].split("**Table 2")[0].strip(),
                     modes={})
    for mode in MODES:
        res = mu0_run(mode_config(mode, T2), TUNE_SEEDS, data_dir=args.data_dir, cache=args.cache)
        s = res.history["s"]
        row = {"s_quantiles": {q: float(v) for q, v in zip(("q10", "q50", "q90"), np.quantile(s, [.1, .5, .9]))}}
        for variant, name in (("fix", "nb201-real"), ("ada", "nb201-real-ada")):
            carried = preset_values(name)
            base = per_seed_criterion(res, table, **carried)
            best = None
            for v, values, label in grid(s):
                if v != variant:
                    continue
                for readout in get_space("nb201").readouts:
                    crit = per_seed_criterion(res, table, readout=readout, **values)
                    if best is None or crit.mean() > best["criterion"]:
                        best = dict(values, readout=readout, nu_label=label, criterion=float(crit.mean()),
                                    per_seed=crit)
            diff = best.pop("per_seed") - base
            se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
            switch = bool(diff.mean() > 2 * se)
            row[variant] = {"carried": dict(carried, criterion=float(base.mean()),
                                            penalty_active=float(np.mean(s > carried["nu"]))
                                            if carried["nu_mode"] == "fixed" else None),
                            "best_of_grid": best, "gain": float(diff.mean()), "gain_se": se,
                            "decision": "own values" if switch else "keep the real-data values"}
        out["modes"][mode] = row
        print(f"[tune] {mode}: FIX carried {row['fix']['carried']['criterion']:.2f}, grid best "
              f"{row['fix']['best_of_grid']['criterion']:.2f} (+{row['fix']['gain']:.2f} ± {row['fix']['gain_se']:.2f}) "
              f"-> {row['fix']['decision']}; ADA carried {row['ada']['carried']['criterion']:.2f}, best "
              f"{row['ada']['best_of_grid']['criterion']:.2f} -> {row['ada']['decision']}", file=sys.stderr)
    md = [f"Command: `{out['command']}`", "",
          *md_header("data", "s q10 / q50 / q90", "FIX, real-data values", "FIX, best of the grid",
                     "gain ± s.e.", "FIX decision", "ADA, real-data values", "ADA, best of the grid",
                     "gain ± s.e.", "ADA decision")]
    for mode, r in out["modes"].items():
        q = r["s_quantiles"]
        cells = [mode, f"{q['q10']:.1f} / {q['q50']:.1f} / {q['q90']:.1f}"]
        for v in ("fix", "ada"):
            b = r[v]["best_of_grid"]
            cells += [f"{r[v]['carried']['criterion']:.2f}",
                      f"{b['criterion']:.2f} (mu {b['mu']:g}, nu {b['nu']:.4g} {b['nu_label']}, {b['readout']})",
                      f"{r[v]['gain']:+.2f} ± {r[v]['gain_se']:.2f}", r[v]["decision"]]
        md.append(md_row(cells))
    write_result(args.output, out, "\n".join(md) + "\n")
    print("\n".join(md))


def timing(args):
    """One seed of the default preset for 4T steps, and the params proxy's rate, alone."""
    from nasi_jax import scoring
    cfg = search.SearchConfig(preset="nb201-random", steps=T4)
    res = search.run_search(cfg, [0])
    cells = [nb201.code_to_ops(int(c)) for c in np.random.default_rng(0).choice(15625, 2000, replace=False)]
    scfg = scoring.ScoreConfig(proxy="params")
    scoring.score_cells(scfg, cells[:8], seed=0, progress=False)  # compile
    t0 = time.perf_counter()
    scoring.score_cells(scfg, cells, seed=0, progress=False)
    params_s = time.perf_counter() - t0
    out = run_record(__file__, args.argv, config=config_record(res.config, res.execution),
                     search_4T_s=res.run_time_s, search_T_s=res.run_time_s * T / T4,
                     compile_s=res.compile_time_s, params_cells=len(cells), params_s=params_s,
                     params_cells_per_s=len(cells) / params_s)
    write_result(args.output, out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("created", "config", "versions")}))


def best_of_k_params(table, k: int, draws: int = 10) -> list[dict]:
    """Per draw: k cells uniformly without replacement, the one with most parameters."""
    params = table.column("params_M")
    out = []
    for d in range(draws):
        idx = np.random.default_rng(d).choice(len(table), size=min(k, len(table)), replace=False)
        out.append(table.lookup(int(idx[int(np.argmax(params[idx]))])))
    return out


def _summary(rows):
    return {m: nb201_table.summarize([r[m] for r in rows]) for m in nb201_table.METRICS}


def table_cmd(args):
    table = nb201_table.load_nb201_table(args.benchmark)
    with open(args.tuned) as fh:
        tuned = json.load(fh)
    with open(args.timing) as fh:
        tm = json.load(fh)
    results = []
    for mode in MODES:
        decision = tuned["modes"][mode]
        res = mu0_run(mode_config(mode, T4), TABLE_SEEDS, data_dir=args.data_dir, cache=args.cache)
        s = res.history["s"]
        for method, name, v in (("NASI-FIX", FIX_PRESET[mode], "fix"), ("NASI-ADA", ADA_PRESET[mode], "ada")):
            values = preset_values(name)
            assert decision[v]["decision"] == "keep the real-data values" or values == {
                k: decision[v]["best_of_grid"][k] for k in values}, f"preset {name} disagrees with {args.tuned}"
            for steps in (T, T4):
                rows = lookups(res, table, steps=steps, **values)
                path = np.asarray(objective.ceiling_path(s[:, :steps], values["nu"], values["nu_mode"]))
                results.append({"data": mode, "method": method, "preset": name, "steps": steps, **values,
                                "cells": [r["arch_str"] for r in rows], "summary": _summary(rows),
                                "penalty_active": float(np.mean(s[:, :steps] > path)),
                                "s_median": float(np.median(s[:, :steps])),
                                "budget_s": tm["search_T_s"] * steps / T})
        for steps in (T, T4):
            rows = lookups(res, table, mu=0.0, nu=1.0, nu_mode="fixed", readout="argmax-no-none", steps=steps)
            results.append({"data": mode, "method": "no ceiling (mu=0)", "steps": steps,
                            "cells": [r["arch_str"] for r in rows], "summary": _summary(rows),
                            "budget_s": tm["search_T_s"] * steps / T})
    for steps in (T, T4):
        budget = tm["search_T_s"] * steps / T
        k = int(budget * tm["params_cells_per_s"])
        rows = best_of_k_params(table, k)
        results.append({"data": "-", "method": f"best-of-k by #params (k = {min(k, len(table))})", "steps": steps,
                        "k": k, "cells": [r["arch_str"] for r in rows], "summary": _summary(rows),
                        "budget_s": budget})
    rand = [table.lookup(int(i)) for i in np.random.default_rng(0).choice(len(table), 10, replace=False)]
    results.append({"data": "-", "method": "random cell (uniform)", "steps": 0,
                    "cells": [r["arch_str"] for r in rand], "summary": _summary(rand), "budget_s": 0.0})
    out = run_record(__file__, args.argv, seeds=TABLE_SEEDS, timing=tm,
                     search_network={"channels": 16, "cells_per_stage": 5, "batch_size": 8, "tau": 0.5},
                     results=results, paper=PAPER_ROWS)
    text = "\n".join([f"Command: `{out['command']}`", "", *table_markdown(results), ""])
    write_result(args.output, out, text)
    print(text)


def table_markdown(results) -> list[str]:
    md = md_header("data", "method", "T", "CIFAR-10 test", "CIFAR-100 test", "ImageNet16-120 test",
                   "CIFAR-10 valid", "s > nu", "budget s / seed")
    for r in results:
        s = r["summary"]
        act = f"{100 * r['penalty_active']:.0f} %" if "penalty_active" in r else "-"
        md.append(md_row([r["data"], r["method"], r["steps"] or "-", fmt_ms(s["cifar10_test"]),
                          fmt_ms(s["cifar100_test"]), fmt_ms(s["imagenet16_test"]),
                          fmt_ms(s["cifar10_valid"]), act, f"{r['budget_s']:.1f}"]))
    for p in PAPER_ROWS:
        md.append(f"| real | {p['method']} | | {p['cifar10_test']} | {p['cifar100_test']} | "
                  f"{p['imagenet16_test']} | | | {p['cost']} |")
    return md


def heldout(args):
    table = nb201_table.load_nb201_table(args.benchmark)
    out = run_record(__file__, args.argv, seeds=HELDOUT_SEEDS, results=[])
    for mode in MODES:
        cfg = search.SearchConfig(preset=FIX_PRESET[mode])
        images, labels = data_lib.load_data_for_mode(mode, args.data_dir)
        res = search.run_search(cfg, HELDOUT_SEEDS, images=images, labels=labels, progress=True)
        rows = [table.lookup(a) for a in res.arch_strs]
        out["results"].append({"data": mode, "preset": cfg.preset, "config": config_record(res.config, res.execution),
                               "cells": res.arch_strs, "summary": _summary(rows),
                               "run_time_s": res.run_time_s})
        print(f"[heldout] {mode}: " + ", ".join(f"{m} {fmt_ms(s)}" for m, s in _summary(rows).items()),
              file=sys.stderr, flush=True)
    md = [f"Command: `{out['command']}`", "",
          *md_header("data", "preset", "seeds", "CIFAR-10 test", "CIFAR-100 test", "ImageNet16-120 test",
                     "CIFAR-10 valid")]
    for r in out["results"]:
        s = r["summary"]
        md.append(md_row([r["data"], r["preset"], "2000-2009", fmt_ms(s["cifar10_test"]),
                          fmt_ms(s["cifar100_test"]), fmt_ms(s["imagenet16_test"]),
                          fmt_ms(s["cifar10_valid"])]))
    write_result(args.output, out, "\n".join(md) + "\n")
    print("\n".join(md))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("tune", "timing", "table", "heldout"):
        q = sub.add_parser(name)
        q.add_argument("--output", required=True)
        add_data_args(q)
        q.add_argument("--cache", default="runs/nb201_mu0_n5")
        if name == "table":
            q.add_argument("--tuned", required=True)
            q.add_argument("--timing", required=True)
    args = p.parse_args(argv)
    args.argv = argv  # the record's command
    {"tune": tune, "timing": timing, "table": table_cmd, "heldout": heldout}[args.cmd](args)


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
