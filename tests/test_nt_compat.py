"""Tests for nasi_jax.nt_compat (neural-tangents 0.6.5 on current jax)."""

import functools
import importlib.util

import pytest

if importlib.util.find_spec("neural_tangents") is None:
    # Not pytest.importorskip: an unpatched import fails with ImportError on new
    # jax and would be silently turned into a skip.
    pytest.skip("neural-tangents is not installed", allow_module_level=True)

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import nt_compat
from nasi_jax.nt_compat import (
    SUPPORTED_IMPLEMENTATIONS,
    empirical_ntk_trace,
    import_neural_tangents,
)


@pytest.fixture(scope="module", autouse=True)
def x64():
    """Run every test in float64; restore the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def nt():
    return import_neural_tangents()


# --------------------------------------------------------------------------
# Tiny models: f(params, x) -> [B, K].


def _mlp():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {
        "w1": jax.random.normal(k1, (3, 8)) / np.sqrt(3),
        "b1": jnp.zeros(8) + 0.1,
        "w2": jax.random.normal(k2, (8, 4)) / np.sqrt(8),
    }

    def f(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]

    x = jax.random.normal(k3, (5, 3))
    return f, params, x


def _batchnorm_mlp():
    """Normalisation over the batch axis: examples interact."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    params = {
        "w1": jax.random.normal(k1, (3, 6)) / np.sqrt(3),
        "gamma": jnp.ones(6),
        "beta": jnp.zeros(6),
        "w2": jax.random.normal(k2, (6, 3)) / np.sqrt(6),
    }

    def f(p, x):
        h = x @ p["w1"]
        mean = h.mean(axis=0)
        var = h.var(axis=0)
        h = (h - mean) / jnp.sqrt(var + 1e-5) * p["gamma"] + p["beta"]
        return jax.nn.relu(h) @ p["w2"]

    x = jax.random.normal(k3, (4, 3))
    return f, params, x


class _TinyConv(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), strides=(2, 2))(x)
        x = nn.relu(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(3)(x)


def _flax_conv():
    model = _TinyConv()
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    x = jax.random.normal(k1, (3, 5, 5, 2))
    variables = model.init(k2, x)  # {"params": ...} flax variables dict
    # flax initialises float32 parameters regardless of jax_enable_x64.
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)

    def f(v, x):
        return model.apply(v, x)

    return f, variables, x


MODELS = {"mlp": _mlp, "batchnorm_mlp": _batchnorm_mlp, "flax_conv": _flax_conv}


def _jacobian_leaves(f, params, x):
    """Per-leaf Jacobians reshaped to [B, K, P_leaf]."""
    out = f(params, x)
    jac = jax.jacrev(f)(params, x)
    return [j.reshape(out.shape + (-1,)) for j in jax.tree.leaves(jac)]


def _brute_trace(f, params, x):
    return sum(jnp.sum(j**2) for j in _jacobian_leaves(f, params, x))


# --------------------------------------------------------------------------


def test_import_is_idempotent_and_patched(nt):
    assert import_neural_tangents() is nt
    assert nt.__version__ == "0.6.5"
    for name in ("empirical_ntk_fn", "monte_carlo_kernel_fn", "batch",
                 "stax", "predict"):
        assert hasattr(nt, name)
    import jax.core
    import jax.extend.core
    assert jax.core.Jaxpr is jax.extend.core.Jaxpr
    # Re-running the patches changes nothing.
    ad = jax.interpreters.ad
    before = (jax.core.Jaxpr, ad.zeros_like_p, ad.reducing_transposes)
    nt_compat._patch_jax()
    nt_compat._stub_experimental()
    nt_compat._patch_get_flops(nt)
    assert (jax.core.Jaxpr, ad.zeros_like_p, ad.reducing_transposes) == before
    # The TensorFlow bridge is a stub.
    with pytest.raises(AttributeError, match="stubs the TensorFlow bridge"):
        nt.experimental.get_ntk_fn  # noqa: B018


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(nt_compat, "_NT", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps "
                       r"neural-tangents==0\.6\.5 frozendict"):
        import_neural_tangents()


def test_get_flops_accepts_dict_cost_analysis(nt):
    import neural_tangents._src.empirical as empirical

    a = jnp.ones((4, 4))
    for optimize in (True, False):
        flops = empirical._get_flops(lambda m: m @ m, optimize, a)
        assert float(flops) > 0


