"""DARTS' training step on this backend, per convolution implementation (issue 18, item 3).

    python benchmarks/darts_train_step.py [--channels 16] [--layers 8] [--batch 96]
        [--impls xla-dense xla-taps] [--repeats 5] [--rounds 2] [--output FILE.json]

The gradient of DARTS' training loss (cross-entropy plus 0.4 x the auxiliary head's, drop-path
0.2, BatchNorm on batch statistics) of NetworkCIFAR(DARTS_V2) at ``--channels`` / ``--layers``
on a batch of ``--batch`` Gaussian images, jitted, for each ``--impls`` in turn, ``--rounds``
times round (so that a drift of the machine shows in both): the first call (compile + run) and
the best and median of ``--repeats`` calls after it, in seconds. ``nasi train`` runs the
gradient with ``xla-taps`` on CPU (reverse mode only), ``xla`` elsewhere. Prints a table and one
JSON line (with ``--output`` also written there, atomically, with the command and versions).
Run it with nothing else using the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from nasi_jax import records  # noqa: E402
from nasi_jax.spaces import darts  # noqa: E402


def grad_program(impl: str, channels: int, layers: int, batch: int):
    """``(jitted grad, params, x, y)`` of DARTS' training loss with convolutions by ``impl``."""
    net = darts.NetworkCIFAR(darts.DARTS_V2, channels=channels, layers=layers, num_classes=10,
                             auxiliary=True, conv_impl=impl)
    x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 3))
    y = jnp.arange(batch) % 10
    variables = net.init(jax.random.key(1), x, train=False)

    def loss(params):
        (out, aux), _ = net.apply({**variables, "params": params}, x, train=True, drop_path_prob=0.2,
                                  rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
        ce = optax.softmax_cross_entropy_with_integer_labels
        return ce(out, y).mean() + 0.4 * ce(aux, y).mean()
    return jax.jit(jax.grad(loss)), variables["params"]


def _time(f, *args) -> float:
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--impls", nargs="+", default=["xla-dense", "xla-taps"], choices=darts.CONV_IMPLS[1:])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    if min(args.repeats, args.rounds, args.batch) < 1:
        ap.error("--repeats, --rounds and --batch must be >= 1")
    rows = []
    for r in range(args.rounds):
        for impl in args.impls:
            f, params = grad_program(impl, args.channels, args.layers, args.batch)
            first = _time(f, params)
            ts = [_time(f, params) for _ in range(args.repeats)]
            rows.append({"round": r, "impl": impl, "first_s": first, "best_s": min(ts),
                         "median_s": statistics.median(ts)})
            print(f"round {r}  {impl:10s} first {first:6.2f} s   best {min(ts):6.3f} s   "
                  f"median {statistics.median(ts):6.3f} s", flush=True)
    res = {"channels": args.channels, "layers": args.layers, "batch": args.batch,
           "backend": jax.default_backend(), "rows": rows}
    print(json.dumps(res))
    if args.output:
        records.write_record(args.output, "python benchmarks/darts_train_step.py", sys.argv[1:] if argv is None else argv, res)
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
