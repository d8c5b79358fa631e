"""Algorithm 1: compilation count, determinism, the second-order gradient, eq. 18, nu rules."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import ntk, objective, relax, search
from nasi_jax.spaces import nb201

# Shared with tests/test_cli.py's TINY flags, so the CLI test reuses this compilation. The
# paper preset: mu = 2, tau = 1, the argmax read-out (the values these tests were written for).
TINY = search.SearchConfig(preset="paper", steps=3, batch_size=4, channels=2, cells_per_stage=1, image_size=8,
                           nu=5.0, nu_mode="adaptive")


@pytest.fixture(scope="module")
def eight_seeds():
    search.clear_cache()
    before = search.TRACE_COUNT["search"]
    res = search.run_search(TINY, seeds=list(range(8)))
    return res, search.TRACE_COUNT["search"] - before


def test_one_compilation_for_eight_seeds(eight_seeds):
    res, traces = eight_seeds
    assert traces == 1
    assert res.ops.shape == (8, 6) and res.alpha_star.shape == (8, 6, 5)
    assert res.history["s"].shape == (8, 3) and res.history["sampled"].shape == (8, 3, 6)
    assert all(nb201.parse_arch(a) == tuple(o) for a, o in zip(res.arch_strs, res.ops))


def test_one_compilation_for_one_seed_and_same_seed_same_result(eight_seeds):
    res8, _ = eight_seeds
    search.clear_cache()
    before = search.TRACE_COUNT["search"]
    res1 = search.run_search(TINY, seeds=[3])
    assert search.TRACE_COUNT["search"] - before == 1
    again = search.run_search(TINY, seeds=[3])  # same seed, same versions -> same cell
    assert search.TRACE_COUNT["search"] - before == 1  # compiled once, reused
    assert again.arch_strs == res1.arch_strs
    np.testing.assert_array_equal(again.alpha_star, res1.alpha_star)
    # a seed gives the same cell alone or batched with others
    assert res1.arch_strs[0] == res8.arch_strs[3]
    np.testing.assert_allclose(res1.alpha_star[0], res8.alpha_star[3], rtol=1e-5, atol=1e-6)


def test_scan_loop_equals_host_loop(eight_seeds):
    """The accelerator path (one compiled scan over steps, lax.map over seeds) == host loop."""
    res8, _ = eight_seeds
    assert res8.loop == "host"  # auto on CPU
    before = search.TRACE_COUNT["search"]
    ress = search.run_search(TINY, seeds=list(range(8)), execution=search.Execution(loop="scan"))
    assert search.TRACE_COUNT["search"] - before == 1 and ress.loop == "scan"
    assert ress.arch_strs == res8.arch_strs
    np.testing.assert_allclose(ress.alpha_star, res8.alpha_star, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ress.history["s"], res8.history["s"], rtol=1e-4)


def test_vmap_batching_equals_map(eight_seeds):
    res8, _ = eight_seeds
    before = search.TRACE_COUNT["search"]
    resv = search.run_search(TINY, seeds=list(range(8)), execution=search.Execution(seed_batching="vmap"))
    assert search.TRACE_COUNT["search"] - before == 1
    np.testing.assert_allclose(resv.alpha_star, res8.alpha_star, rtol=1e-4, atol=1e-5)


def test_adaptive_nu_is_running_mean(eight_seeds):
    res, _ = eight_seeds
    s, nu = res.history["s"], res.history["nu"]
    for k in range(s.shape[0]):
        want = [(TINY.nu + s[k, :t].sum()) / (1 + t) for t in range(TINY.steps)]
        np.testing.assert_allclose(nu[k], want, rtol=1e-5)


def test_eq18_matches_reference():
    """eq. 18 helpers: the running-max normalisation, by hand."""
    gs = [jnp.array(np.random.RandomState(i).randn(6, 5), jnp.float32) * (i + 1) for i in range(4)]
    gs[2] = gs[2] * 0.01
    st = search.eq18_init(jnp.zeros((6, 5)))
    for g in gs:
        st = search.eq18_update(st, g)
    norms = [np.linalg.norm(np.asarray(g)) for g in gs]
    want = sum(np.asarray(g) / max(norms[:t + 1]) for t, g in enumerate(gs)) * 0.5 / 4
    np.testing.assert_allclose(search.eq18_delta(st, 0.5), want, rtol=1e-5)


def test_fixed_nu_and_soft_samples():
    cfg = dataclasses.replace(TINY, nu_mode="fixed", hard=False, tau=0.5)
    res = search.run_search(cfg, seeds=[0, 1])
    np.testing.assert_array_equal(res.history["nu"], np.full((2, 3), 5.0, np.float32))
    # R = s - mu * max(0, s - nu)
    s = res.history["s"]
    np.testing.assert_allclose(res.history["R"], s - 2.0 * np.maximum(0, s - 5.0), rtol=1e-5)


def test_forward_over_reverse_equals_reverse_over_reverse():
    """G_t from the JVP trick equals the literal grad-of-grad (and the hinge is applied)."""
    net = search.make_network(TINY)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
    y = jnp.array([1, 0, 3, 9])
    v = net.init(jax.random.PRNGKey(0), x[:1], jnp.zeros((6, 5)), train=False)
    f = search.make_apply(net, v["batch_stats"], "train")
    g = relax.gumbel_noise(jax.random.PRNGKey(2), (6, 5))
    alpha = jnp.zeros((6, 5))
    fns = {mode: jax.jit(lambda a, nu, m=mode:
                         search.objective_and_grad(f, v["params"], a, g, x, y, nu, TINY, m))
           for mode in search.GRAD_MODES}
    for nu in (1e-3, 1e6):  # penalty active / inactive
        (R1, s1, G1), (R2, s2, G2) = (fns[m](alpha, jnp.float32(nu)) for m in ("fwd-rev", "rev-rev"))
        np.testing.assert_allclose(s1, s2, rtol=1e-5)
        np.testing.assert_allclose(R1, R2, rtol=1e-5)
        np.testing.assert_allclose(G1, G2, rtol=2e-3, atol=1e-6 * float(jnp.abs(G2).max()))
        assert float(jnp.abs(G1).max()) > 0
    # the hinge: with the penalty active, G = (1 - mu) * grad s
    G_on, G_off = fns["fwd-rev"](alpha, jnp.float32(1e-3))[2], fns["fwd-rev"](alpha, jnp.float32(1e6))[2]
    np.testing.assert_allclose(G_on, (1 - TINY.mu) * G_off, rtol=1e-5, atol=1e-9)


def test_real_data_step_recomputed_by_hand():
    """run_search's s_t and ||G_t|| equal G_t recomputed from the documented keys and the pool."""
    pool = jax.random.normal(jax.random.PRNGKey(0), (16, 32, 32, 3))
    labels = jnp.arange(16, dtype=jnp.int32) % 10
    cfg = dataclasses.replace(TINY, image_size=32, data="real", steps=2)
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
        g = relax.gumbel_noise(gumbel_key, (6, 5))
        R, s, G = step(jnp.zeros((6, 5)), x, y, g, nu)
        np.testing.assert_allclose(res.history["s"][0, t], s, rtol=1e-4)
        np.testing.assert_allclose(res.history["grad_norm"][0, t], jnp.linalg.norm(G), rtol=1e-3)
        nu = (cfg.nu + s) / 2  # adaptive: mean(nu_init, s_1)
    with pytest.raises(ValueError, match="needs images"):
        search.run_search(cfg, seeds=[0])
    with pytest.raises(ValueError, match="exceeds"):
        search.run_search(dataclasses.replace(cfg, batch_size=32), seeds=[0], images=pool,
                          labels=labels)


