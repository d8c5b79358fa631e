"""How much does the scoring batch size change NASI's ranking of NB201 cells?

    python experiments/score_batch_agreement.py --cells 200 --batch-sizes 8,16,64 \
        --benchmark ../shared/data/nb201/nb201_accuracies.csv --output runs/score_batch_agreement.json

Scores one seeded sample of cells with NASI's estimator (eq. 12, data-agnostic: Gaussian
inputs, random labels, the same theta_0 and batch seed for all sizes) at each batch size, and
reports the Spearman rank correlation of every size with the largest one and with the NB201
CIFAR-10 test accuracy, over all sampled cells and over the non-degenerate ones. This is the
evidence behind scoring all 15 625 cells at a small batch on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from scipy import stats

from _common import add_data_args, run_record, write_result  # experiments/ is on sys.path

from nasi_jax import nb201_table, scoring
from nasi_jax.spaces import nb201


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=200)
    p.add_argument("--batch-sizes", default="8,16,64")
    p.add_argument("--seed", type=int, default=0)
    add_data_args(p, data_dir=False)
    p.add_argument("--output")
    a = p.parse_args(argv)
    table = nb201_table.load_nb201_table(a.benchmark)
    ops, index, kind = scoring.parse_cells(a.cells, seed=a.seed, table=table)
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    acc = np.array([table.lookup(nb201.arch_to_str(o))["cifar10_test"] for o in ops])
    ok = np.array([not nb201.is_degenerate(o) for o in ops])
    scores, times = {}, {}
    for b in sizes:
        t0 = time.perf_counter()
        scores[b] = scoring.score_cells(scoring.ScoreConfig(batch_size=b), ops, a.seed, index=index,
                                        index_kind=kind, progress=True)
        times[b] = time.perf_counter() - t0
    ref = max(sizes)
    rows = []
    for b in sizes:
        rows.append({
            "batch_size": b, "seconds": times[b], "cells_per_s": len(ops) / times[b],
            f"spearman_vs_b{ref}": float(stats.spearmanr(scores[b], scores[ref])[0]),
            "spearman_vs_c10_test_all": float(stats.spearmanr(scores[b], acc)[0]),
            "spearman_vs_c10_test_nondegenerate": float(stats.spearmanr(scores[b][ok], acc[ok])[0]),
        })
        print(json.dumps(rows[-1]), file=sys.stderr)
    out = run_record(__file__, argv, cells=len(ops), seed=a.seed, non_degenerate=int(ok.sum()), rows=rows)
    if a.output:
        write_result(a.output, out)
    print(json.dumps(out))


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
