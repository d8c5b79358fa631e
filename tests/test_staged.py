"""The staged (stage-by-stage, for DARTS edge-by-edge) search step computes eq. 12 and its
A-gradient exactly."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import ntk, search, staged
from nasi_jax.spaces.darts import stages as stages_lib


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


def test_graph_stages_fan_out_and_in():
    # a value read by two stages (fan-out) and a stage reading two values (fan-in), with
    # stages sharing one function and one A row each, against one-program autodiff
    def lin(p, h, a, y):
        return jnp.tanh(a[0] * h @ p[0] + a[1] * h @ p[1])

    sts = [staged.Stage("in", (), lambda p, x, a, y: jnp.sin(x @ p), path=("w_in",)),
           staged.Stage("e0", (), lin, (0,), a_index=(0,), path=("w", "e0")),
           staged.Stage("e1", (), lin, (0,), a_index=(1,), path=("w", "e1")),
           staged.Stage("sum", (), lambda p, xs, a, y: xs[0] + xs[1], (1, 2)),
           staged.Stage("head", ("out",), _head1, (3, 0))]
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    params = {"w_in": jax.random.normal(keys[0], (5, 4)), "out": jax.random.normal(keys[1], (4, 3)),
              "w": {f"e{e}": 0.7 * jax.random.normal(keys[2 + e], (2, 4, 4)) for e in range(2)}}
    x, y = jax.random.normal(keys[4], (6, 5)), jnp.array([0, 1, 2, 0, 1, 2])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(8), (2, 2)), -1)
    s_ref, g_ref = jax.value_and_grad(
        lambda A_: ntk.tree_sq_norm(jax.grad(lambda p: staged.forward(sts, p, x, y, A_))(params)))(A)
    s, g = staged.chain_trace_and_grad(sts, params, x, y, A)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(g)).min() > 0
    with pytest.raises(ValueError, match="both own parameters 'w/e0'"):
        staged.chain_trace_and_grad(sts[:2] + [sts[2]._replace(path=("w",))] + sts[3:], params, x, y, A)
    with pytest.raises(ValueError, match="feed no later stage"):
        staged.chain_trace_and_grad(sts[:3] + [staged.Stage("head", ("out",), _head1, (1, 0))],
                                    params, x, y, A)


def _head1(p, xs, a, y):
    return ntk.cross_entropy((xs[0] + xs[1]) @ p["out"], y)


def _staged_equals_one_program(net, variables, sts, x, y, A, space):
    """The stages ``sts`` compose to ``net``'s loss, and the staged ``(s, ds/dA)`` equals the
    one-program fwd-rev step's (algorithm.objective_and_grad's pass) to float64 rounding;
    returns the staged ``ds/dA``."""
    f = search.make_apply(net, variables["batch_stats"], "train")
    params = variables["params"]

    @jax.jit
    def one_program(A_):
        loss = lambda p, B: ntk.cross_entropy(f(p, x, B), y)
        v = jax.grad(loss)(params, A_)
        ds = 2.0 * jax.grad(lambda B: jax.jvp(lambda p: loss(p, B), (params,), (v,))[1])(A_)
        return loss(params, A_), staged.forward(sts, params, x, y, A_), ntk.tree_sq_norm(v), ds

    whole, chained, s_ref, g_ref = one_program(A)
    np.testing.assert_allclose(chained, whole, rtol=1e-12)
    s, g = staged.trace_and_grad(net, params, x, y, A, space=space)
    assert s.dtype == g.dtype == jnp.float64
    np.testing.assert_allclose(s, s_ref, rtol=1e-10)
    np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-10 * float(np.abs(g_ref).max()))
    return g


def _owned(sts):
    return sorted([k for st in sts if st.path is None for k in st.keys]
                  + ["/".join(st.path) for st in sts if st.path is not None])


def _expected(params):  # the top-level parameters, the cells' modules, the edges' ops
    out = []
    for c, sub in params.items():
        if not c.startswith("cell_"):
            out.append(c)
            continue
        out += [f"{c}/{k}" if not k.startswith("edge_") else f"{c}/{k}/{op}" for k in sub
                for op in (sub[k] if k.startswith("edge_") else [None])]
    return sorted(out)


def test_darts_staged_step_equals_the_one_program_step(x64):
    """The DARTS stages compose to the supernet's loss, and the staged (s, ds/dA) equals the
    one-program step's to float64 rounding. One cell (DARTS' smallest supernet: one reduction
    cell, with stride-2 and stride-1 edges) keeps the one-program compile to ~30 s: three cells
    cost 230 s; the stages of the other cell kinds are the same functions. (In float32 the two
    agree to about 3e-5 of max|ds/dA|, the rounding of a second-order quantity.)"""
    from nasi_jax.spaces.darts.networks import DartsSupernet
    net = DartsSupernet(channels=2, layers=1, conv_impl="xla", dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 3])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (2, 14, 8), jnp.float64), -1)
    variables = net.init(jax.random.PRNGKey(0), x, A, train=False)
    sts = staged.stages(net)
    # stem, head; the cell: 2 preprocessings, 14 edges x 7 ops (`none` adds nothing), 4 nodes, out
    assert sts[0].name == "stem" and sts[-1].name == "head" and len(sts) == 2 + 2 + 14 * 7 + 4 + 1
    assert staged.stages(DartsSupernet(channels=2, layers=1, conv_impl="xla", dtype=jnp.float64)) is sts  # one set of programs
    # the 98 ops of the reduction cell are 14 functions (7 ops at stride 2 and at stride 1)
    ops = [st for st in sts if "/edge_" in st.name]
    assert len({st.apply for st in ops}) == 14 and all(st.linear_in_a for st in ops)
    assert [st.a_index for st in ops[:8]] == [(1, 0, m) for m in range(1, 8)] + [(1, 1, 1)]
    assert _owned(sts) == _expected(variables["params"])  # every parameter belongs to exactly one stage
    g = _staged_equals_one_program(net, variables, sts, x, y, A, "darts")
    assert np.abs(np.asarray(g[1, :, 1:])).min() > 0 and not np.asarray(g[1, :, 0]).any()  # all but `none`
    assert not np.asarray(g[0]).any()          # the normal cell's weights are unused here
    # conv_impl xla-taps (the CPU default): each program with the depthwise form it needs, same (s, ds/dA)
    taps_net = net.clone(conv_impl="xla-taps")
    taps_sts = staged.stages(taps_net)
    assert [st.vjp_apply is not None for st in taps_sts] == ["/edge_" in st.name for st in taps_sts]
    s_taps, g_taps = staged.trace_and_grad(taps_net, variables["params"], x, y, A)
    s_ref, g_ref = staged.trace_and_grad(net, variables["params"], x, y, A)
    np.testing.assert_allclose(s_taps, s_ref, rtol=1e-12)
    np.testing.assert_allclose(g_taps, g_ref, rtol=1e-10, atol=1e-12 * float(np.abs(g_ref).max()))


def test_darts_ops_switched_off_by_a_hard_sample_run_forward_mode_alone(x64, monkeypatch):
    """With a hard sample (one op per edge weighted 1, the others exactly 0) the staged step
    skips the unchosen ops' four programs (their value, v, tangent and cotangents are zeros)
    and takes their d/da from ``dzero``, forward mode alone: the same (s, ds/dA) as running
    everything, to float64 rounding, and as the one-program step (tested above at a soft A)."""
    from nasi_jax.core import relax
    from nasi_jax.spaces.darts.networks import DartsSupernet
    net = DartsSupernet(channels=2, layers=1, conv_impl="xla-taps", dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 3])
    g = jax.random.gumbel(jax.random.PRNGKey(2), (2, 14, 8), jnp.float64)
    A = relax.relaxed_sample(jnp.zeros((2, 14, 8), jnp.float64), g, tau=1.0, hard=True)
    params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    sts = staged.stages(net)
    off = staged._switched_off(sts, A)
    chosen = np.asarray(A[1, :, 1:]) != 0  # the reduction cell's ops (`none` has no stage)
    assert len(off) == chosen.size - chosen.sum() > 0
    assert all(sts[i].linear_in_a and float(A[sts[i].a_index]) == 0 for i in off)
    seen = []  # a traced A's entries are unknown: nothing is switched off
    jax.eval_shape(lambda A_: seen.append(staged._switched_off(sts, A_)) or A_, A)
    assert seen == [frozenset()]

    calls = {}
    plain = staged._compiled.__wrapped__

    def counting(stage_apply, vjp_apply):
        def count(name, f):  # runs, not the abstract evaluations that give a zero value's shape
            def run(*a):
                if not any(isinstance(t, jax.core.Tracer) for t in jax.tree_util.tree_leaves(a)):
                    calls[name] = calls.get(name, 0) + 1
                return f(*a)
            return run
        return tuple(count(n, f) for n, f in zip(("fwd", "bwd", "tangent", "hbwd", "dzero"),
                                                  plain(stage_apply, vjp_apply)))
    monkeypatch.setattr(staged, "_compiled", counting)
    s_all, g_all = staged.chain_trace_and_grad(sts, params, x, y, A, skip=False)
    assert calls == {"fwd": len(sts) - 1, "bwd": len(sts), "tangent": len(sts) - 1, "hbwd": len(sts)}
    calls.clear()
    s, g_ = staged.chain_trace_and_grad(sts, params, x, y, A)
    n_on = len(sts) - len(off)
    assert calls == {"fwd": n_on - 1, "bwd": n_on, "tangent": n_on - 1, "hbwd": n_on, "dzero": len(off)}
    np.testing.assert_allclose(s, s_all, rtol=1e-13)
    np.testing.assert_allclose(g_, g_all, rtol=1e-10, atol=1e-12 * float(np.abs(g_all).max()))
    assert np.array_equal(np.asarray(g_[1, :, 1:]) != 0, np.ones((14, 7), bool))  # every op has a gradient
    assert float(staged.chain_trace(sts, params, x, y, A)) == float(s)
    bad = [st._replace(a_index=(1, 0)) if st.linear_in_a else st for st in sts]  # a row, not an entry
    with pytest.raises(ValueError, match="must pick one entry of A"):
        staged._switched_off(bad, A)


def test_nb201_staged_step_equals_the_one_program_step(x64):
    """NB201 written cell by cell (:mod:`nasi_jax.spaces.nb201.stages`): the stages compose to
    the supernet's loss, own every parameter once, share one set of programs per cell width,
    and give the one-program step's (s, ds/dA) to float64 rounding."""
    from nasi_jax.spaces.nb201.networks import NB201Network
    from nasi_jax.spaces.nb201.stages import stages as nb201_stages
    # one cell per stage keeps the one-program compile short; N cells of a width share programs
    assert len({st.apply for st in nb201_stages(NB201Network(channels=2, cells_per_stage=3))
                if st.name.startswith("cell_")}) == 3
    net = NB201Network(channels=2, cells_per_stage=1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 3])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (6, 5), jnp.float64), -1)
    variables = net.init(jax.random.PRNGKey(0), x, A, train=False)
    sts = staged.stages(net, "nb201")
    assert [st.name for st in sts] == ["stem", "cell_0_0", "reduce_1", "cell_1_0", "reduce_2", "cell_2_0", "head"]
    assert nb201_stages(NB201Network(channels=2, cells_per_stage=1, dtype=jnp.float64)) is sts
    owned = sorted([k for st in sts if st.path is None for k in st.keys] + [st.path[0] for st in sts if st.path])
    assert owned == sorted(variables["params"])
    g = _staged_equals_one_program(net, variables, sts, x, y, A, "nb201")
    assert not np.asarray(g[:, 0]).any() and np.abs(np.asarray(g[:, 1:])).min() > 0  # `none` is skipped