def test_non_finite_scores_raise(monkeypatch):
    monkeypatch.setattr(ntk, "cross_entropy", lambda logits, y: jnp.mean(logits) * jnp.nan)
    saved = dict(search.runners._COMPILED)
    search.clear_cache()  # the compiled step without the patch must not be reused
    try:
        with pytest.raises(search.NonFiniteScoreError, match="seed 7, step 0"):
            search.run_search(dataclasses.replace(TINY, steps=1), seeds=[7])
    finally:  # drop the patched program, keep the others for the tests that follow
        search.clear_cache()
        search.runners._COMPILED.update(saved)


@pytest.mark.parametrize("change, match", [
    (dict(steps=0), "steps"), (dict(steps=-3), "steps"), (dict(batch_size=0), "batch_size"),
    (dict(nu=0.0), "nu must"), (dict(mu=-1.0), "mu must"), (dict(nu_mode="ada"), "nu_mode"),
    (dict(tau=0.0), "tau"), (dict(data="cifar"), "data must"), (dict(space="darts9"), "unknown search space"),
    (dict(image_size=10), "image_size"), (dict(bn_mode="x"), "bn_mode"),
    (dict(data="real", image_size=8), "32x32"), (dict(cells_per_stage=0), "cells_per_stage >= 1"),
    (dict(steps=2.5), "integer"),
])
def test_impossible_settings(change, match):
    with pytest.raises(ValueError, match=match):
        search.run_search(dataclasses.replace(TINY, **change), seeds=[0])
    with pytest.raises(ValueError, match="at least one seed"):
        search.run_search(TINY, seeds=[])
    with pytest.raises(ValueError, match=r"2\*\*32"):
        search.run_search(TINY, seeds=[2 ** 32 + 5])


def test_objective_and_nu_helpers():
    assert float(objective.penalised(jnp.float32(3.0), 2.0, 5.0)) == 3.0
    assert float(objective.penalised(jnp.float32(7.0), 2.0, 5.0)) == 3.0
    with pytest.raises(ValueError, match="nu mode"):
        objective.current_nu(objective.nu_init(1.0), "other")


def test_hard_sample_is_one_hot_with_soft_gradient():
    g = relax.gumbel_noise(jax.random.PRNGKey(0), (6, 5))
    a = jnp.zeros((6, 5))
    A = relax.relaxed_sample(a, g, hard=True)
    np.testing.assert_allclose(A, jax.nn.one_hot(jnp.argmax(g, -1), 5), atol=1e-6)
    w = jnp.arange(30.0).reshape(6, 5)
    gh = jax.grad(lambda a: jnp.sum(w * relax.relaxed_sample(a, g, hard=True)))(a)
    gs = jax.grad(lambda a: jnp.sum(w * relax.relaxed_sample(a, g, hard=False)))(a)
    np.testing.assert_allclose(gh, gs, rtol=1e-6)


def test_replay_of_a_mu0_run_equals_fresh_searches():
    """One mu=0 run replays NASI-FIX / NASI-ADA at any (mu, nu) and any shorter T exactly."""
    base = dataclasses.replace(TINY, steps=4, mu=0.0, nu_mode="fixed", channels=3)
    res0 = search.run_search(base, seeds=[0, 1, 2])
    assert res0.history["G"].shape == (3, 4, 6, 5)
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
