"""One NASI search step vs one forward+backward pass of the same supernet on the same batch.

    python benchmarks/step_cost.py [--batch-size 64] [--repeats 3] [--output FILE]

Both are timed in one process on the current backend, compile time apart from run time; the
step is the second-order gradient G_t = grad_alpha R (nasi_jax.search.search_step, which
draws its own batch and Gumbel cell), the forward+backward pass is grad_theta of the mean
cross-entropy of the same supernet on a batch of the same size at a sampled one-hot cell
(every op of the supernet is still computed). Prints a JSON line with ``step_over_fwdbwd``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp

from nasi_jax import cli, ntk, search


def best_time(fn, args, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output")
    a = p.parse_args(argv)
    cfg = search.SearchConfig(batch_size=a.batch_size, channels=a.channels, cells_per_stage=a.cells)
    net = search.make_network(cfg)
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (a.batch_size, 32, 32, 3))
    y = jax.random.randint(key, (a.batch_size,), 0, 10)
    A = jax.nn.one_hot(jnp.argmax(jax.random.gumbel(key, (6, 5)), -1), 5)  # a sampled cell
    state = search.init_state(cfg, key)
    f = search.make_apply(net, state.batch_stats, cfg.bn_mode)

    t0 = time.perf_counter()
    fwdbwd = jax.jit(lambda p, x, y, A: jax.grad(lambda q: ntk.cross_entropy(f(q, x, A), y))(p)
                     ).lower(state.params, x, y, A).compile()
    c_fb = time.perf_counter() - t0
    t0 = time.perf_counter()
    step = jax.jit(lambda st, t: search.search_step(cfg, st, t, None, None)
                   ).lower(state, jnp.int32(0)).compile()
    c_step = time.perf_counter() - t0
    jax.block_until_ready(fwdbwd(state.params, x, y, A))
    jax.block_until_ready(step(state, jnp.int32(0)))
    t_fb = best_time(fwdbwd, (state.params, x, y, A), a.repeats)
    t_step = best_time(step, (state, jnp.int32(0)), a.repeats)
    out = {"backend": jax.default_backend(), "batch_size": a.batch_size, "channels": a.channels,
           "cells_per_stage": a.cells, "fwdbwd_s": t_fb, "step_s": t_step,
           "step_over_fwdbwd": t_step / t_fb, "compile_fwdbwd_s": c_fb, "compile_step_s": c_step,
           "versions": cli.versions()}
    print(f"forward+backward {t_fb:.3f}s, NASI step {t_step:.3f}s, ratio {t_step / t_fb:.2f} "
          f"(compile {c_fb:.0f}s / {c_step:.0f}s)", file=sys.stderr)
    if a.output:
        cli.write_json_atomic(a.output, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
