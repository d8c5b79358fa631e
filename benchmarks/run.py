"""All cost figures of issue 4 on the current backend: ``python benchmarks/run.py [--quick]``.

The same as ``nasi bench``: one NASI step vs one forward+backward pass, S seeds in one call
vs S single-seed calls (S = 1, 4, 8), the exact NTK trace vs NASI's estimator with their
peak memory, and fixed-cell scoring throughput; compile time apart from run time; a
summary on stderr, the full figures in ``--output`` (JSON), and one JSON line last on stdout.
See :mod:`nasi_jax.perf`.
"""

import sys

from nasi_jax import cli

if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(cli.main(["bench", *sys.argv[1:]]))
