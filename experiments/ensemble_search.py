"""NASI proposes, the aggregate chooses: tuning the ``nasi+ensemble`` search and its ten-seed table.

    python experiments/ensemble_search.py rates --output docs/runs/ensemble_rates.json   # a quiet machine
    python experiments/ensemble_search.py tune  --rates docs/runs/ensemble_rates.json \\
        --output docs/runs/ensemble_tune.json
    python experiments/ensemble_search.py table --rates docs/runs/ensemble_rates.json \\
        --tuned docs/runs/ensemble_tune.json --output docs/runs/ensemble_table.json

**The method** (:mod:`nasi_jax.search.choose`): NASI-FIX with each data mode's preset values
(full-depth search network, b = 8, tau = 0.5) runs ``T'`` steps; the ``K`` most probable cells
under its ``alpha*`` (without ``none``, the presets' read-out) are scored by the components of
the aggregate :data:`nasi_jax.search.choose.ENSEMBLE` (one ``theta_0`` and batch, seed 0, for
every search seed), and the best sum of log ranks among them is the cell.

**Searches are replays**: the cached ``mu = 0`` runs of ``experiments/nb201_modes.py`` (tuning
seeds 1000-1007, 200 steps; table seeds 0-9, 400 steps; ``--cache``) give NASI-FIX's
``alpha*`` at any ``T'`` exactly (:func:`nasi_jax.search.replay`). Every cell's component
scores are computed once, through the same :func:`score_ensemble` the preset calls (with the
same seed, so a cell's scores are the ones the preset computes; ``--all-scores``), and each
seed's aggregate ranks its own candidates, as the preset does.

**Cost per seed** (what the budget constrains), from ``rates`` (run alone on a quiet machine):
NASI's measured time per step (``docs/runs/nb201_modes_timing.json``, compile apart) times
``T'``, plus ``K`` times the aggregate's seconds per cell (the components' measured rates,
compile apart, as NASI's budget leaves its compile out). Budgets: NASI-FIX at T = 100 and
4T = 400 steps.

**Tuning** (``tune``): on the tuning seeds of the three data modes, every ``(T', K)`` of the
grid within each budget; the criterion is the mean CIFAR-10 *validation* accuracy of the
chosen cells over seeds and modes. Test accuracies are not read.

**Table** (``table``): seeds 0-9 in each data mode at the chosen ``(T', K)`` of each budget;
beside them: NASI-FIX alone at the same ``T'`` (``K = 1``), the largest of the same ``K``
candidates by parameter count (the sceptic's cheap chooser), and a uniform random cell.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from _common import add_data_args, fmt_ms, md_header, md_row, mu0_run, run_record, write_result  # noqa: E402
from nb201_modes import FIX_PRESET, MODES, TABLE_SEEDS, TUNE_SEEDS, mode_config, preset_values  # noqa: E402

from nasi_jax import data as data_lib, nb201_table, records, search
from nasi_jax.scoring import ENSEMBLES, PROXIES, ScoreConfig, rank_aggregate, score_ensemble
from nasi_jax.search import choose
from nasi_jax.spaces import nb201

T, T4 = 100, 400
STEPS = (25, 50, 100, 200)
KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
METRICS = ("cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid")


def components():
    return [c.proxy for c in ENSEMBLES[choose.ENSEMBLE].components]


def scoring_config() -> ScoreConfig:
    return ScoreConfig(**choose.SCORING)


def universe_scores(args):
    """The component scores of every cell a candidate can be: the 4**6 = 4 096 cells without
    ``none`` (the presets' read-out), in code order, through the preset's scorer
    (:func:`score_ensemble`, seed :data:`choose.SCORING_SEED`; a cell's scores do not depend
    on the other cells scored). Resumable CSVs at ``--scores``."""
    ops = [nb201.code_to_ops(c) for c in range(nb201.NUM_ARCHS)]
    ops = [o for o in ops if 0 not in o]
    images = labels = None
    if any(c.settings.get("data", "random") != "random" for c in ENSEMBLES[choose.ENSEMBLE].components):
        images, labels = data_lib.load_data_for_mode("real", args.data_dir)
    os.makedirs(os.path.dirname(args.scores) or ".", exist_ok=True)
    _, cols = score_ensemble(scoring_config(), ops, choose.SCORING_SEED, name=choose.ENSEMBLE,
                             output=args.scores, images=images, labels=labels, progress=True)
    return {tuple(c): i for i, c in enumerate(ops)}, cols


def pick(cands, where, cols):
    rows = [where[c] for c in cands]
    agg = rank_aggregate([cols[p][rows] for p in cols], [PROXIES[p].sign for p in cols])
    return cands[int(np.argmax(agg))]


def alphas(mode, seeds, steps_total, steps, args):
    res = mu0_run(mode_config(mode, steps_total), seeds, data_dir=args.data_dir, cache=args.cache)
    v = preset_values(FIX_PRESET[mode])
    a, _ = search.replay(res, mu=v["mu"], nu=v["nu"], nu_mode=v["nu_mode"], steps=steps, readout=v["readout"])
    return a, v["readout"]


def cost_model(args):
    with open(args.rates) as fh:
        r = json.load(fh)
    with open(args.timing) as fh:
        t = json.load(fh)
    step_s = t["search_T_s"] / T
    cell_s = sum(1.0 / r["components"][p]["cells_per_s"] for p in components())
    return step_s, cell_s, {"budget_T_s": t["search_T_s"], "budget_4T_s": t["search_4T_s"]}


def rates_cmd(args):
    """Each component's cells/s after compiling, on ``--rate-cells`` uniformly drawn cells (a
    quiet machine; the steady rate of a long run, as when many candidates are scored)."""
    n = args.rate_cells
    cells = [nb201.code_to_ops(int(c)) for c in np.random.default_rng(0).choice(15625, n + 1, replace=False)]
    from nasi_jax.scoring import score_cells
    out = {}
    for comp in ENSEMBLES[choose.ENSEMBLE].components:
        cfg = ScoreConfig(proxy=comp.proxy, **{**choose.SCORING, **dict(comp.settings)})
        t0 = time.perf_counter()
        score_cells(cfg, cells[:1], choose.SCORING_SEED, progress=False)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        score_cells(cfg, cells[1:], choose.SCORING_SEED, progress=False)
        out[comp.proxy] = {"cells_per_s": n / (time.perf_counter() - t0), "cells": n, "compile_s": compile_s,
                           "settings": dict(comp.settings)}
        print(f"[rates] {comp.proxy}: {out[comp.proxy]['cells_per_s']:.2f} cells/s, compile {compile_s:.1f}s",
              file=sys.stderr, flush=True)
    rec = run_record(__file__, args.argv, ensemble=choose.ENSEMBLE, scoring=choose.SCORING, components=out)
    records.write_json_atomic(args.output, rec)
    print(json.dumps(out, indent=1))


def _within(step_s, cell_s, steps, k, budget):
    return steps * step_s + (k if k > 1 else 0) * cell_s <= budget * 1.0001


def tune_cmd(args):
    table = nb201_table.load_nb201_table(args.benchmark)
    step_s, cell_s, budgets = cost_model(args)
    cands = {}
    for mode in MODES:
        for steps in STEPS:
            a, readout = alphas(mode, TUNE_SEEDS, 200, steps, args)
            for s, al in zip(TUNE_SEEDS, a):
                cands[(mode, steps, s)] = choose.candidate_cells("nb201", al, readout, max(KS))
    where, cols = universe_scores(args)
    grid = []
    for steps in STEPS:
        for k in KS:
            valid = [table.lookup(nb201.arch_to_str(pick(v[:k], where, cols)))["cifar10_valid"]
                     for key, v in cands.items() if key[1] == steps]
            grid.append({"steps": steps, "K": k, "cost_s": steps * step_s + (k if k > 1 else 0) * cell_s,
                         "cifar10_valid": float(np.mean(valid)), "n": len(valid)})
    choice = {}
    for name, budget in (("T", budgets["budget_T_s"]), ("4T", budgets["budget_4T_s"])):
        ok = [g for g in grid if _within(step_s, cell_s, g["steps"], g["K"], budget)]
        best = max(ok, key=lambda g: (round(g["cifar10_valid"], 6), -g["cost_s"]))
        choice[name] = {"steps": best["steps"], "K": best["K"], "budget_s": budget,
                        "cost_s": best["cost_s"], "criterion_cifar10_valid": best["cifar10_valid"]}
    out = run_record(__file__, args.argv, ensemble=choose.ENSEMBLE, components=components(),
                     seeds=TUNE_SEEDS, modes=list(MODES), step_s=step_s, cell_s=cell_s, grid=grid,
                     choice=choice)
    md = [f"Command: `{out['command']}`", "",
          f"Aggregate {choose.ENSEMBLE!r} ({', '.join(components())}); tuning seeds {TUNE_SEEDS[0]}-{TUNE_SEEDS[-1]} "
          f"x {len(MODES)} data modes; mean CIFAR-10 validation accuracy of the chosen cells. Cost per seed: "
          f"{step_s:.3f} s a NASI step + {cell_s:.3f} s a candidate.", "",
          *md_header("T'", *[f"K={k}" for k in KS])]
    for steps in STEPS:
        md.append(md_row([steps, *(f"{g['cifar10_valid']:.2f}" for g in grid if g["steps"] == steps)]))
    md += ["", "Chosen: " + "; ".join(f"budget {n} ({c['budget_s']:.1f} s): T' = {c['steps']}, K = {c['K']} "
                                      f"({c['cost_s']:.1f} s, valid {c['criterion_cifar10_valid']:.2f})"
                                      for n, c in choice.items()), ""]
    write_result(args.output, out, "\n".join(md))
    print("\n".join(md))


def table_cmd(args):
    table = nb201_table.load_nb201_table(args.benchmark)
    step_s, cell_s, budgets = cost_model(args)
    with open(args.tuned) as fh:
        choice = json.load(fh)["choice"]
    plan = []
    for mode in MODES:
        for name, c in choice.items():
            a, readout = alphas(mode, TABLE_SEEDS, 400, c["steps"], args)
            cands = [choose.candidate_cells("nb201", al, readout, c["K"]) for al in a]
            plan.append((mode, name, c, cands))
    where, cols = universe_scores(args)
    results = []

    def summary(cells):
        rows = [table.lookup(nb201.arch_to_str(x)) for x in cells]
        return {m: nb201_table.summarize([r[m] for r in rows]) for m in METRICS}

    # parameter counts of every candidate cell, one jitted count (count_params is per call)
    import jax
    universe = sorted(where, key=where.get)
    n_params = np.asarray(jax.jit(jax.vmap(lambda o: nb201.count_jit("params", o)))(np.asarray(universe)))
    params_of = {c: int(n_params[i]) for i, c in enumerate(universe)}
    for mode, name, c, cands in plan:
        cost = c["steps"] * step_s + (c["K"] if c["K"] > 1 else 0) * cell_s
        rows = [
            (f"NASI-FIX ({c['steps']} steps) + {choose.ENSEMBLE} over {c['K']} candidates", [pick(v, where, cols) for v in cands], cost),
            (f"NASI-FIX ({c['steps']} steps) alone", [v[0] for v in cands], c["steps"] * step_s),
            (f"NASI-FIX ({c['steps']} steps), largest of the {c['K']} candidates by params",
             [max(v, key=params_of.get) for v in cands], c["steps"] * step_s),
        ]
        for label, cells, spent in rows:
            results.append({"data": mode, "budget": name, "budget_s": budgets[f"budget_{name}_s"], "method": label,
                            "cost_s": spent, "cells": [nb201.arch_to_str(x) for x in cells], "summary": summary(cells)})
    rand = [nb201.code_to_ops(int(x)) for x in np.random.default_rng(0).choice(15625, len(TABLE_SEEDS), replace=False)]
    results.append({"data": "-", "budget": "-", "budget_s": 0.0, "method": "uniform random cell", "cost_s": 0.0,
                    "cells": [nb201.arch_to_str(x) for x in rand], "summary": summary(rand)})
    out = run_record(__file__, args.argv, ensemble=choose.ENSEMBLE, components=components(), seeds=TABLE_SEEDS,
                     tuned=choice, step_s=step_s, cell_s=cell_s, results=results)
    md = [f"Command: `{out['command']}`", "",
          f"Seeds {TABLE_SEEDS[0]}-{TABLE_SEEDS[-1]}; aggregate {choose.ENSEMBLE!r} ({', '.join(components())}); "
          "cost per seed from measured rates, compile apart (as NASI's budget).", "",
          *md_header("data", "budget", "method", "CIFAR-10 test", "CIFAR-100 test", "ImageNet16-120 test",
                     "CIFAR-10 valid", "cost s / seed")]
    for r in results:
        s = r["summary"]
        md.append(md_row([r["data"], r["budget"], r["method"], *(fmt_ms(s[m]) for m in METRICS), f"{r['cost_s']:.1f}"]))
    write_result(args.output, out, "\n".join(md) + "\n")
    print("\n".join(md))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("rates", "tune", "table"):
        q = sub.add_parser(name)
        add_data_args(q)
        q.add_argument("--output", required=True)
        q.add_argument("--cache", default="runs/nb201_mu0_n5", help="the mu = 0 runs of experiments/nb201_modes.py")
        q.add_argument("--scores", default="runs/ensemble_search/ensemble_nonone.csv",
                       help="the candidates' component scores (resumable CSVs)")
        q.add_argument("--rate-cells", type=int, default=512, help="cells timed per component (rates)")
        q.add_argument("--timing", default="docs/runs/nb201_modes_timing.json")
        if name != "rates":
            q.add_argument("--rates", required=True)
        if name == "table":
            q.add_argument("--tuned", required=True)
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    {"rates": rates_cmd, "tune": tune_cmd, "table": table_cmd}[args.cmd](args)


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
