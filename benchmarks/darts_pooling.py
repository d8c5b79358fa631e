"""DARTS' 3x3 pooling on this backend: the four programs of the staged step, per form
(issue 18, item 4).

    python benchmarks/darts_pooling.py [--batch 64] [--output FILE.json]

At the three sizes of the search supernet's edges (``[b, 32, 32, 16]``, ``[b, 16, 16, 32]``,
``[b, 8, 8, 64]``), stride 1 and 2, milliseconds (best of 3, after a compiling call) of

* ``fwd``: the pooling;
* ``vjp``: the gradient in ``x`` of ``sum(pool * ct)``;
* ``jvp``: the tangent along ``dx``;
* ``hbwd``: the gradient in ``(x, dx)`` of ``sum(pool * ct) + sum(jvp * ct2)``, the staged
  step's second-order program;

for max pooling as ``lax.reduce_window`` (``conv_impl='xla'``), as separable maxima with jax's
own derivative of ``jnp.maximum`` (the library's CPU form before 2026-12-02: its maxima undecorated)
and as the library's separable maxima with their derivative written out
(:func:`nasi_jax.spaces.darts.ops.max_pool_3x3`, ``xla-taps``; the same floats as the form
before, ``tests/test_darts.py``); and the average pooling (one form). Prints a table and one
JSON line (with ``--output`` also written there, atomically, with the command and versions).
Run it with nothing else using the CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402

from nasi_jax import perf, records  # noqa: E402
from nasi_jax.spaces.darts import ops  # noqa: E402

SIZES = ((32, 16), (16, 32), (8, 64))  # (H = W, C) of the search supernet's edges


def _max_pool_jnp_maximum(x, stride: int):
    """Separable 3x3 max pooling through jax's own ``jnp.maximum`` derivative (the reference:
    the library's maxima undecorated, ``ops._max3.fun``)."""
    return ops._separable_max_pool(x, stride, ops._max3.fun)


FORMS = {
    "max reduce_window": functools.partial(ops.max_pool_3x3, impl="xla"),
    "max jnp.maximum": _max_pool_jnp_maximum,
    "max written-out": functools.partial(ops.max_pool_3x3, impl="xla-taps"),
    "avg": ops.avg_pool_3x3,
}


def programs(pool):
    fwd = jax.jit(pool)
    vjp = jax.jit(lambda x, ct: jax.vjp(pool, x)[1](ct))
    jvp = jax.jit(lambda x, dx: jax.jvp(pool, (x,), (dx,))[1])
    hbwd = jax.jit(lambda x, dx, ct, ct2: jax.vjp(lambda a, b: jax.jvp(pool, (a,), (b,)), x, dx)[1]((ct, ct2)))
    return fwd, vjp, jvp, hbwd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--output", help="also write the JSON result here")
    args = ap.parse_args(argv)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    out = {}
    print(f"{'size':14s} " + " | ".join(f"{f:>24s}" for f in FORMS) + "   (fwd/vjp/jvp/hbwd ms)")
    for hw, C in SIZES:
        x, dx = (jax.random.normal(k, (args.batch, hw, hw, C)) for k in keys[:2])
        for s in (1, 2):
            row = {}
            for name, pool in FORMS.items():
                fwd, vjp, jvp, hbwd = programs(functools.partial(pool, stride=s))
                y = fwd(x)
                ct, ct2 = (jax.random.normal(k, y.shape) for k in keys[2:])
                row[name] = {"fwd": perf.best_ms(fwd, x), "vjp": perf.best_ms(vjp, x, ct),
                             "jvp": perf.best_ms(jvp, x, dx),
                             "hbwd": perf.best_ms(hbwd, x, dx, ct, ct2)}
            out[f"{hw}x{hw}x{C} s{s}"] = row
            print(f"{hw}x{hw}x{C:<3d} s{s}   " + " | ".join(
                f"{'/'.join(f'{v:.1f}' for v in row[f].values()):>24s}" for f in FORMS), flush=True)
    res = {"batch": args.batch, "backend": jax.default_backend(), "programs_ms": out}
    print(json.dumps(res))
    if args.output:
        records.write_record(args.output, "python benchmarks/darts_pooling.py", sys.argv[1:] if argv is None else argv, res)
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
