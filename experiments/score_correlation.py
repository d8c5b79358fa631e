"""Rank correlation of a `nasi score` CSV with the NB201 accuracies.

    python experiments/score_correlation.py --scores runs/score_all_b8.csv \
        --benchmark ../shared/data/nb201/nb201_accuracies.csv --output docs/runs/score_all_b8_correlation.json

Spearman's rho and Kendall's tau (scipy.stats) between the score column and each NB201
accuracy (CIFAR-10/100 and ImageNet16-120 test, CIFAR-10 validation), over all scored cells
and over the non-degenerate ones (cells whose output is not connected to their input).
Cells are matched by their arch string, so the CSV's index kind does not matter.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

import numpy as np
from scipy import stats

from _common import add_data_args, run_record, write_result  # experiments/ is on sys.path

from nasi_jax import nb201_table
from nasi_jax.spaces import nb201


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scores", required=True)
    add_data_args(p, data_dir=False)
    p.add_argument("--output")
    a = p.parse_args(argv)
    table = nb201_table.load_nb201_table(a.benchmark)
    with open(a.scores) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    name = header[2]
    archs = [r[1] for r in rows]
    score = np.array([float(r[2]) for r in rows])
    ok = np.array([not nb201.is_degenerate(nb201.parse_arch(s)) for s in archs])
    out = run_record(__file__, argv, scores=a.scores, proxy=name, cells=len(rows),
                     non_degenerate=int(ok.sum()), metrics={})
    for m in nb201_table.METRICS:
        acc = np.array([table.lookup(s)[m] for s in archs])
        out["metrics"][m] = {
            "spearman_all": float(stats.spearmanr(score, acc)[0]),
            "kendall_all": float(stats.kendalltau(score, acc)[0]),
            "spearman_non_degenerate": float(stats.spearmanr(score[ok], acc[ok])[0]),
            "kendall_non_degenerate": float(stats.kendalltau(score[ok], acc[ok])[0]),
        }
        r = out["metrics"][m]
        print(f"{m:16s} spearman {r['spearman_all']:.3f} (non-degenerate {r['spearman_non_degenerate']:.3f})"
              f"  kendall {r['kendall_all']:.3f} ({r['kendall_non_degenerate']:.3f})", file=sys.stderr)
    if a.output:
        write_result(a.output, out)
    print(json.dumps({k: out[k] for k in ("proxy", "cells", "metrics")}))


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
