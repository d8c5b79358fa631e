"""Where the DARTS staged search step's time goes, program by program (issue 18, item 4).

    python benchmarks/darts_step_breakdown.py [--batch 64] [--cells 2] [--steps 2] [--output FILE.json]

Runs ``--steps`` staged search steps (:func:`nasi_jax.search.staged.chain_trace_and_grad`,
the DARTS supernet at C = 16, ``3 * cells + 2`` cells, ``--conv-impl``) with every
stage program timed on its own (each call blocks until its result is ready, so the programs
do not overlap as they do in a normal step, which runs independent stages side by side on
:func:`nasi_jax.search.staged.default_workers` threads: here on one, so their sum is about the step). A stage's
four programs are ``fwd`` (its forward pass), ``bwd`` (the VJP for ``v = grad_theta L``,
recomputing the forward pass), ``tangent`` (the JVP along ``v``) and ``hbwd`` (the VJP of
the JVP, for ``grad_A``); an op whose weight in the step's hard sample is 0 runs ``dzero``
alone (its ``d/da`` in forward mode; ``--no-skip``: all four programs for every op, as before
2026-12-03). Stages are grouped by kind (stem, preprocessing, the ops of the mixed edges by
their input's shape, node sums, concatenations, head).

The first step compiles: its time minus a later step's, per program, is that program's
compile time (jax compiles each program once per input shape; stages of one kind and shape
share it). Prints a table per kind and program and, last, one JSON line (with ``--output``
also written there, atomically, with the command, the versions and the peak RSS). Run it with
nothing else using the CPU.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from nasi_jax import records, search  # noqa: E402
from nasi_jax.core import relax  # noqa: E402
from nasi_jax.search import staged  # noqa: E402
from nasi_jax.spaces import get_space  # noqa: E402

PROGRAMS = ("fwd", "bwd", "tangent", "hbwd", "dzero")


def _kind(name: str, shape) -> str:
    """``stem``, ``preprocess``, ``edge <H>x<W>x<C>`` (by its input's shape: a reduction
    cell's stride-2 edges read the larger input), ``node`` (sums), ``out`` (concat), ``head``."""
    if "/" not in name:
        return name
    part = name.split("/")[1]
    if part.startswith("edge"):
        return f"edge {'x'.join(map(str, shape[1:]))}"
    return {"pre": "preprocess", "nod": "node"}.get(part[:3], part)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cells", type=int, default=2, help="cells per stage (3N+2 cells; 2 -> 8)")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="steps to run (the first compiles; default 2)")
    p.add_argument("--conv-impl", default="xla-taps", choices=("xla-taps", "xla-dense", "xla"),
                   help="the supernet's depthwise convolutions (default xla-taps, the CPU default)")
    p.add_argument("--no-skip", action="store_true",
                   help="run every op's four programs even where its weight is 0 (the step before 2026-12-03)")
    p.add_argument("--output", help="also write the JSON result here")
    args = p.parse_args(argv)
    cfg = search.SearchConfig(space="darts", preset="paper", batch_size=args.batch, cells_per_stage=args.cells,
                              channels=args.channels).validate()
    exe = search.Execution(loop="host", seed_batching="map", conv_impl=args.conv_impl).resolve(cfg)
    net = search.make_network(cfg, exe)
    sts = get_space("darts").stages(net)
    state = search.init_state(cfg, exe, jax.random.PRNGKey(0))

    label = {}  # stage function -> kind, filled while the first step runs
    times = collections.defaultdict(list)  # (step, kind, program) -> [seconds]
    step_no = [0]
    orig = staged._compiled
    plain = orig.__wrapped__

    @functools.lru_cache(maxsize=None)
    def timed(stage_apply, vjp_apply):
        progs = plain(stage_apply, vjp_apply)

        def wrap(prog, f):
            def g(*a):
                t0 = time.perf_counter()
                out = jax.block_until_ready(f(*a))
                c = a[2] if prog in ("tangent", "hbwd") else a[1]  # the stage's input
                shape = jax.tree_util.tree_leaves(c)[0].shape
                names = label[stage_apply]
                times[(step_no[0], _kind(names, shape), prog)].append(time.perf_counter() - t0)
                return out
            return g
        return tuple(wrap(n, f) for n, f in zip(PROGRAMS, progs))

    for st in sts:
        label.setdefault(st.apply, st.name)
    staged._compiled = timed
    walls = []
    try:
        for t in range(args.steps):
            step_no[0] = t
            x, y, g = search.algorithm.sample_step_inputs(cfg, state, jnp.int32(t), None, None)
            A = relax.relaxed_sample(jnp.zeros(cfg.alpha_shape, jnp.float32), g, tau=cfg.tau, hard=cfg.hard)
            t0 = time.perf_counter()
            jax.block_until_ready(staged.chain_trace_and_grad(sts, state.params, x, y, A, workers=1,
                                                                 skip=not args.no_skip))
            walls.append(time.perf_counter() - t0)
            print(f"step {t}: {walls[-1]:.1f} s", file=sys.stderr, flush=True)
    finally:
        staged._compiled = orig
    last = args.steps - 1
    kinds = sorted({k for (s, k, _) in times if s == last})
    rows, out = [], {}
    for k in kinds:
        run = {pr: sum(times.get((last, k, pr), [])) for pr in PROGRAMS}
        first = {pr: sum(times.get((0, k, pr), [])) for pr in PROGRAMS}
        n_last = {pr: len(times.get((last, k, pr), [])) for pr in PROGRAMS}
        n_first = {pr: len(times.get((0, k, pr), [])) for pr in PROGRAMS}
        calls = n_last["hbwd"] + n_last["dzero"]  # every stage but the loss runs one of the two
        # compile time: the first step's time less its calls at the last step's mean time a call
        # (the calls differ in number between steps: each step's sample switches other ops off)
        out[k] = {"stages": calls, "calls": n_last, "step_s": run,
                  "compile_s": {pr: max(0.0, first[pr] - n_first[pr] * run[pr] / max(n_last[pr], 1))
                                for pr in PROGRAMS}}
        rows.append(f"{k:22s} {calls:4d} " + " ".join(f"{run[pr]:7.2f}" for pr in PROGRAMS)
                    + f" {sum(run.values()):8.2f} | compile {sum(out[k]['compile_s'].values()):6.1f}")
    print(f"{'kind':22s} {'n':>4s} " + " ".join(f"{pr:>7s}" for pr in PROGRAMS) + f" {'sum':>8s}")
    print("\n".join(rows))
    total = sum(sum(v["step_s"].values()) for v in out.values())
    print(f"programs {total:.1f} s of a {walls[-1]:.1f} s step (timed one by one); first step {walls[0]:.1f} s")
    res = {"batch": args.batch, "conv_impl": args.conv_impl, "skip": not args.no_skip, "cells": 3 * args.cells + 2,
           "step_walls_s": walls, "programs_sum_s": total,
           "kinds": out, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    print(json.dumps(res))
    if args.output:
        records.write_record(args.output, "python benchmarks/darts_step_breakdown.py", sys.argv[1:] if argv is None else argv, res)
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
