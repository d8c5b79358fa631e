"""``nasi bench``: the cost figures (speed and memory) on this backend (:mod:`nasi_jax.perf`)."""

from __future__ import annotations

from nasi_jax.cli._common import DefaultsFormatter

__all__ = ["add_parser", "run"]


def add_parser(sub):
    b = sub.add_parser("bench", help="measure the speed and memory figures on this backend",
                       formatter_class=DefaultsFormatter)
    b.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    b.add_argument("--output", help="write the figures as JSON here (atomically)")
    b.add_argument("--only", help="comma-separated subset: step,seeds,trace,score")
    return b


def run(args, argv) -> int:
    from nasi_jax import compilation_cache
    # compile figures are measured, so never loaded from a persistent cache (even one that
    # $JAX_COMPILATION_CACHE_DIR switched on)
    compilation_cache.disable()
    from nasi_jax import perf
    return perf.run(quick=args.quick, output=args.output, only=args.only)
