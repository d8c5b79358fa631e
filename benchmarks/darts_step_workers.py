"""The DARTS staged search step with its stages on 1, 2, ... threads (issue 18, item 4).

    python benchmarks/darts_step_workers.py [--workers 1 2 3] [--rounds 2] [--batch 64]
        [--cells 2] [--channels 16] [--output FILE.json]

One full-size staged step (:func:`nasi_jax.search.staged.chain_trace_and_grad`, the DARTS
supernet at C = ``--channels``, ``3 * cells + 2`` cells, b = ``--batch``, the CPU's ``conv_impl``; seed 0,
the first step's inputs) is compiled with ``workers=1``, then run with each ``--workers`` in
turn, ``--rounds`` times round (so that a drift of the machine shows in every setting): its
wall time, and whether ``(s, ds/dA)`` are the one-thread step's bits. Prints a line per run
and one JSON line (with ``--output`` also written there, atomically, with the command and the
versions). Run it with nothing else using the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nasi_jax import records, search  # noqa: E402
from nasi_jax.core import relax  # noqa: E402
from nasi_jax.search import staged  # noqa: E402
from nasi_jax.spaces import get_space  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cells", type=int, default=2, help="cells per stage (3N+2 cells; 2 -> 8)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--output", help="also write the JSON result here")
    args = p.parse_args(argv)
    if min(args.workers) < 1 or args.rounds < 1:
        p.error("--workers and --rounds must be >= 1")
    cfg = search.SearchConfig(space="darts", preset="paper", batch_size=args.batch,
                              cells_per_stage=args.cells, channels=args.channels).validate()
    exe = search.Execution(loop="host", seed_batching="map").resolve(cfg)
    net = search.make_network(cfg, exe)
    sts = get_space("darts").stages(net)
    state = search.init_state(cfg, exe, jax.random.PRNGKey(0))
    x, y, g = search.algorithm.sample_step_inputs(cfg, state, jnp.int32(0), None, None)
    A = relax.relaxed_sample(jnp.zeros(cfg.alpha_shape, jnp.float32), g, tau=cfg.tau, hard=cfg.hard)

    def step(w):
        t0 = time.perf_counter()
        s, ds = jax.block_until_ready(staged.chain_trace_and_grad(sts, state.params, x, y, A, workers=w))
        return time.perf_counter() - t0, np.asarray(s), np.asarray(ds)

    first_s, s1, ds1 = step(1)
    print(f"first step (compiles), 1 thread: {first_s:.1f} s", file=sys.stderr, flush=True)
    rows = []
    for r in range(args.rounds):
        for w in args.workers:
            t, s, ds = step(w)
            same = s.tobytes() == s1.tobytes() and ds.tobytes() == ds1.tobytes()
            rows.append({"round": r, "workers": w, "step_s": t, "same_bits": same})
            print(f"round {r}  workers {w}: {t:6.1f} s   same bits as 1 thread: {same}", file=sys.stderr, flush=True)
    res = {"batch": args.batch, "cells": 3 * args.cells + 2, "channels": args.channels, "conv_impl": exe.conv_impl,
           "first_step_s": first_s, "rows": rows}
    print(json.dumps(res))
    if args.output:
        records.write_record(args.output, "python benchmarks/darts_step_workers.py",
                             sys.argv[1:] if argv is None else argv, res)
    return 0 if all(r["same_bits"] for r in rows) else 1


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
