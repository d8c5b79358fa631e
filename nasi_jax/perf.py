"""Cost figures of NASI on the current backend, each a ratio measured in one run.

``nasi bench [--quick] [--output FILE]`` (or ``python benchmarks/run.py``) measures:

* ``step_over_fwdbwd``: one NASI search step (the second-order gradient ``G_t``) over one
  forward+backward pass (``grad_theta`` of the mean cross-entropy) of the same supernet on
  a batch of the same size;
* ``seeds_over_loop_s{S}`` for S = 1, 4, 8: one :func:`nasi_jax.search.run_search` call
  with S seeds over S calls with one seed each (``auto`` seed batching, and each explicit
  strategy as ``seeds_over_loop_s{S}_{strategy}``);
* ``exact_over_estimator``: the exact NTK trace over NASI's eq. 12 estimator on one
  discrete cell, with their peak memory (XLA's compiled estimate, and the measured device
  peak or process high-water mark);
* ``cells_per_s``: fixed-cell scoring throughput (:mod:`nasi_jax.scoring.scorer`) at several
  numbers of cells, to show how it scales.

Compile time is reported apart from run time everywhere; run times are the best of a few
repeats. The last line of the output is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import records, scoring as score, search
from nasi_jax.core import memory, ntk
from nasi_jax.spaces import nb201

__all__ = ["run", "SIZES", "best_ms"]

# (full, quick) sizes: the full ones are NASI's settings where the time allows.
SIZES = {
    "full": dict(step_batch=64, channels=16, cells=5, seed_batch=16, seed_steps=3, seeds=(1, 4, 8),
                 trace_batch=8, trace_chunk=10, score_batch=8, score_cells=(16, 64, 256)),
    "quick": dict(step_batch=4, channels=4, cells=1, seed_batch=4, seed_steps=2, seeds=(8,),
                  trace_batch=4, trace_chunk=10, score_batch=4, score_cells=(8, 32)),
}


def _best(fn: Callable, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return min(ts)


def best_ms(f: Callable, *args, repeats: int = 3) -> float:
    """Milliseconds of ``f(*args)``, best of ``repeats`` timed calls after one untimed (compiling)
    call, each waited on (``jax.block_until_ready``). The DARTS benchmarks' timer.

    Example:
        >>> best_ms(lambda x: x + 1, jax.numpy.ones(3)) > 0
        True
    """
    jax.block_until_ready(f(*args))
    return 1e3 * _best(lambda: f(*args), repeats)


def _log(msg: str) -> None:
    print(f"[nasi bench] {msg}", file=sys.stderr, flush=True)


def bench_step(sz, repeats) -> dict:
    cfg = search.SearchConfig(preset="paper", batch_size=sz["step_batch"], channels=sz["channels"],
                              cells_per_stage=sz["cells"])
    exe = search.Execution(seed_batching="map").resolve(cfg)
    net = search.make_network(cfg, exe)
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (cfg.batch_size, 32, 32, 3))
    y = jax.random.randint(key, (cfg.batch_size,), 0, 10)
    A = jax.nn.one_hot(jnp.argmax(jax.random.gumbel(key, (6, 5)), -1), 5)
    host = exe.loop == "host"
    t0 = time.perf_counter()
    if host:  # the programs the search runs (shared with bench_seeds)
        init, step, _ = search.compiled_host_step(cfg, exe)
    else:
        init = jax.jit(lambda k: search.init_state(cfg, exe, k))
        st = jax.eval_shape(init, key)
        step = jax.jit(lambda st, t: search.search_step(cfg, exe, st, t, None, None)
                       ).lower(st, jnp.int32(0)).compile()
    c_step = time.perf_counter() - t0
    state = init(key)
    step_args = (state, jnp.int32(0)) + ((None, None, search.algorithm.knobs_of(cfg)) if host else ())
    f = search.make_apply(net, state.batch_stats, cfg.bn_mode)
    t0 = time.perf_counter()
    fwdbwd = jax.jit(lambda p, x, y, A: jax.grad(lambda q: ntk.cross_entropy(f(q, x, A), y))(p)
                     ).lower(state.params, x, y, A).compile()
    c_fb = time.perf_counter() - t0
    # the same pass with the cell a compile-time constant (docs/performance.md compares them)
    fwdbwd_const = jax.jit(lambda p, x, y: jax.grad(lambda q: ntk.cross_entropy(f(q, x, A), y))(p)
                           ).lower(state.params, x, y).compile()
    jax.block_until_ready(fwdbwd(state.params, x, y, A))
    jax.block_until_ready(fwdbwd_const(state.params, x, y))
    jax.block_until_ready(step(*step_args))
    t_fb = _best(lambda: fwdbwd(state.params, x, y, A), repeats)
    t_fbc = _best(lambda: fwdbwd_const(state.params, x, y), repeats)
    t_step = _best(lambda: step(*step_args), repeats)
    _log(f"step {t_step:.3f}s vs forward+backward {t_fb:.3f}s with the cell an input (ratio "
         f"{t_step / t_fb:.2f}), {t_fbc:.3f}s with the cell a constant (ratio {t_step / t_fbc:.2f}); "
         f"batch {cfg.batch_size}, C={cfg.channels}, N={cfg.cells_per_stage}")
    return {"step_s": t_step, "fwdbwd_s": t_fb, "step_over_fwdbwd": t_step / t_fb,
            "fwdbwd_const_cell_s": t_fbc, "step_over_fwdbwd_const_cell": t_step / t_fbc,
            "step_compile_s": c_step, "fwdbwd_compile_s": c_fb,
            "step_config": {"batch_size": cfg.batch_size, "channels": cfg.channels,
                            "cells_per_stage": cfg.cells_per_stage}}


def bench_seeds(sz, repeats) -> dict:
    base = search.SearchConfig(preset="paper", steps=sz["seed_steps"], batch_size=sz["seed_batch"],
                               channels=sz["channels"], cells_per_stage=sz["cells"])
    resolved = search.Execution().resolve(base)
    loop, auto = resolved.loop, resolved.seed_batching
    strategies = ["map", "vmap"] + (["threads"] if loop == "host" else [])
    if sz is SIZES["quick"]:
        strategies = [auto]
    out = {"seeds_loop": loop, "seeds_auto_strategy": auto,
           "seeds_config": {"steps": base.steps, "batch_size": base.batch_size,
                            "channels": base.channels, "cells_per_stage": base.cells_per_stage}}
    # the S x one-seed baseline: the same compiled one-seed program, called once per seed
    one, one_exe = base, search.Execution(seed_batching="map")
    search.run_search(one, [0], execution=one_exe)  # compile
    t_one = min(search.run_search(one, [0], execution=one_exe).run_time_s for _ in range(repeats))
    out["one_seed_s"] = t_one
    for S in sz["seeds"]:
        seeds = list(range(S))
        loop_s = sum(search.run_search(one, [s], execution=one_exe).run_time_s for s in seeds)
        out[f"loop_s{S}_s"] = loop_s
        # vmap compiles one program per S and runs many times slower on CPU: it is measured
        # at the largest S only, on the CPU with one step against one-step calls
        for strat in [st for st in strategies if st != "vmap" or S == max(sz["seeds"])]:
            cfg, exe = base, search.Execution(seed_batching=strat)
            if strat == "vmap" and loop == "host" and base.steps > 1:
                cfg = dataclasses.replace(cfg, steps=1)
                one1 = dataclasses.replace(one, steps=1)
                loop1 = sum(search.run_search(one1, [s], execution=one_exe).run_time_s for s in seeds)
                r = search.run_search(cfg, seeds, execution=exe)
                out[f"seeds_s{S}_vmap_compile_s"] = r.compile_time_s
                out[f"seeds_s{S}_vmap_s"] = r.run_time_s
                out[f"seeds_over_loop_s{S}_vmap"] = r.run_time_s / loop1
                out[f"seeds_s{S}_vmap_note"] = f"1 step, against {S} one-seed calls of 1 step ({loop1:.2f}s)"
                continue
            # run_time_s excludes compiling (map/threads reuse the cached per-seed programs;
            # vmap compiles one program per S, timed apart)
            r = search.run_search(cfg, seeds, execution=exe)
            out[f"seeds_s{S}_{strat}_compile_s"] = r.compile_time_s
            out[f"seeds_s{S}_{strat}_s"] = r.run_time_s
            out[f"seeds_over_loop_s{S}_{strat}"] = r.run_time_s / loop_s
        out[f"seeds_over_loop_s{S}"] = out[f"seeds_over_loop_s{S}_{auto}"]
        done = [st for st in strategies if f"seeds_over_loop_s{S}_{st}" in out]
        _log(f"S={S}: " + ", ".join(f"{st} {out[f'seeds_over_loop_s{S}_{st}']:.2f}x" for st in done)
             + f" of {S} x one seed ({loop_s:.2f}s); auto = {auto}")
    return out


def bench_trace(sz, repeats) -> dict:
    ops = (3, 3, 3, 3, 3, 3)
    # each with its fastest convolution: the exact trace runs its chunks in lax.map, where
    # XLA:CPU needs the loop-safe convolution (nasi_jax.core.conv)
    nets = {"estimator": nb201.NB201Network(sz["channels"], sz["cells"], fixed=ops),
            "exact": nb201.NB201Network(sz["channels"], sz["cells"], fixed=ops,
                                        conv_impl=nb201.SPACE.resolve_scoring_conv_impl("auto", jax.default_backend()))}
    net = nets["estimator"]
    key = jax.random.PRNGKey(0)
    b = sz["trace_batch"]
    x = jax.random.normal(key, (b, 32, 32, 3))
    y = jax.random.randint(key, (b,), 0, 10)
    v = net.init(key, x[:1], None, train=False)
    fs = {k: (lambda n: lambda p, x_: n.apply({"params": p, "batch_stats": v["batch_stats"]}, x_, None,
                                               train=True, mutable=["batch_stats"])[0])(n)
          for k, n in nets.items()}
    res = {}
    for name, fn in (("estimator", lambda p: ntk.nasi_estimator(fs["estimator"], p, x, y)),
                     ("exact", lambda p: ntk.exact_trace(fs["exact"], p, x, chunk_size=sz["trace_chunk"]))):
        t0 = time.perf_counter()
        c = jax.jit(fn).lower(v["params"]).compile()
        comp = time.perf_counter() - t0
        est = memory.compiled_peak_bytes(c)
        measured = memory.measure_peak(c, v["params"])
        measured.pop("result", None)
        t = _best(lambda: c(v["params"]), repeats)
        res[name] = {"s": t, "compile_s": comp, "peak_estimate_bytes": est,
                     "peak_measured": measured}
    ratio = res["exact"]["s"] / res["estimator"]["s"]
    _log(f"exact trace {res['exact']['s']:.3f}s vs estimator {res['estimator']['s']:.3f}s "
         f"(ratio {ratio:.1f}; batch {b}, chunk {sz['trace_chunk']}); peak estimate "
         f"{(res['exact']['peak_estimate_bytes'] or 0) / 2**20:.0f} vs "
         f"{(res['estimator']['peak_estimate_bytes'] or 0) / 2**20:.0f} MiB")
    return {"exact_over_estimator": ratio, "trace": res,
            "trace_config": {"batch_size": b, "chunk_size": sz["trace_chunk"], "ops": list(ops),
                             "exact_conv_impl": nets["exact"].conv_impl,
                             "channels": sz["channels"], "cells_per_stage": sz["cells"]}}


def bench_score(sz, repeats) -> dict:
    cfg = score.ScoreConfig(batch_size=sz["score_batch"], channels=sz["channels"],
                            cells_per_stage=sz["cells"])
    rng = np.random.default_rng(0)
    out = {"score_config": dataclasses.asdict(cfg), "score_scaling": []}
    t0 = time.perf_counter()
    score.score_cells(cfg, [(3, 0, 3, 1, 0, 1)], seed=0, progress=False)  # compile
    out["score_compile_s"] = time.perf_counter() - t0
    for n in sz["score_cells"]:
        cells = [nb201.code_to_ops(int(c)) for c in rng.choice(nb201.NUM_ARCHS, n, replace=False)]
        t0 = time.perf_counter()
        score.score_cells(cfg, cells, seed=0, progress=False)  # compiled once per process
        t = time.perf_counter() - t0
        out["score_scaling"].append({"cells": n, "s": t, "cells_per_s": n / t})
        _log(f"scored {n} cells in {t:.2f}s: {n / t:.2f} cells/s (batch {cfg.batch_size})")
    out["cells_per_s"] = out["score_scaling"][-1]["cells_per_s"]
    out["all_nb201_cells_eta_s"] = nb201.NUM_ARCHS / out["cells_per_s"]
    return out


def run(quick: bool = False, output: str | None = None, only: str | None = None,
        repeats: int | None = None) -> int:
    """Run the benchmarks, print a summary on stderr and one JSON line on stdout."""
    sz = SIZES["quick" if quick else "full"]
    repeats = repeats or (1 if quick else 2)
    parts = {"step": bench_step, "seeds": bench_seeds, "trace": bench_trace, "score": bench_score}
    chosen = list(parts) if not only else [p.strip() for p in only.split(",")]
    unknown = [p for p in chosen if p not in parts]
    if unknown:
        raise ValueError(f"--only: unknown part(s) {unknown}; choose from {list(parts)}")
    t0 = time.perf_counter()
    result = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
              "quick": quick, "sizes": sz}
    for name in chosen:
        t1 = time.perf_counter()
        result.update(parts[name](sz, repeats))
        result[f"{name}_bench_s"] = time.perf_counter() - t1
        _log(f"{name}: {result[f'{name}_bench_s']:.0f}s")
    result["total_s"] = time.perf_counter() - t0
    result["versions"] = records.versions()
    if output:
        records.write_json_atomic(output, result)
    keys = ("backend", "step_over_fwdbwd", "seeds_over_loop_s8", "exact_over_estimator", "cells_per_s")
    print(json.dumps({k: result.get(k) for k in keys} | {"total_s": result["total_s"]}))
    return 0
