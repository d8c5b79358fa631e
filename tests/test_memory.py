"""Memory budgets: byte parsing, compiled peak estimates, budgeted exact trace (planned
before running), and measured peaks."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import memory, ntk
from nasi_jax.memory import MemoryBudgetError


@pytest.fixture(scope="module")
def x64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


RUNS = []  # forward passes actually executed (appended to at run time, not trace time)


def mlp(p, x):
    jax.debug.callback(lambda: RUNS.append(1))
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


@pytest.fixture(scope="module")
def toy(x64):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    p = {"w1": jax.random.normal(k1, (16, 32), jnp.float64) / 4,
         "w2": jax.random.normal(k2, (32, 5), jnp.float64) / 6}
    x = jax.random.normal(k3, (8, 16), jnp.float64)  # B*K = 40 Jacobian rows, P = 672
    return p, x


def peak_at(f, p, x, chunk):
    compiled = jax.jit(lambda p, x: ntk.exact_trace(f, p, x, chunk_size=chunk)).lower(p, x).compile()
    return memory.compiled_peak_bytes(compiled)


@pytest.mark.parametrize("text, want", [
    (4096, 4096), ("4096", 4096), (" 3 B ", 3), ("64k", 65536), ("0.5K", 512),
    ("800M", 800 * 2 ** 20), ("1.5G", 3 * 2 ** 29), ("2GiB", 2 * 2 ** 30), ("2gib", 2 * 2 ** 30),
    ("512MB", 512 * 10 ** 6), ("1 kb", 1000), ("1TB", 10 ** 12), ("1T", 2 ** 40), (".5MiB", 2 ** 19),
])
def test_parse_bytes(text, want):
    assert memory.parse_bytes(text) == want


@pytest.mark.parametrize("bad, err, match", [
    ("", ValueError, "not a number"), ("abc", ValueError, "not a number"),
    ("1e3", ValueError, "not a number"), ("-5MB", ValueError, "not a number"),
    ("12 parsecs", ValueError, "unknown unit 'parsecs'"), ("5 MBs", ValueError, "unknown unit"),
    ("0", ValueError, "positive"), (0, ValueError, "positive"), (-1, ValueError, "positive"),
    ("0.1", ValueError, "positive"), (True, TypeError, "int"), (1.5, TypeError, "int"),
    (None, TypeError, "int"),
])
def test_parse_bytes_errors(bad, err, match):
    with pytest.raises(err, match=match):
        memory.parse_bytes(bad)


def test_compiled_peak_bytes_and_check_fits():
    c = jax.jit(lambda a: 2 * a).lower(jnp.ones(1000, jnp.float32)).compile()
    assert memory.compiled_peak_bytes(c) == 8000  # 4000 in + 4000 out
    donated = jax.jit(lambda a: 2 * a, donate_argnums=0).lower(jnp.ones(1000, jnp.float32)).compile()
    assert memory.compiled_peak_bytes(donated) == 4000  # output aliases the donated input
    assert memory.check_fits(c, 8000, "double", "hint") == 8000
    with pytest.raises(MemoryBudgetError) as e:
        memory.check_fits(c, "7999", "double", "use fewer elements")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("double needs an estimated 0.01 MiB")
    assert "budget of 0.01 MiB (7999 bytes)" in msg and msg.endswith("; use fewer elements")
    # a backend without analysis: no estimate, nothing checked (with a warning)
    for analysis in (lambda: None, lambda: (_ for _ in ()).throw(NotImplementedError())):
        fake = types.SimpleNamespace(memory_analysis=analysis)
        assert memory.compiled_peak_bytes(fake) is None
        with pytest.warns(RuntimeWarning, match="no memory analysis"):
            assert memory.check_fits(fake, "1KiB", "fake") is None
    stats = types.SimpleNamespace(argument_size_in_bytes=10, output_size_in_bytes=20,
                                  temp_size_in_bytes=30, alias_size_in_bytes=5)
    assert memory.compiled_peak_bytes(types.SimpleNamespace(memory_analysis=lambda: stats)) == 55
    assert memory.compiled_peak_bytes(types.SimpleNamespace(memory_analysis=lambda: [stats, None])) == 55


def test_peak_estimate_grows_with_chunk_size(toy):
    p, x = toy
    peaks = [peak_at(mlp, p, x, c) for c in (1, 2, 5, 10, 20, 40)]
    assert all(a <= b for a, b in zip(peaks, peaks[1:])), peaks
    # 40 VJP rows of P = 672 float64 gradients are alive at once, 1 row at chunk_size=1
    assert peaks[-1] - peaks[0] >= 39 * 672 * 8, peaks


def test_planned_chunk_fits_and_gives_the_trace(toy):
    p, x = toy
    want = jax.jit(lambda p, x: ntk.exact_trace(mlp, p, x))(p, x)
    # a roomy budget: all 40 rows at once, and bit-for-bit the unbudgeted trace
    assert ntk.plan_exact_trace(mlp, p, x, memory_budget="64MiB") == 40
    assert ntk.exact_trace_within(mlp, p, x, "64MiB") == want
    assert ntk.exact_trace(mlp, p, x, memory_budget="64MiB") == want
    # a budget that fits 10 rows but not 20: the planner halves 40 -> 20 -> 10
    budget = peak_at(mlp, p, x, 10)
    assert peak_at(mlp, p, x, 20) > budget
    assert ntk.plan_exact_trace(mlp, p, x, memory_budget=budget) == 10
    got = ntk.exact_trace_within(mlp, p, x, budget)
    np.testing.assert_allclose(got, want, rtol=1e-13)  # float64; only the summation order differs
    # inside jit the plan is made from shapes at trace time
    jitted = jax.jit(lambda p, x: ntk.exact_trace(mlp, p, x, memory_budget=budget))(p, x)
    np.testing.assert_allclose(jitted, want, rtol=1e-13)
    # a given chunk size that fits is kept
    assert ntk.plan_exact_trace(mlp, p, x, memory_budget=budget, chunk_size=4) == 4


def test_too_small_budget_fails_before_running(toy):
    p, x = toy
    RUNS.clear()
    with pytest.raises(MemoryBudgetError) as e:
        ntk.exact_trace_within(mlp, p, x, "16KiB")
    msg = str(e.value)
    assert msg.startswith("exact_trace even with chunk_size=1 (B*K=40 Jacobian rows) needs an estimated")
    assert "over the budget of 0.02 MiB" in msg and msg.endswith("reduce the batch size or the network")
    with pytest.raises(MemoryBudgetError, match=r"chunk_size=40 .* use a smaller chunk_size"):
        ntk.exact_trace(mlp, p, x, chunk_size=64, memory_budget=peak_at(mlp, p, x, 10))
    with pytest.raises(ValueError, match="chunk_size"):
        ntk.plan_exact_trace(mlp, p, x, memory_budget="1MiB", chunk_size=0)
    with pytest.raises(ValueError, match="unknown unit"):
        ntk.exact_trace(mlp, p, x, memory_budget="1 parsec")
    assert RUNS == []  # f was traced and compiled, never run
    ntk.exact_trace_within(mlp, p, x, "64MiB")
    assert RUNS == [1]


def test_measure_peak_reports_memory():
    n = 16 * 2 ** 20  # 64 MiB of float32
    r = memory.measure_peak(lambda n: jnp.ones((n,), jnp.float32).sum(), n)
    assert set(r) == {"bytes", "source", "exact", "result"}
    assert float(r["result"]) == n
    assert isinstance(r["bytes"], int)
    if jax.devices()[0].memory_stats() is None:  # CPU: process RSS high-water mark
        assert r["source"] == "rss_high_water" and r["bytes"] > 0
    else:
        assert r["source"] == "device_peak" and r["bytes"] >= 4 * n