def test_darts_stages_bn_options_and_trace_alone(x64):
    """The stages follow the supernet's options: affine cell BatchNorms (extra parameters, all
    owned by stages) and eval-mode BatchNorm (the initial running averages) give the supernet's
    own loss; ``chain_trace`` gives ``chain_trace_and_grad``'s s and equals the one-program
    ``||grad_theta L||^2``."""
    from nasi_jax.core import ntk
    from nasi_jax.spaces.darts.networks import DartsSupernet
    cell_affine, train = True, False  # both options at once (the defaults: the test above)
    net = DartsSupernet(channels=2, layers=1, conv_impl="xla", dtype=jnp.float64, cell_affine=cell_affine)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 3])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (2, 14, 8), jnp.float64), -1)
    params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    assert "scale" in str(jax.tree_util.tree_structure(params["cell_0"]["preprocess1"]))
    sts = stages_lib.stages(net, train=train)
    assert _owned(sts) == _expected(params)  # the affine parameters too (the pools' BatchNorms)
    assert "max_pool_3x3" in params["cell_0"]["edge_0_2"]
    # eval-mode BN differs from train mode: the two stage lists give different losses
    assert float(staged.forward(sts, params, x, y, A)) != float(staged.forward(stages_lib.stages(net), params, x, y, A))

    def loss(p):
        out = net.apply({"params": p}, x, A, train=True, mutable=["batch_stats"])[0] if train else \
            net.apply({"params": p, "batch_stats": net.init(jax.random.PRNGKey(0), x, A, train=False)["batch_stats"]},
                      x, A, train=False)
        return ntk.cross_entropy(out, y)
    np.testing.assert_allclose(staged.forward(sts, params, x, y, A), loss(params), rtol=1e-12)
    s = staged.chain_trace(sts, params, x, y, A)
    np.testing.assert_allclose(s, ntk.tree_sq_norm(jax.grad(loss)(params)), rtol=1e-10)
    assert float(s) == float(staged.chain_trace_and_grad(sts, params, x, y, A)[0])


