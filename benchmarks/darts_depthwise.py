"""DARTS' depthwise convolutions on this backend: the four programs of the staged step, per
implementation, and the two forms of the kernel's gradient (issue 18, item 4).

    python benchmarks/darts_depthwise.py [--batch 64] [--output FILE.json]

For the depthwise ``k x k`` convolutions of DARTS' ops (3x3 and 5x5, dilation 1 and 2) at the
three sizes of the search supernet's edges (``[b, 32, 32, 16]``, ``[b, 16, 16, 32]``,
``[b, 8, 8, 64]``), milliseconds (best of 3, after a compiling call) of

* ``fwd``: the convolution;
* ``vjp``: the gradient in ``x`` and the kernel of ``sum(conv * ct)``;
* ``jvp``: the tangent along ``(dx, dw)``;
* ``hbwd``: the gradient in ``(x, dx)`` of ``sum(jvp * ct)``, the staged step's second-order
  program;

for ``xla`` (grouped convolution), ``xla-dense`` (dense with a diagonal kernel) and ``xla-taps``
(:mod:`nasi_jax.spaces.darts.taps`: its reverse form for ``vjp``, its forward form for ``jvp``
and ``hbwd``). Then the kernel's gradient alone in its two forms (``taps``: ``k^2`` reductions;
``dense``: the dense convolution's, whose diagonal it is), which sets
``taps.TAPS_WGRAD_MAX``. Prints tables and one JSON line (with ``--output`` also written
there, atomically, with the command and versions). Run it with nothing else using the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from nasi_jax import perf, records  # noqa: E402
from nasi_jax.spaces.darts import taps  # noqa: E402
from nasi_jax.spaces.darts.ops import Cfg, DepthwiseConv  # noqa: E402

KERNELS = ((3, 1), (5, 1), (3, 2), (5, 2))  # (k, dilation): sep_conv_3x3/5x5, dil_conv_3x3/5x5
SIZES = ((32, 16), (16, 32), (8, 64))  # (H = W, C) of the search supernet's edges


def _depthwise(conv_impl: str):
    """``(x, w, k, d, p) -> y``: the library's :class:`DepthwiseConv` (stride 1) with ``conv_impl``."""
    def conv(x, w, k, d, p):
        return DepthwiseConv(k, 1, d, p, Cfg(conv_impl=conv_impl)).apply({"params": {"kernel": w}}, x)
    return conv


# each implementation's (reverse-mode form, forward-mode form)
IMPLS = {"xla": (_depthwise("xla"),) * 2, "xla-dense": (_depthwise("xla-dense"),) * 2,
         "xla-taps": (_depthwise("xla-taps"), _depthwise("xla-taps-jvp"))}


def programs(impl: str, k: int, d: int, p: int):
    rev, fwd = IMPLS[impl]
    conv = jax.jit(lambda x, w: fwd(x, w, k, d, p))
    vjp = jax.jit(lambda x, w, ct: jax.vjp(lambda a, b: rev(a, b, k, d, p), x, w)[1](ct))
    jvp = jax.jit(lambda x, w, dx, dw: jax.jvp(lambda a, b: fwd(a, b, k, d, p), (x, w), (dx, dw))[1])
    hbwd = jax.jit(lambda x, w, dx, dw, ct: jax.grad(
        lambda a, da: jnp.sum(jax.jvp(lambda u, v: fwd(u, v, k, d, p), (a, w), (da, dw))[1] * ct),
        argnums=(0, 1))(x, dx))
    return conv, vjp, jvp, hbwd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--output", help="also write the JSON result here")
    args = ap.parse_args(argv)
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    out = {"programs_ms": {}, "wgrad_ms": {}}
    print(f"{'size':12s} {'k,d':5s} " + " | ".join(f"{i:>26s}" for i in IMPLS) + "   (fwd/vjp/jvp/hbwd ms)")
    for hw, C in SIZES:
        shape = (args.batch, hw, hw, C)
        x, dx, ct = (jax.random.normal(kk, shape) for kk in keys[:3])
        for k, d in KERNELS:
            p = d * (k - 1) // 2
            w, dw = (jax.random.normal(kk, (k, k, 1, C)) for kk in keys[3:5])
            row = {}
            for impl in IMPLS:
                conv, vjp, jvp, hbwd = programs(impl, k, d, p)
                row[impl] = {"fwd": perf.best_ms(conv, x, w), "vjp": perf.best_ms(vjp, x, w, ct),
                             "jvp": perf.best_ms(jvp, x, w, dx, dw), "hbwd": perf.best_ms(hbwd, x, w, dx, dw, ct)}
            out["programs_ms"][f"{hw}x{hw}x{C} k{k} d{d}"] = row
            print(f"{hw}x{hw}x{C:<6d} {k},{d}   " + " | ".join(
                f"{'/'.join(f'{v:.1f}' for v in row[i].values()):>26s}" for i in IMPLS), flush=True)
            wg = {}
            for form, limit in (("taps", 1 << 62), ("dense", 0)):
                old, taps.TAPS_WGRAD_MAX = taps.TAPS_WGRAD_MAX, limit  # read at trace time
                try:
                    f = jax.jit(lambda x_, g_: taps._grad_w(x_, g_, k, 1, d, p))
                    wg[form] = perf.best_ms(f, x, ct)
                finally:
                    taps.TAPS_WGRAD_MAX = old
            out["wgrad_ms"][f"{hw}x{hw}x{C} k{k} d{d}"] = wg | {"products": args.batch * hw * hw * C * k * k}
    print("kernel gradient alone, ms (taps reductions / dense diagonal; products B H W C k^2):")
    for name, v in out["wgrad_ms"].items():
        print(f"  {name:18s} {v['taps']:6.1f} / {v['dense']:6.1f}   {v['products'] / 1e6:5.1f} M")
    res = {"batch": args.batch, "backend": jax.default_backend(), **out}
    print(json.dumps(res))
    if args.output:
        records.write_record(args.output, "python benchmarks/darts_depthwise.py", sys.argv[1:] if argv is None else argv, res)
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
