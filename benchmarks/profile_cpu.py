"""Where the NB201 supernet's time goes on XLA:CPU: the evidence behind docs/performance.md.

    python benchmarks/profile_cpu.py passes [--batch 64]     # the cell-as-input question
    python benchmarks/profile_cpu.py profile [--batch 64] [--what fwdbwd-input,step]
    python benchmarks/profile_cpu.py cache --cache-dir DIR [--batch 8]   # run it twice

``cache`` lowers and compiles the default search's step (``nb201-random``) with the persistent
compilation cache in DIR: the first run compiles and stores it, a second loads it. Run the
second under ``perf record -g`` and ``perf report --no-children --sort symbol`` to see where
loading spends its time.

``passes`` times one forward+backward pass (``grad_theta`` of the mean cross-entropy) of the
supernet (C = 16, N = 5, train-mode BatchNorm) four ways: the architecture weights ``A`` an
input or a compile-time constant, each one-hot (a sampled cell) or dense (0.2 everywhere);
with the size of each optimised program (lines of HLO text) and the NASI step beside them.

``profile`` runs each program once under ``jax.profiler`` and sums the time of XLA:CPU's
thunks by kind (``transpose_copy_fusion``, ``ynn_fusion`` (YNNPACK: convolutions and some
elementwise work), ``wrapped_reduce-window``, the elementwise fusions, ...). Thunks of
different kinds overlap on the two cores, so the sums exceed the wall time; the kinds compare.

Prints a summary and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from nasi_jax import perf, search  # noqa: E402
from nasi_jax.core import ntk  # noqa: E402


def _best(fn, repeats=3):
    jax.block_until_ready(fn())  # warm-up, then perf's best of `repeats`
    return perf._best(fn, repeats)


def _programs(batch: int) -> dict:
    """name -> (compiled, args): the four forward+backward passes and the NASI step."""
    cfg = search.SearchConfig(preset="paper", batch_size=batch)
    exe = search.Execution(seed_batching="map").resolve(cfg)
    net = search.make_network(cfg, exe)
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (batch, 32, 32, 3))
    y = jax.random.randint(key, (batch,), 0, 10)
    one_hot = jax.nn.one_hot(jnp.argmax(jax.random.gumbel(key, (6, 5)), -1), 5)
    dense = jnp.full((6, 5), 0.2)
    state = search.init_state(cfg, exe, key)
    f = search.make_apply(net, state.batch_stats, cfg.bn_mode)
    grad = lambda p, A: jax.grad(lambda q: ntk.cross_entropy(f(q, x, A), y))(p)  # noqa: E731
    P = state.params
    progs = {"fwdbwd-input-onehot": (jax.jit(grad), (P, one_hot)),
             "fwdbwd-input-dense": (jax.jit(grad), (P, dense)),
             "fwdbwd-const-onehot": (jax.jit(lambda p: grad(p, one_hot)), (P,)),
             "fwdbwd-const-dense": (jax.jit(lambda p: grad(p, dense)), (P,))}
    knobs = search.algorithm.knobs_of(cfg)
    step = jax.jit(lambda st, t, k: search.search_step(cfg, exe, st, t, None, None, k))
    progs["step"] = (step, (state, jnp.int32(0), knobs))
    out = {}
    for name, (fn, args) in progs.items():
        t0 = time.perf_counter()
        c = fn.lower(*args).compile()
        out[name] = (c, args, time.perf_counter() - t0)
    return out


def _measure(progs: dict) -> dict:
    """Run time (best of 3), compile time, HLO size and convolution count of each program."""
    res = {}
    for name, (c, a, compile_s) in progs.items():
        t = _best(lambda: c(*a))
        hlo = c.as_text()
        res[name] = {"run_s": t, "compile_s": compile_s, "hlo_lines": hlo.count("\n"),
                     "convolutions": len(re.findall(r" convolution\(", hlo))}
        print(f"{name:22s} {t:7.3f} s  (compile {compile_s:5.1f} s, {res[name]['hlo_lines']:7d} HLO lines, "
              f"{res[name]['convolutions']} convolutions)", file=sys.stderr, flush=True)
    return res


def passes(args) -> dict:
    return _measure(_programs(args.batch))


def _thunk_times(c, a) -> dict:
    """Thunk seconds by kind in one profiled run of ``c`` (already run, so warm)."""
    d = tempfile.mkdtemp(prefix="nasi-profile-")
    with jax.profiler.trace(d, create_perfetto_trace=True):
        jax.block_until_ready(c(*a))
    traces = glob.glob(os.path.join(d, "**", "*.json.gz"), recursive=True)
    if not traces:
        raise RuntimeError(f"jax.profiler wrote no perfetto trace under {d}")
    with gzip.open(traces[0]) as fh:
        ev = json.load(fh)
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    tot, cnt = collections.Counter(), collections.Counter()
    for e in ev:
        if e.get("ph") == "X":
            name = re.sub(r"\.\d+$", "", e["name"])
            if name.startswith(("$", "ThunkExecutor", "PjitFunction", "CommonPjRt")):
                continue  # Python frames and the executor's own spans
            tot[name] += e.get("dur", 0) / 1e6
            cnt[name] += 1
    return {k: {"s": v, "count": cnt[k]} for k, v in tot.most_common(12)}


def profile(args) -> dict:
    """:func:`passes`' figures for every program, and the thunk profile of those in ``--what``."""
    progs = _programs(args.batch)
    res = _measure(progs)
    for name in args.what.split(","):
        c, a, _ = progs[name]
        res[name]["thunks"] = _thunk_times(c, a)
        print(f"{name} (batch {args.batch}): {res[name]['run_s']:.3f} s", file=sys.stderr)
        for k, v in res[name]["thunks"].items():
            print(f"  {v['s']:8.3f} s {v['count']:6d}  {k}", file=sys.stderr)
    return res


def cache(args) -> dict:
    from nasi_jax import compilation_cache
    if not args.cache_dir:
        raise SystemExit("cache: pass --cache-dir DIR (a fresh folder; run twice: compile, then load)")
    compilation_cache.enable(args.cache_dir)
    cfg = search.SearchConfig(batch_size=args.batch)
    exe = search.Execution(seed_batching="map").resolve(cfg)
    state = search.init_state(cfg, exe, jax.random.PRNGKey(0))
    step = jax.jit(lambda st, t, k: search.search_step(cfg, exe, st, t, None, None, k))
    t0 = time.perf_counter()
    lowered = step.lower(state, jnp.int32(0), search.algorithm.knobs_of(cfg))
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    res = {"trace_and_lower_s": t1 - t0, "compile_or_load_s": t2 - t1, **compilation_cache.stats()}
    print(f"trace+lower {res['trace_and_lower_s']:.1f} s, compile or load {res['compile_or_load_s']:.1f} s "
          f"({res['hits']} hit(s), {res['misses']} miss(es))", file=sys.stderr)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what_to_do", choices=["passes", "profile", "cache"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cache-dir", help="cache: the compilation cache's folder")
    p.add_argument("--what", default="fwdbwd-input-dense,fwdbwd-const-dense,step",
                   help="profile: comma-separated programs (fwdbwd-{input,const}-{onehot,dense}, step)")
    args = p.parse_args(argv)
    res = {"passes": passes, "profile": profile, "cache": cache}[args.what_to_do](args)
    print(json.dumps({"batch": args.batch, "backend": jax.default_backend(), "jax": jax.__version__, **res}))
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
