"""The loop-safe convolution: the same values, first and second derivatives as XLA's, also
inside loops and conditionals, and clear errors for what it does not support."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import conv as cv

DN = ("NHWC", "HWIO", "NHWC")
pytestmark = pytest.mark.usefixtures("x64")


def ref(x, w, s, p):
    return jax.lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)), dimension_numbers=DN)


@pytest.mark.parametrize("k,s,h", [(3, 1, 8), (1, 1, 8), (3, 2, 8), (3, 2, 7), (1, 2, 6)])
def test_values_and_derivatives_match_xla(k, s, h):
    p = (k - 1) // 2
    x = jax.random.normal(jax.random.PRNGKey(0), (2, h, h, 3), jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, 3, 4), jnp.float64)
    np.testing.assert_allclose(cv.conv(x, w, s, p), ref(x, w, s, p), rtol=1e-12, atol=1e-12)
    L_ref = lambda x, w: jnp.sum(jnp.sin(ref(x, w, s, p)))
    L_new = lambda x, w: jnp.sum(jnp.sin(cv.conv(x, w, s, p)))
    for a, b in zip(jax.grad(L_ref, (0, 1))(x, w), jax.grad(L_new, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # second order (reverse over reverse), as NASI's step differentiates through grad_theta
    H_ref = jax.grad(lambda x, w: jnp.sum(jax.grad(L_ref, 1)(x, w) ** 2), (0, 1))(x, w)
    H_new = jax.grad(lambda x, w: jnp.sum(jax.grad(L_new, 1)(x, w) ** 2), (0, 1))(x, w)
    for a, b in zip(H_ref, H_new):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_inside_switch_and_scan():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3), jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 3), jnp.float64)
    L = lambda f: lambda w: jnp.sum(jnp.tanh(f(x, w, 1, 1)))
    g_ref = jax.grad(L(ref))(w)
    g_sw = jax.jit(jax.grad(lambda w: jax.lax.switch(1, [lambda w: 0.0 * jnp.sum(w), L(cv.conv)], w)))(w)
    np.testing.assert_allclose(g_sw, g_ref, rtol=1e-10)
    g_scan = jax.lax.scan(lambda c, _: (c + jax.grad(L(cv.conv))(w), None), jnp.zeros_like(w),
                          None, length=2)[0]
    np.testing.assert_allclose(g_scan, 2 * g_ref, rtol=1e-10)


def test_flax_adapter_and_errors():
    x = jnp.ones((1, 8, 8, 3), jnp.float64)
    for kw in (dict(padding=((1, 1), (1, 1))), dict(padding="SAME"), dict(padding="VALID"),
               dict(padding=((1, 1), (1, 1)), strides=(2, 2))):
        a = nn.Conv(4, (3, 3), use_bias=False, param_dtype=jnp.float64, **kw)
        b = nn.Conv(4, (3, 3), use_bias=False, param_dtype=jnp.float64,
                    conv_general_dilated=cv.conv_general_dilated, **kw)
        v = a.init(jax.random.PRNGKey(0), x)
        np.testing.assert_allclose(a.apply(v, x), b.apply(v, x), rtol=1e-12)
    for kw, msg in [(dict(kernel_dilation=(2, 2)), "dilation"), (dict(feature_group_count=3), "grouped"),
                    (dict(padding="SAME", strides=(2, 2)), "asymmetric"),
                    (dict(padding=((0, 1), (0, 1))), "symmetric")]:
        m = nn.Conv(3, (3, 3), use_bias=False, conv_general_dilated=cv.conv_general_dilated, **kw)
        with pytest.raises(ValueError, match=msg):
            m.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="padding"):
        cv.conv(x, jnp.ones((3, 3, 3, 3)), 1, 3)
    with pytest.raises(ValueError, match="conv_impl"):
        cv.resolve_conv_impl("fast", nested=True)
    assert cv.resolve_conv_impl("xla", nested=True) == "xla"
    assert cv.resolve_conv_impl("auto", nested=False) == "xla"
