"""NASI's approximation chain on NAS-Bench-201: exact empirical NTK trace -> eq. 12 estimator
(several batch sizes) -> random labels -> random inputs, measured cell by cell.

    python experiments/theory_chain.py --cells 200 --output docs/runs/theory_chain.json

* **Cells**: the first ``--cells`` of the seeded uniform sample that
  ``experiments/proxy_correlation.py`` uses (``nasi_jax.scoring.parse_cells(1000, seed=0)``),
  and scores are cached block by block (resumable CSVs in ``--workdir``, one per block of 100
  cells; the first block's name and settings are those of ``proxy_correlation.py``, so its
  exact traces of the first 100 cells can be copied in rather than recomputed).
* **Exact trace**: ``tr Theta_0 = sum_{x,k} ||d f_k(x)/d theta||^2`` on one batch of
  ``--exact-batch`` real CIFAR-10 images (the ``ntk_trace`` proxy; N=5 search network, C=16,
  PyTorch init, BatchNorm with batch statistics, float32).
* **Estimator**: eq. 12, ``||grad_theta mean_batch CE||^2``, at each batch size of
  ``--batch-sizes`` with true labels, and at ``--agnostic-batch`` with random labels and with
  i.i.d. Gaussian inputs. Same seed, so the same initial weights for every score; at the
  exact trace's batch size the estimator sees the same images.
* **Output**: Spearman rho (and Pearson of logs) between every pair, and of each with the
  CIFAR-10 test accuracy; a heat map and scatter plots (``<output stem>.png``).
* The infinite-width trace is not defined for NB201 cells (BatchNorm with batch statistics,
  finite-width pooling/stem): that link of the chain is measured on the neural-tangents
  spaces by ``experiments/theory_width.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
from scipy import stats

from _common import add_data_args, run_record, save_figure, write_result  # experiments/ is on sys.path

from nasi_jax import data as data_lib, nb201_table, scoring

SAMPLE = 1000  # the proxy_correlation sample; its first cells are used here
BLOCK = 100


def score_blocks(cfg, ops, index, workdir, seed, images, labels):
    """Score in blocks of ``BLOCK`` cells, one resumable CSV per block; scores in cell order."""
    out = []
    for lo in range(0, len(ops), BLOCK):
        hi = min(lo + BLOCK, len(ops))
        tag = "" if lo == 0 else f"_cells{lo}-{hi}"
        path = os.path.join(workdir, f"{cfg.proxy}_{cfg.data}_b{cfg.batch_size}_s{seed}{tag}.csv")
        out.append(scoring.score_cells(
            cfg, ops[lo:hi], seed=seed, output=path, index=index[lo:hi], index_kind="nb201",
            images=images if cfg.data != "random" else None,
            labels=labels if cfg.data == "real" else None, progress=True))
    return np.concatenate(out)


def pair_stats(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    rho = stats.spearmanr(a[ok], b[ok]).statistic
    pos = ok & (a > 0) & (b > 0)
    r_log = stats.pearsonr(np.log(a[pos]), np.log(b[pos])).statistic
    return {"spearman": float(rho), "pearson_log": float(r_log), "cells": int(ok.sum())}


def figure(path, names, scores, acc, rho):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    lo = float(np.floor(np.min(rho) * 20) / 20)  # the colour scale starts near the smallest rho
    im = ax.imshow(rho, vmin=lo, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{rho[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="w" if rho[i, j] < lo + 0.6 * (1 - lo) else "k")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Spearman rho across cells")
    exact = scores[names[0]]
    for ax, other in zip(axes[1:], names[1:3]):
        sc = ax.scatter(exact, scores[other], c=acc, s=8, cmap="plasma", vmin=60, vmax=95)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(names[0])
        ax.set_ylabel(other)
        ax.set_title(f"rho = {stats.spearmanr(exact, scores[other]).statistic:.3f}")
    fig.colorbar(sc, ax=axes[2], label="CIFAR-10 test acc. (%)")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=200, help=f"first N cells of the {SAMPLE}-cell sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exact-batch", type=int, default=16)
    p.add_argument("--batch-sizes", default="8,16,64")
    p.add_argument("--agnostic-batch", type=int, default=16)
    add_data_args(p)
    p.add_argument("--workdir", default="runs/theory_chain",
                   help="resumable CSV cache; its first block of exact traces may be copied from "
                        "experiments/proxy_correlation.py's workdir (same cells, same settings)")
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    if not 2 < a.cells <= SAMPLE:
        raise SystemExit(f"--cells must be in 3..{SAMPLE}, got {a.cells}")
    os.makedirs(a.workdir, exist_ok=True)
    table = nb201_table.load_nb201_table(a.benchmark)
    ops, index, _ = scoring.parse_cells(SAMPLE, seed=a.seed, table=table)
    ops, index = ops[:a.cells], index[:a.cells]
    acc = np.array([table.lookup(i)["cifar10_test"] for i in index])
    images, labels = data_lib.load_data_for_mode("real", a.data_dir)
    t0 = time.perf_counter()
    runs = [(f"exact trace (b={a.exact_batch})", "ntk_trace", "real", a.exact_batch)]
    runs += [(f"eq.12 b={b}", "nasi", "real", int(b)) for b in a.batch_sizes.split(",")]
    runs += [(f"eq.12 b={a.agnostic_batch} random labels", "nasi", "random-labels", a.agnostic_batch),
             (f"eq.12 b={a.agnostic_batch} Gaussian inputs", "nasi", "random", a.agnostic_batch)]
    scores, configs = {}, {}
    for name, proxy, mode, b in runs:
        print(f"[chain] {name}", file=sys.stderr, flush=True)
        cfg = scoring.ScoreConfig(proxy=proxy, batch_size=b, data=mode)
        scores[name] = score_blocks(cfg, ops, index, a.workdir, a.seed, images, labels)
        configs[name] = dataclasses.asdict(cfg)
    names = [r[0] for r in runs]
    rho = np.array([[stats.spearmanr(scores[x], scores[y]).statistic for y in names] for x in names])
    pairs = {f"{x} | {y}": pair_stats(scores[x], scores[y])
             for i, x in enumerate(names) for y in names[i + 1:]}
    vs_acc = {x: float(stats.spearmanr(scores[x], acc).statistic) for x in names}
    stem = os.path.splitext(a.output)[0]
    figure(stem + ".png", names, scores, acc, rho)
    result = run_record(
        __file__, argv,
        cells=a.cells, sample=f"score.parse_cells({SAMPLE}, seed={a.seed})[:{a.cells}]",
        seed=a.seed, runs=[{"name": n, "proxy": pr, "data": m, "batch_size": b,
                            "config": configs[n]} for n, pr, m, b in runs],
        spearman_matrix={"names": names, "rho": rho.round(4).tolist()},
        pairs=pairs, spearman_vs_cifar10_test=vs_acc,
        infinite_width="not defined for NB201 cells (BatchNorm with batch statistics); "
                       "see docs/runs/theory_width.json for the stax spaces",
        figure=os.path.basename(stem + ".png"),
        wall_s_this_run=round(time.perf_counter() - t0, 1),
        wall_note="scores already in --workdir are read back, not recomputed",
    )
    write_result(a.output, result)
    for n in names[1:]:
        print(f"[chain] rho(exact, {n}) = {rho[0, names.index(n)]:.3f}", file=sys.stderr)
    print(json.dumps({"rho_exact_vs_eq12": {n: round(float(rho[0, names.index(n)]), 4)
                                            for n in names[1:]},
                      "rho_vs_cifar10_test": {n: round(v, 4) for n, v in vs_acc.items()}}))


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
