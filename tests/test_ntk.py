"""NTK traces: our exact trace vs brute-force Jacobian and neural-tangents (float64), and
NASI's estimator (eq. 12) vs a hand-written reference."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import ntk, search
from nasi_jax.spaces import nb201

ARCHS = [
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
]


def small_net(arch, bn_mode, supernet=False):
    """A small network of the NB201 space in float64: f(params, x) -> [B, K]."""
    ops = nb201.parse_arch(arch)
    net = nb201.NB201Network(channels=2, cells_per_stage=1, num_classes=3, dtype=jnp.float64,
                             fixed=None if supernet else ops)
    w = nb201.one_hot(ops, dtype=jnp.float64) if supernet else None
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 8, 8, 3), jnp.float64)
    v = net.init(jax.random.PRNGKey(0), x[:1], w, train=False)
    apply = search.make_apply(net, v["batch_stats"], bn_mode)
    return (lambda p, xb: apply(p, xb, w)), v["params"], x


def brute_force_trace(f, params, x):
    jac = jax.jacrev(lambda p: f(p, x))(params)
    return sum(float(jnp.sum(leaf ** 2)) for leaf in jax.tree_util.tree_leaves(jac))


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("arch", ARCHS)
def test_exact_trace_equals_brute_force_and_chunking(x64, arch, bn_mode):
    f, p, x = small_net(arch, bn_mode)
    want = brute_force_trace(f, p, x)
    for chunk in (None, 1, 7):
        got = float(jax.jit(lambda p, x: ntk.exact_trace(f, p, x, chunk_size=chunk))(p, x))
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("neural_tangents") is None,
                    reason="neural-tangents not installed (pip install --no-deps neural-tangents==0.6.5 frozendict)")
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_exact_trace_equals_neural_tangents(x64, bn_mode):
    """Ours equals the brute-force Jacobian and both of neural-tangents' implementations
    (1: Jacobian contraction, 2: NTK-vector products) on the supernet."""
    from nasi_jax import nt_compat
    f, p, x = small_net(ARCHS[0], bn_mode, supernet=True)
    ours = float(ntk.exact_trace(f, p, x, chunk_size=4))
    np.testing.assert_allclose(ours, brute_force_trace(f, p, x), rtol=1e-6)
    nt = nt_compat.import_neural_tangents()
    for implementation in (1, 2):
        theirs = float(nt_compat.empirical_ntk_trace(f, p, x, implementation=implementation))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, err_msg=f"implementation {implementation}")
        # neural-tangents' trace_axes=(-1,) is the MEAN over logits: K x its trace is ours
        k = nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=None, implementation=implementation)(x, None, p)
        np.testing.assert_allclose(3 * float(jnp.trace(k)), ours, rtol=1e-6)


def test_train_mode_batchnorm_couples_examples(x64):
    """In train mode one example's logits depend on the others (so vmap_axes=None matters)."""
    f, p, x = small_net(ARCHS[0], "train")
    x2 = x.at[1].set(x[1] + 1.0)
    assert not np.allclose(f(p, x)[0], f(p, x2)[0])
    fe, pe, _ = small_net(ARCHS[0], "eval")
    np.testing.assert_allclose(fe(pe, x)[0], fe(pe, x2)[0])


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_nasi_estimator_equals_reference(x64, bn_mode):
    """eq. 12 by hand: grad of mean CE = (1/B) J^T (softmax - onehot); s = ||.||^2."""
    f, p, x = small_net(ARCHS[1], bn_mode, supernet=True)
    y = jnp.array([0, 2, 1, 2])
    logits = f(p, x)
    resid = (jax.nn.softmax(logits) - jax.nn.one_hot(y, 3)) / x.shape[0]  # [B, K]
    jac = jax.jacrev(lambda q: f(q, x))(p)
    grads = jax.tree_util.tree_map(lambda J: jnp.tensordot(resid, J, axes=([0, 1], [0, 1])), jac)
    want = sum(float(jnp.sum(g ** 2)) for g in jax.tree_util.tree_leaves(grads))
    got = float(ntk.nasi_estimator(f, p, x, y))
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_exact_trace_errors():
    f = lambda p, x: x @ p
    with pytest.raises(ValueError, match="chunk_size"):
        ntk.exact_trace(f, jnp.ones((3, 2)), jnp.ones((2, 3)), chunk_size=0)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        ntk.exact_trace(lambda p, x: (x @ p).ravel(), jnp.ones((3, 2)), jnp.ones((2, 3)))
