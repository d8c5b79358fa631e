"""Training-free scores under one harness on NAS-Bench-201: rank correlations, scatter plots,
label/data agnosticism, and best-of-N baselines at NASI's time budget.

    python experiments/proxy_correlation.py --cells 1000 --output docs/runs/proxy_correlation.json \\
        --search-table docs/runs/nb201_search_table.json

* **Cells**: a uniform sample of ``--cells`` distinct NB201 cells drawn with ``--seed``
  (:func:`nasi_jax.scoring.parse_cells`); every proxy scores the same cells with the same
  initial weights and the same data batch (``PRNGKey(seed)``; real CIFAR-10 images with
  their labels, NB201's train half, ``--batch-size`` examples), through
  :func:`nasi_jax.scoring.score_cells` (one compilation per proxy, resumable CSVs in
  ``--workdir``).
* **Correlations**: Spearman rho and Kendall tau of ``sign * score`` (so that larger
  predicts better for every proxy; :data:`nasi_jax.scoring.PROXIES` gives the signs) with
  CIFAR-10 / CIFAR-100 / ImageNet16-120 test and CIFAR-10 validation accuracy, over all
  sampled cells, over the non-degenerate ones, and over the cells without unreachable ops
  (``arch_str == canonical_arch_str``: the 9 445-cell protocol of NAS-Bench-Suite-Zero,
  whose published rho are quoted beside ours).
* **Published scores, cell by cell**: where ``--nbsz`` (default ``nb201_zc/`` in the data folder) holds the same
  proxy (NAS-Bench-Suite-Zero, CIFAR-10), Spearman rho between our score and the published
  one on the sampled cells it covers.
* **Protocol check** (``--protocol-check``): NASWOT and jacob_cov scored again with a batch
  of 64 (the published protocol's size) on the first 200 cells, to tell a batch-size effect
  from a bug when our correlations depart from the published ones.
* **Label / data agnosticism** (NASI's Fig. 1 / Table 2, on NB201): NASI's estimator with
  the true labels, random labels and Gaussian inputs on the same cells; Pearson and
  Spearman correlation across cells between the true-label score and the others.
* **Best-of-N baselines**: with NASI's 4T search time per seed (from ``--search-table``) as
  the budget, each proxy scores ``N = budget * (its measured cells/s)`` cells drawn at
  random from the sample (capped at the sample size) and keeps its best; mean ± std over 10
  draws. A uniform random cell is the zero-cost baseline.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time

import numpy as np
from scipy import stats

from _common import (add_data_args, fmt_ms, md_header, md_row, run_record, save_figure,  # noqa: E402
                     write_result)  # (experiments/ is on sys.path)

from nasi_jax import data as data_lib, nb201_table, records, scoring
from nasi_jax.spaces import nb201

PUBLISHED_RHO = {  # Spearman vs CIFAR-10 test, 9 445 cells, NAS-Bench-Suite-Zero (PAPER.md section 6)
    "naswot": 0.81, "jacob_cov": 0.80, "params": 0.80, "synflow": 0.78, "flops": 0.77,
    "snip": 0.60, "grad_norm": 0.60, "grasp": 0.54,
}
NBSZ_COLUMN = {"naswot": "nwot", "jacob_cov": "jacov", "params": "params", "flops": "flops",
               "synflow": "synflow", "snip": "snip", "grad_norm": "grad_norm", "grasp": "grasp"}
DEFAULT_PROXIES = ("nasi", "nasi_objective", "ntk_trace", "grad_norm", "snip", "grasp", "synflow",
                   "jacob_cov", "naswot", "te_nas_cond", "params", "flops")
AGNOSTIC_MODES = ("real", "random-labels", "random")


def score_proxy(proxy, mode, ops, index, args, images, labels, extra=None, batch_size=None):
    b = batch_size or args.batch_size
    cfg = scoring.ScoreConfig(proxy=proxy, batch_size=b, data=mode, **(extra or {}))
    out = os.path.join(args.workdir, f"{proxy}_{mode}_b{b}_s{args.seed}.csv")
    vals = scoring.score_cells(cfg, ops, seed=args.seed, output=out, index=index, index_kind="nb201",
                             images=images if mode != "random" else None,
                             labels=labels if mode == "real" else None, progress=True)
    return vals, cfg


def measure_rate(cfg, ops, seed, images, labels, n):
    """Cells per second of ``score_cells`` after compilation (one warm-up cell, then ``n``)."""
    kw = dict(seed=seed, images=images if cfg.data != "random" else None,
              labels=labels if cfg.data == "real" else None, progress=False)
    t0 = time.perf_counter()
    scoring.score_cells(cfg, ops[:1], **kw)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scoring.score_cells(cfg, ops[1:n + 1], **kw)
    return n / (time.perf_counter() - t0), compile_s


def correlations(x, accs, masks):
    out = {}
    for m, acc in accs.items():
        for name, mask in masks.items():
            out[f"{m}/{name}"] = {"spearman": float(stats.spearmanr(x[mask], acc[mask])[0]),
                                  "kendall": float(stats.kendalltau(x[mask], acc[mask])[0])}
    return out


def nbsz_scores(path, archs_canon):
    """Published NAS-Bench-Suite-Zero scores (CIFAR-10) keyed by canonical arch string."""
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        rows = {r["arch_str"]: r for r in csv.DictReader(fh)}
    return {a: rows[a] for a in archs_canon if a in rows}


def scatter(path, names, scores, acc, signs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        ok = ~np.isnan(scores[name])
        x, acc_ = scores[name][ok], acc[ok]
        if name in ("ntk_trace", "nasi", "nasi_objective", "snip", "grad_norm", "te_nas_cond",
                    "params", "flops") and (x > 0).all():
            ax.set_xscale("log")
        else:  # a few extreme scores (degenerate cells' floors) would squash the rest
            lo, hi = np.percentile(x, [1, 99])
            pad = 0.05 * (hi - lo or 1.0)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_xlabel("score (1st-99th percentile shown)", fontsize=7)
        ax.scatter(x, acc_, s=3, alpha=0.4)
        rho = stats.spearmanr(signs[name] * x, acc_)[0]
        ax.set_title(f"{name} (ρ={rho:.2f}, {ok.sum()} cells)", fontsize=9)
        ax.set_ylim(max(acc.min(), 40), acc.max() + 1)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supylabel("CIFAR-10 test accuracy (%)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def agnostic_figure(path, base, others):
    """NASI's score with true labels against random labels / Gaussian inputs (log-log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(others), figsize=(4 * len(others), 3.6), squeeze=False)
    for ax, (mode, vals) in zip(axes[0], others.items()):
        ax.scatter(base, vals, s=3, alpha=0.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NASI score, real images + true labels")
        ax.set_ylabel(f"NASI score, {mode}")
        ax.set_title(f"Spearman {stats.spearmanr(base, vals)[0]:.3f}, "
                     f"Pearson(log) {stats.pearsonr(np.log(base), np.log(vals))[0]:.3f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--proxies", default=",".join(DEFAULT_PROXIES))
    p.add_argument("--slow-proxies", default="grasp:200,ntk_trace:100",
                   help="NAME:N,... proxies scored on the first N cells of the sample only")
    p.add_argument("--protocol-check", default="naswot:64:200,jacob_cov:64:200",
                   help="NAME:B:N,... also score NAME with a batch of B on the first N cells, to "
                        "compare its correlation with the --batch-size one on the same cells")
    p.add_argument("--score-only", action="store_true",
                   help="score and stop (no throughput, best-of-N or output files)")
    p.add_argument("--rate-cells", type=int, default=32,
                   help="cells timed per proxy (after compiling) for the throughput and best-of-N")
    add_data_args(p, nbsz=True)
    p.add_argument("--workdir", default="runs/proxies")
    p.add_argument("--search-table", help="nb201_search table JSON (real data, NASI-FIX at 4T): "
                   "NASI's time per seed is the budget")
    p.add_argument("--tuned", default="docs/runs/nb201_tune_n5.json",
                   help="nb201_search tune JSON of the full-depth (N=5) search network: its NASI-FIX "
                        "nu is the ceiling of the nasi_objective proxy (with mu = 2, the paper's "
                        "value, so that the penalty reverses the score above nu)")
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    table = nb201_table.load_nb201_table(a.benchmark)
    ops, index, _ = scoring.parse_cells(a.cells, seed=a.seed, table=table)
    archs = [nb201.arch_to_str(o) for o in ops]
    if "canonical_arch_str" not in table.columns:
        raise SystemExit(f"{a.benchmark} has no canonical_arch_str column (needed for the "
                         "no-unreachable-ops subset)")
    canon = [str(table.columns["canonical_arch_str"][i]) for i in index]
    accs = {m: np.array([table.lookup(i)[m] for i in index]) for m in nb201_table.METRICS}
    masks = {"all": np.ones(len(ops), bool),
             "non_degenerate": np.array([not nb201.is_degenerate(o) for o in ops]),
             "no_unreachable_ops": np.array([a_ == c for a_, c in zip(archs, canon)])}
    images, labels = data_lib.load_data_for_mode("real", a.data_dir)
    proxies = [s for s in a.proxies.split(",") if s]
    extra = {}
    if os.path.exists(a.tuned):
        with open(a.tuned) as fh:
            fix = json.load(fh)["choice"]["fix"]
        extra["nasi_objective"] = {"mu": 2.0, "nu": fix["nu"]}
    t0 = time.perf_counter()
    slow = {k: int(v) for k, v in (item.split(":") for item in a.slow_proxies.split(",") if item)}
    proxies += [s for s in slow if s not in proxies]
    scores, rates, signs, result, subset = {}, {}, {}, {}, {}
    for name in proxies:
        print(f"[proxies] {name}", file=sys.stderr, flush=True)
        n = min(slow.get(name, len(ops)), len(ops))
        vals, cfg = score_proxy(name, "real", ops[:n], index[:n], a, images, labels, extra.get(name))
        if n < len(ops):  # pad with NaN: correlations below use the scored cells only
            vals = np.concatenate([vals, np.full(len(ops) - n, np.nan)])
        scores[name], signs[name] = vals, scoring.PROXIES[name].sign
        sub = {k: v & ~np.isnan(vals) for k, v in masks.items()}
        subset[name] = n
        result[name] = {"sign": signs[name], "description": scoring.PROXIES[name].description,
                        "cells": n, "config": dataclasses.asdict(cfg),
                        "published_spearman_cifar10_test": PUBLISHED_RHO.get(name),
                        "correlations": correlations(signs[name] * vals, accs, sub)}
        if n < len(ops) and "nasi" in scores:  # NASI's estimator on the same cells, for reference
            result[name]["nasi_on_same_cells"] = correlations(scores["nasi"], accs, sub)
        r = result[name]["correlations"]
        print(f"[proxies] {name}: rho C10 test {r['cifar10_test/all']['spearman']:.3f} "
              f"(no unreachable ops {r['cifar10_test/no_unreachable_ops']['spearman']:.3f})",
              file=sys.stderr, flush=True)
    protocol = {}
    for item in [i for i in a.protocol_check.split(",") if i]:
        name, b, n = item.split(":")
        b, n = int(b), int(n)
        vals, _ = score_proxy(name, "real", ops[:n], index[:n], a, images, labels, batch_size=b)
        sub = {k: v[:n] for k, v in masks.items()}
        protocol[f"{name}@b{b}"] = {
            "proxy": name, "batch_size": b, "cells": n,
            "correlations": correlations(signs.get(name, scoring.PROXIES[name].sign) * vals,
                                         {m: v[:n] for m, v in accs.items()}, sub),
            "at_batch_size": {"batch_size": a.batch_size, "correlations": correlations(
                scoring.PROXIES[name].sign * scores[name][:n], {m: v[:n] for m, v in accs.items()}, sub)}
            if name in scores else None}
    if a.score_only:
        for mode in AGNOSTIC_MODES[1:]:
            score_proxy("nasi", mode, ops, index, a, images, labels)
        return
    for name in proxies:  # throughput, measured after all scoring (a quiet machine)
        cfg = scoring.ScoreConfig(proxy=name, batch_size=a.batch_size, data="real", **extra.get(name, {}))
        n = min(a.rate_cells, 8) if name in slow else a.rate_cells
        rate_file = os.path.join(a.workdir, f"{name}_rate_b{a.batch_size}_n{n}.json")
        if os.path.exists(rate_file):  # measured by an earlier run of this command
            with open(rate_file) as fh:
                saved = json.load(fh)
            rates[name], compile_s = saved["cells_per_s"], saved["compile_s"]
        else:
            rates[name], compile_s = measure_rate(cfg, ops, a.seed, images, labels, n)
            records.write_json_atomic(rate_file, {"cells_per_s": rates[name], "compile_s": compile_s,
                                              "cells": n, "config": dataclasses.asdict(cfg)})
        result[name].update(cells_per_s=rates[name], compile_s=compile_s, rate_cells=n)
        print(f"[proxies] {name}: {rates[name]:.2f} cells/s after a {compile_s:.0f}s compile",
              file=sys.stderr, flush=True)

    published = nbsz_scores(a.nbsz, canon)
    for name in proxies:
        col = NBSZ_COLUMN.get(name)
        if not col or not published:
            continue
        sel = [i for i, c in enumerate(canon) if c in published and archs[i] == c
               and not np.isnan(scores[name][i])]
        theirs = np.array([float(published[canon[i]][col]) for i in sel])
        ok = theirs > -1e7  # -1e8 marks a failed published score
        result[name]["vs_published_scores"] = {
            "cells": int(ok.sum()),
            "spearman": float(stats.spearmanr(scores[name][sel][ok], theirs[ok])[0])}

    agn = {}
    if "nasi" in proxies:
        base = scores["nasi"]
        for mode in AGNOSTIC_MODES[1:]:
            vals, _ = score_proxy("nasi", mode, ops, index, a, images, labels)
            agn[mode] = {"pearson": float(stats.pearsonr(base, vals)[0]),
                         "spearman": float(stats.spearmanr(base, vals)[0]),
                         "pearson_log": float(stats.pearsonr(np.log(base), np.log(vals))[0]),
                         "spearman_vs_cifar10_test": float(stats.spearmanr(vals, accs["cifar10_test"])[0])}
            scores[f"nasi[{mode}]"] = vals
        agnostic_figure(os.path.splitext(a.output)[0] + "_agnostic.png", base,
                        {m: scores[f"nasi[{m}]"] for m in AGNOSTIC_MODES[1:]})

    baselines = {}
    if a.search_table and os.path.exists(a.search_table):
        with open(a.search_table) as fh:
            st = json.load(fh)
        budget = next((r["search_s_per_seed"] for r in st["results"]
                       if r["data"] == "real" and r["method"] == "NASI-FIX" and r["steps"] == 400), None)
        if budget is None:
            raise SystemExit(f"{a.search_table} has no real-data NASI-FIX 4T row")
        rng = np.random.default_rng(0)
        for name in proxies:
            pool = np.flatnonzero(~np.isnan(scores[name]))
            n = int(min(len(pool), max(1, budget * rates[name])))
            picks = []
            for _ in range(10):
                cand = rng.choice(pool, size=n, replace=False)
                picks.append(int(cand[np.argmax(signs[name] * scores[name][cand])]))
            baselines[name] = {"budget_s": budget, "budget_search_network": st["search_network"],
                               "N": n, "capped": n == len(pool),
                               "summary": {m: nb201_table.summarize(accs[m][picks]) for m in nb201_table.METRICS}}
        picks = rng.choice(len(ops), size=10, replace=False)
        baselines["random cell"] = {"N": 1, "summary": {m: nb201_table.summarize(accs[m][picks])
                                                        for m in nb201_table.METRICS}}

    fig = os.path.splitext(a.output)[0] + "_scatter.png"
    scatter(fig, proxies, scores, accs["cifar10_test"], signs)  # NaN (unscored) points are not drawn
    out = run_record(__file__, argv, cells=len(ops), seed=a.seed, batch_size=a.batch_size, data="real",
                     subsets={k: int(v.sum()) for k, v in masks.items()},
                     proxies=result, label_data_agnostic=agn, best_of_n=baselines,
                     protocol_check=protocol,
                     scatter_png=fig, wall_time_s=time.perf_counter() - t0)
    md = [f"Command: `{out['command']}`", "",
          f"{len(ops)} cells (seed {a.seed}), batch {a.batch_size} of real CIFAR-10; ρ/τ of sign·score; "
          f"subsets: {out['subsets']}", "",
          *md_header("proxy", "cells", "sign", "ρ C10 test", "ρ C10 test (no unreachable ops)", "published ρ",
                     "τ C10 test", "ρ C100", "ρ IN16", "ρ C10 valid", "ρ vs published scores", "cells/s")]
    for name in proxies:
        c = result[name]["correlations"]
        pub = result[name]["published_spearman_cifar10_test"]
        vp = result[name].get("vs_published_scores")
        md.append(f"| {name} | {subset[name]} | {signs[name]:+d} | {c['cifar10_test/all']['spearman']:.3f} | "
                  f"{c['cifar10_test/no_unreachable_ops']['spearman']:.3f} | {pub if pub is not None else '-'} | "
                  f"{c['cifar10_test/all']['kendall']:.3f} | {c['cifar100_test/all']['spearman']:.3f} | "
                  f"{c['imagenet16_test/all']['spearman']:.3f} | {c['cifar10_valid/all']['spearman']:.3f} | "
                  f"{'%.3f (%d)' % (vp['spearman'], vp['cells']) if vp else '-'} | {rates[name]:.2f} |")
        if "nasi_on_same_cells" in result[name]:
            c = result[name]["nasi_on_same_cells"]
            md.append(f"| (nasi on those {subset[name]}) | {subset[name]} | +1 | {c['cifar10_test/all']['spearman']:.3f} | "
                      f"{c['cifar10_test/no_unreachable_ops']['spearman']:.3f} | - | {c['cifar10_test/all']['kendall']:.3f} | "
                      f"{c['cifar100_test/all']['spearman']:.3f} | {c['imagenet16_test/all']['spearman']:.3f} | "
                      f"{c['cifar10_valid/all']['spearman']:.3f} | - | - |")
    if agn:
        md += ["", *md_header("NASI score: true labels vs", "Pearson", "Pearson (log)", "Spearman",
                              "its ρ C10 test")]
        for mode, r in agn.items():
            md.append(f"| {mode} | {r['pearson']:.3f} | {r['pearson_log']:.3f} | {r['spearman']:.3f} | {r['spearman_vs_cifar10_test']:.3f} |")
    if baselines:
        sn = st["search_network"]
        md += ["", f"Best-of-N at NASI's budget: {budget:.1f} s, one NASI-FIX 4T search (search network "
               f"N = {sn['cells_per_stage']}, b = {sn['batch_size']}); N = budget x the proxy's cells/s "
               f"(scoring network N = 5, b = {a.batch_size}), drawn from the scored sample; 10 draws.",
               "", *md_header("best-of-N by", "N", "CIFAR-10 test", "CIFAR-100 test", "ImageNet16-120 test",
                              "CIFAR-10 valid")]
        for name, r in baselines.items():
            s = r["summary"]
            md.append(md_row([name, f"{r['N']}{' (capped)' if r.get('capped') else ''}", *(
                fmt_ms(s[m]) for m in ("cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid"))]))
    if protocol:
        md += ["", "Batch size, the protocol check: the same cells scored with a larger batch "
               "(NASWOT used 128 examples, NAS-Bench-Suite-Zero 64; ρ vs CIFAR-10 test, all / no unreachable ops).", "",
               *md_header("proxy", "cells", "ρ at b = %d" % a.batch_size, "ρ at the larger b")]
        for key, r in protocol.items():
            c, c0 = r["correlations"], (r["at_batch_size"] or {}).get("correlations")
            fmt = lambda c: f"{c['cifar10_test/all']['spearman']:.3f} / {c['cifar10_test/no_unreachable_ops']['spearman']:.3f}"
            md.append(f"| {r['proxy']} | {r['cells']} | {fmt(c0) if c0 else '-'} | {fmt(c)} (b = {r['batch_size']}) |")
    text = "\n".join(md) + "\n"
    write_result(a.output, out, text)
    print(text)


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
