"""What the search does whatever the space, on the toy space of ``tests/toy_space.py`` (a
second to compile where the smallest NB201 supernet takes ~10 s): the loops and seed batching
agree, G_t from forward-over-reverse equals the literal grad-of-grad, the data path draws the
documented batches, non-finite scores stop the run, a mu = 0 run replays every ceiling rule,
and the staged step selects the one-program step's cells. NB201's supernet keeps its own tests
in test_search.py (one compilation for eight seeds, same seed same cell, the adaptive ceiling),
test_score.py (the scorer against the discrete networks), test_staged.py (its stages in
float64) and test_cli.py."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_space import registered

from nasi_jax import ntk, relax, search


@pytest.fixture(scope="module")
def tiny():
    """The toy space at the paper's mu = 2 with an adaptive ceiling from nu = 5."""
    with registered():
        yield search.SearchConfig(space="toy", steps=3, batch_size=4, mu=2.0, nu=5.0, nu_mode="adaptive")


@pytest.fixture(scope="module")
def eight_seeds(tiny):
    return search.run_search(tiny, seeds=list(range(8)))


def test_scan_loop_equals_host_loop(tiny, eight_seeds):
    """The accelerator path (one compiled scan over steps, lax.map over seeds) == host loop."""
    assert eight_seeds.loop == "host"  # auto on CPU
    before = search.TRACE_COUNT["search"]
    ress = search.run_search(tiny, seeds=list(range(8)), execution=search.Execution(loop="scan"))
    assert search.TRACE_COUNT["search"] - before == 1 and ress.loop == "scan"
    assert ress.arch_strs == eight_seeds.arch_strs
    np.testing.assert_allclose(ress.alpha_star, eight_seeds.alpha_star, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ress.history["s"], eight_seeds.history["s"], rtol=1e-4)


def test_vmap_batching_equals_map(tiny, eight_seeds):
    before = search.TRACE_COUNT["search"]
    resv = search.run_search(tiny, seeds=list(range(8)), execution=search.Execution(seed_batching="vmap"))
    assert search.TRACE_COUNT["search"] - before == 1
    np.testing.assert_allclose(resv.alpha_star, eight_seeds.alpha_star, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resv.history["s"], eight_seeds.history["s"], rtol=1e-4)


def test_staged_step_selects_the_one_program_cells(tiny):
    """Through the runner, ``Execution(step_impl='staged')`` (the space's stages, compiled stage
    by stage) gives the one-program step's s, alpha* and cells, to float32 rounding, penalised
    steps included; a space that offers both keeps the one-program step by default. (NB201's
    and DARTS' stages equal their one-program steps in float64: test_staged.py.)"""
    assert search.resolve_step_impl(tiny) == "one-program"
    one = search.run_search(tiny, [0, 1], execution=search.Execution(step_impl="one-program"))
    st = search.run_search(tiny, [0, 1], execution=search.Execution(step_impl="staged"))
    assert st.execution.step_impl == "staged" and one.execution.step_impl == "one-program"
    s = one.history["s"]
    assert (s > one.history["nu"]).any() and (s < one.history["nu"]).any()  # both branches of eq. 18
    assert st.arch_strs == one.arch_strs
    np.testing.assert_allclose(st.history["s"], s, rtol=1e-5)
    np.testing.assert_allclose(st.alpha_star, one.alpha_star, rtol=1e-4, atol=1e-6)


def test_fixed_nu_and_soft_samples(tiny):
    cfg = dataclasses.replace(tiny, nu_mode="fixed", hard=False, tau=0.5)
    res = search.run_search(cfg, seeds=[0, 1])
    np.testing.assert_array_equal(res.history["nu"], np.full((2, 3), 5.0, np.float32))
    # R = s - mu * max(0, s - nu)
    s = res.history["s"]
    np.testing.assert_allclose(res.history["R"], s - 2.0 * np.maximum(0, s - 5.0), rtol=1e-5)


def test_forward_over_reverse_equals_reverse_over_reverse(tiny):
    """G_t from the JVP trick equals the literal grad-of-grad (and the hinge is applied)."""
    net = search.make_network(tiny)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
    y = jnp.array([1, 0, 3, 9])
    shape = tiny.alpha_shape
    v = net.init(jax.random.PRNGKey(0), x[:1], jnp.zeros(shape), train=False)
    f = search.make_apply(net, v["batch_stats"], "train")
    g = relax.gumbel_noise(jax.random.PRNGKey(2), shape)
    alpha = jnp.zeros(shape)
    fns = {mode: jax.jit(lambda a, nu, m=mode:
                         search.objective_and_grad(f, v["params"], a, g, x, y, nu, tiny, m))
           for mode in search.GRAD_MODES}
    for nu in (1e-3, 1e6):  # penalty active / inactive
        (R1, s1, G1), (R2, s2, G2) = (fns[m](alpha, jnp.float32(nu)) for m in ("fwd-rev", "rev-rev"))
        np.testing.assert_allclose(s1, s2, rtol=1e-5)
        np.testing.assert_allclose(R1, R2, rtol=1e-5)
        np.testing.assert_allclose(G1, G2, rtol=2e-3, atol=1e-6 * float(jnp.abs(G2).max()))
        assert float(jnp.abs(G1).max()) > 0
    # the hinge: with the penalty active, G = (1 - mu) * grad s
    G_on, G_off = fns["fwd-rev"](alpha, jnp.float32(1e-3))[2], fns["fwd-rev"](alpha, jnp.float32(1e6))[2]
    np.testing.assert_allclose(G_on, (1 - tiny.mu) * G_off, rtol=1e-5, atol=1e-9)


