"""The staged (cell-by-cell) DARTS search step computes eq. 12 and its A-gradient exactly."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import ntk, search, staged


def _mixed(p, c, A, y, e):  # a toy "edge": tanh of a mix of 3 linear maps, weighted by A[e]
    return tuple(jnp.tanh(sum(A[e, k] * (h @ p[f"w{e}"][k]) for k in range(3))) for h in c)


def _head(p, c, A, y):
    logits = (c[0] + c[1]) @ p["out"]
    return ntk.cross_entropy(logits, y)


def test_chain_matches_one_program_autodiff():
    # Stages c_i = f_i(theta_i, c_{i-1}, A) with a pair carry, A shared by all stages, as in
    # the DARTS supernet; reference: grad_A of ||grad_theta L||^2 taken by jax in one program.
    E = 3
    sts = [staged.Stage("in", ("w_in",), lambda p, x, A, y: (x @ p["w_in"], jnp.sin(x @ p["w_in"])))]
    sts += [staged.Stage(f"e{e}", (f"w{e}",), functools.partial(_mixed, e=e)) for e in range(E)]
    sts += [staged.Stage("head", ("out",), _head)]
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    params = {"w_in": jax.random.normal(keys[0], (5, 4)), "out": jax.random.normal(keys[1], (4, 3)),
              **{f"w{e}": 0.7 * jax.random.normal(keys[2 + e], (3, 4, 4)) for e in range(E)}}
    x = jax.random.normal(keys[5], (6, 5))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(7), (E, 3)), -1)

    def loss(p, A_):
        c = x
        for st in sts:
            c = st.apply({k: p[k] for k in st.keys}, c, A_, y)
        return c

    s_ref, g_ref = jax.value_and_grad(lambda A_: ntk.tree_sq_norm(jax.grad(loss)(params, A_)))(A)
    s, g = staged.chain_trace_and_grad(sts, params, x, y, A)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(g)).max() > 0


def test_darts_stages_compose_to_the_supernet():
    cfg = search.SearchConfig(space="darts", batch_size=2, channels=2, cells_per_stage=1, image_size=8)
    net = search.make_network(cfg)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3))
    y = jnp.array([0, 3])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (2, 14, 8)), -1)
    variables = net.init(jax.random.PRNGKey(0), x, A, train=False)
    sts = staged.stages(net)
    assert [st.name for st in sts] == ["stem"] + [f"cell_{i}" for i in range(5)] + ["head"]
    assert sorted(k for st in sts for k in st.keys) == sorted(variables["params"])
    assert staged.stages(search.make_network(cfg)) is sts  # one set of programs per configuration

    @jax.jit
    def both(params):
        c = x
        for st in sts:
            c = st.apply({k: params[k] for k in st.keys}, c, A, y)
        f = search.make_apply(net, variables["batch_stats"], "train")
        return c, ntk.cross_entropy(f(params, x, A), y)

    chained, whole = both(variables["params"])
    np.testing.assert_allclose(chained, whole, rtol=1e-6)