@pytest.mark.parametrize("implementation", SUPPORTED_IMPLEMENTATIONS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_empirical_ntk_trace_matches_jacobian(model, implementation):
    f, params, x = MODELS[model]()
    # The helper is jittable (and jit keeps this test fast on CPU).
    trace_fn = jax.jit(functools.partial(
        empirical_ntk_trace, f, implementation=implementation))
    got = trace_fn(params, x)
    want = jax.jit(functools.partial(_brute_trace, f))(params, x)
    assert got.dtype == jnp.float64
    assert got.shape == ()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_vmap_axes_matters_when_examples_interact():
    f, params, x = _batchnorm_mlp()
    exact = empirical_ntk_trace(f, params, x, vmap_axes=None)  # eager
    np.testing.assert_allclose(exact, _brute_trace(f, params, x), rtol=1e-6)
    # vmap_axes=0 wrongly assumes independent examples (one-example batches).
    wrong = jax.jit(functools.partial(empirical_ntk_trace, f, vmap_axes=0))(
        params, x)
    assert not np.allclose(exact, wrong, rtol=1e-3)


@pytest.mark.parametrize("implementation", SUPPORTED_IMPLEMENTATIONS)
def test_full_empirical_ntk_matches_jjt(nt, implementation):
    f, params, x1 = _mlp()
    x2 = jax.random.normal(jax.random.PRNGKey(7), (2, 3))
    kernel_fn = nt.empirical_ntk_fn(
        f, trace_axes=(), vmap_axes=None, implementation=implementation)
    k = kernel_fn(x1, x2, params)  # [B1, B2, K, K]
    j1 = _jacobian_leaves(f, params, x1)
    j2 = _jacobian_leaves(f, params, x2)
    want = sum(jnp.einsum("ikp,jlp->ijkl", a, b) for a, b in zip(j1, j2))
    assert k.shape == (5, 2, 4, 4)
    np.testing.assert_allclose(k, want, rtol=1e-6, atol=1e-10)


def test_unsupported_implementation_raises():
    f, params, x = _mlp()
    for bad in (0, 3, "auto"):
        with pytest.raises(ValueError, match=r"\(1, 2\)"):
            empirical_ntk_trace(f, params, x, implementation=bad)


# --------------------------------------------------------------------------
# Infinite-width kernels, Monte Carlo, batching, prediction.


def _jit_kernel(kernel_fn):
    """stax kernel_fns run op-by-op otherwise, which is slow on CPU."""
    return jax.jit(kernel_fn, static_argnames="get")


def _assert_symmetric_psd(k):
    k = np.asarray(k)
    assert np.all(np.isfinite(k))
    np.testing.assert_allclose(k, k.T, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > -1e-8 * np.abs(k).max()


def test_stax_dense_and_conv_kernels(nt):
    stax = nt.stax
    x = jax.random.normal(jax.random.PRNGKey(3), (6, 5))
    _, _, kernel_fn = stax.serial(
        stax.Dense(64), stax.Relu(), stax.Dense(64), stax.Relu(), stax.Dense(1))
    k = _jit_kernel(kernel_fn)(x, x, "ntk")
    assert k.shape == (6, 6)
    _assert_symmetric_psd(k)

    imgs = jax.random.normal(jax.random.PRNGKey(4), (4, 5, 5, 2))
    _, _, conv_kernel_fn = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(),
        stax.Conv(8, (3, 3)), stax.Relu(), stax.Flatten(), stax.Dense(1))
    kc = _jit_kernel(conv_kernel_fn)(imgs, imgs, "ntk")
    assert kc.shape == (4, 4)
    _assert_symmetric_psd(kc)


def test_monte_carlo_ntk_approaches_analytic(nt):
    stax = nt.stax
    x = jax.random.normal(jax.random.PRNGKey(5), (4, 3))
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(1024, W_std=1.5, b_std=0.1), stax.Relu(),
        stax.Dense(1, W_std=1.5, b_std=0.1))
    analytic = _jit_kernel(kernel_fn)(x, x, "ntk")
    mc_fn = nt.monte_carlo_kernel_fn(
        init_fn, apply_fn, jax.random.PRNGKey(6), n_samples=4,
        implementation=1)
    mc = mc_fn(x, x, "ntk")
    assert mc.shape == analytic.shape
    rel = np.linalg.norm(mc - analytic) / np.linalg.norm(analytic)
    assert rel < 0.1, rel


def test_batch_matches_unbatched(nt):
    stax = nt.stax
    x1 = jax.random.normal(jax.random.PRNGKey(8), (6, 4))
    x2 = jax.random.normal(jax.random.PRNGKey(9), (4, 4))
    _, _, kernel_fn = stax.serial(stax.Dense(32), stax.Erf(), stax.Dense(1))
    want = _jit_kernel(kernel_fn)(x1, x2, ("nngp", "ntk"))
    got = nt.batch(kernel_fn, batch_size=2)(x1, x2, ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-10)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-10)


def test_predict_gradient_descent_mse(nt):
    stax = nt.stax
    x_train = jax.random.normal(jax.random.PRNGKey(10), (5, 3))
    x_test = jax.random.normal(jax.random.PRNGKey(11), (3, 3))
    y_train = jax.random.normal(jax.random.PRNGKey(12), (5, 2))
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(64), stax.Relu(), stax.Dense(2))
    _, params = init_fn(jax.random.PRNGKey(13), x_train.shape)
    apply_fn = jax.jit(apply_fn)
    fx_train_0 = apply_fn(params, x_train)
    fx_test_0 = apply_fn(params, x_test)
    kernel_fn = _jit_kernel(kernel_fn)
    k_train_train = kernel_fn(x_train, None, "ntk")
    k_test_train = kernel_fn(x_test, x_train, "ntk")

    predict_fn = nt.predict.gradient_descent_mse(
        k_train_train, y_train, diag_reg=1e-6)
    train_0, test_0 = predict_fn(0.0, fx_train_0, fx_test_0, k_test_train)
    np.testing.assert_allclose(train_0, fx_train_0, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(test_0, fx_test_0, rtol=1e-6, atol=1e-8)

    train_inf, test_inf = predict_fn(None, fx_train_0, fx_test_0, k_test_train)
    np.testing.assert_allclose(train_inf, y_train, rtol=1e-6, atol=1e-8)
    assert np.all(np.isfinite(test_inf))