def test_real_data_step_recomputed_by_hand(tiny):
    """run_search's s_t and ||G_t|| equal G_t recomputed from the documented keys and the pool."""
    pool = jax.random.normal(jax.random.PRNGKey(0), (16, 32, 32, 3))
    labels = jnp.arange(16, dtype=jnp.int32) % 10
    cfg = dataclasses.replace(tiny, image_size=32, data="real", steps=2)
    res = search.run_search(cfg, seeds=[5], images=pool, labels=labels)
    exe = search.Execution().resolve(cfg)
    state = search.init_state(cfg, exe, jax.random.PRNGKey(5))
    f = search.make_apply(search.make_network(cfg, exe), state.batch_stats, "train")
    step = jax.jit(lambda a, x, y, g, nu: search.objective_and_grad(f, state.params, a, g, x, y, nu, cfg))
    nu = jnp.float32(cfg.nu)
    for t in range(2):
        data_key, gumbel_key = jax.random.split(jax.random.fold_in(state.loop_key, t))
        idx = jax.random.choice(jax.random.split(data_key)[0], 16, (4,), replace=False)
        x, y = pool[idx], labels[idx]
        g = relax.gumbel_noise(gumbel_key, cfg.alpha_shape)
        R, s, G = step(jnp.zeros(cfg.alpha_shape), x, y, g, nu)
        np.testing.assert_allclose(res.history["s"][0, t], s, rtol=1e-4)
        np.testing.assert_allclose(res.history["grad_norm"][0, t], jnp.linalg.norm(G), rtol=1e-3)
        nu = (cfg.nu + s) / 2  # adaptive: mean(nu_init, s_1)
    with pytest.raises(ValueError, match="needs images"):
        search.run_search(cfg, seeds=[0])
    with pytest.raises(ValueError, match="exceeds"):
        search.run_search(dataclasses.replace(cfg, batch_size=32), seeds=[0], images=pool,
                          labels=labels)


def test_non_finite_scores_raise(tiny, monkeypatch):
    monkeypatch.setattr(ntk, "cross_entropy", lambda logits, y: jnp.mean(logits) * jnp.nan)
    saved = dict(search.runners._COMPILED)
    search.clear_cache()  # the compiled step without the patch must not be reused
    try:
        with pytest.raises(search.NonFiniteScoreError, match="seed 7, step 0"):
            search.run_search(dataclasses.replace(tiny, steps=1), seeds=[7])
    finally:  # drop the patched program, keep the others for the tests that follow
        search.clear_cache()
        search.runners._COMPILED.update(saved)


def test_replay_of_a_mu0_run_equals_fresh_searches(tiny):
    """One mu=0 run replays NASI-FIX / NASI-ADA at any (mu, nu) and any shorter T exactly."""
    base = dataclasses.replace(tiny, steps=4, mu=0.0, nu_mode="fixed", channels=3)
    res0 = search.run_search(base, seeds=[0, 1, 2])
    assert res0.history["G"].shape == (3, 4, *tiny.alpha_shape)
    s = res0.history["s"]
    nu_mid = float(np.median(s))  # some steps above the ceiling, some below
    assert (s > nu_mid).any() and (s < nu_mid).any()
    # FIX over a shorter T, ADA over the whole run (each fresh search is one more compilation).
    for mode, nu, steps in (("fixed", nu_mid, 2), ("adaptive", float(s.min()), 4)):
        fresh = search.run_search(dataclasses.replace(base, mu=2.0, nu=nu, nu_mode=mode, steps=steps),
                                  seeds=[0, 1, 2])
        alpha, ops = search.replay(res0, mu=2.0, nu=nu, nu_mode=mode, steps=steps)
        np.testing.assert_array_equal(ops, fresh.ops)
        np.testing.assert_allclose(alpha, fresh.alpha_star, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(fresh.history["s"], s[:, :steps])
    # mu=2 flips the sign of the steps above the ceiling, so the cell can change
    a_pen, _ = search.replay(res0, mu=2.0, nu=float(s.min()) * 0.5)
    np.testing.assert_allclose(a_pen, -res0.alpha_star, rtol=1e-6, atol=1e-7)
    no_none = search.run_search(dataclasses.replace(base, readout="argmax-no-none"), seeds=[0, 1, 2])
    _, ops = search.replay(res0, mu=0.0, nu=1.0, readout="argmax-no-none")
    np.testing.assert_array_equal(ops, no_none.ops)
    assert (no_none.ops > 0).all()
    np.testing.assert_array_equal(no_none.ops, 1 + res0.alpha_star[..., 1:].argmax(-1))
    with pytest.raises(ValueError, match="mu=0"):
        search.replay(fresh, mu=1.0, nu=1.0)
    with pytest.raises(ValueError, match="steps"):
        search.replay(res0, mu=1.0, nu=1.0, steps=5)