def test_stages_run_side_by_side_with_the_same_bits():
    """``workers``: independent stages run side by side on threads; each value's cotangent is
    summed in a fixed order (its readers, descending), so any number of threads gives the
    one-by-one step's bits (float32, DARTS' smallest supernet: fan-out and fan-in in its cell)."""
    import threading
    from nasi_jax.spaces.darts.networks import DartsSupernet
    # the fixed order: value 0 read by stages 4 (second input), 2 and 1
    assert staged._feeds(((-1,), (0,), (0,), (1, 2), (3, 0)))[0] == [(4, 1), (2, 0), (1, 0)]
    # two stages that read only the input run at once: each waits for the other at a barrier
    meet = threading.Barrier(2, timeout=30)
    out = staged._run_stages([0, 1, 2], lambda i, get: (meet.wait(), get(-1))[1] + i if i < 2
                             else get(0) * get(1), 2, {-1: jnp.ones(())})
    assert float(out[2]) == 2.0

    def fails(i, get):
        if i == 1:
            raise RuntimeError("stage 1 failed")
        return get(i - 1) + 1
    with pytest.raises(RuntimeError, match="stage 1 failed"):  # reaches the caller; stage 2 never hangs
        staged._run_stages([0, 1, 2], fails, 2, {-1: jnp.ones(())})
    with pytest.raises(ValueError, match="workers=0"):
        staged._run_stages([0], fails, 0, {-1: jnp.ones(())})
    net = DartsSupernet(channels=2, layers=1, conv_impl="xla-taps")
    x, y = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3)), jnp.array([0, 3, 1, 2])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (2, 14, 8)), -1)
    params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    sts = staged.stages(net)
    s1, g1 = staged.chain_trace_and_grad(sts, params, x, y, A, workers=1)
    for w in (2, 3):
        s, g = staged.chain_trace_and_grad(sts, params, x, y, A, workers=w)
        assert np.asarray(s).tobytes() == np.asarray(s1).tobytes()
        assert np.array_equal(np.asarray(g), np.asarray(g1)) and np.abs(np.asarray(g1)).max() > 0
    assert np.asarray(staged.chain_trace(sts, params, x, y, A, workers=2)).tobytes() == np.asarray(s1).tobytes()
