"""The DARTS space: genotype codec, read-out, supernet, evaluation network, parameter counts, CLI.

Everything runs at tiny sizes (C=2, 3 cells, 8x8 or 32x32 inputs, batch 2); the only full-size
object, NetworkCIFAR(C=36, 20 cells), is only traced under ``jax.eval_shape`` to count parameters.
"""

import doctest
import functools
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import cli
from nasi_jax.spaces import darts as D

V2_TEXT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
           "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
           "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
           "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
           "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
# a genotype without pools (every op has the same function in the supernet and in NetworkCIFAR
# at initialisation, where the affine BNs are the identity) and with every op kind but pools
NO_POOL = D.parse_genotype(
    "Genotype(normal=[('sep_conv_3x3', 0), ('dil_conv_5x5', 1), ('sep_conv_5x5', 1), ('skip_connect', 2),"
    " ('dil_conv_3x3', 0), ('skip_connect', 3), ('sep_conv_3x3', 4), ('skip_connect', 1)],"
    " normal_concat=range(2, 6),"
    " reduce=[('skip_connect', 0), ('sep_conv_5x5', 1), ('dil_conv_3x3', 2), ('skip_connect', 1),"
    " ('sep_conv_3x3', 0), ('dil_conv_5x5', 3), ('skip_connect', 4), ('sep_conv_3x3', 2)],"
    " reduce_concat=range(2, 6))")
TINY = dict(channels=2, layers=3)


def _key(i=0):
    return jax.random.PRNGKey(i)


# --------------------------------------------------------------------------- codec

def test_published_genotypes_round_trip():
    assert str(D.DARTS_V2) == V2_TEXT == D.genotype_to_str(D.parse_genotype(V2_TEXT))
    for name, g in D.PUBLISHED.items():
        assert D.parse_genotype(D.genotype_to_str(g)) == g
        assert D.parse_genotype(name) is g
    assert D.PUBLISHED["DARTS"] == D.DARTS_V2
    assert D.DARTS_V1 != D.DARTS_V2


@pytest.mark.parametrize("text", [
    V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 6)"),                 # as DARTS' search log prints it
    "DARTS_V2 = " + V2_TEXT,                                       # pasted from genotypes.py
    "genotypes." + V2_TEXT,
    V2_TEXT.replace("), (", "),\n    ("),                          # line breaks
    V2_TEXT.replace("normal=", "").replace("normal_concat=", "").replace("reduce=", "")
    .replace("reduce_concat=", ""),                                # positional fields
    V2_TEXT.replace("[", "(").replace("]", ")"),                    # tuples
])
def test_parse_accepts_literature_forms(text):
    assert D.parse_genotype(text) == D.DARTS_V2


def _bad(field_text, field="normal"):
    """V2_TEXT with one field's value replaced."""
    pattern = {"normal": r"normal=\[.*?\](?=, normal_concat)", "reduce": r"reduce=\[.*?\](?=, reduce_concat)",
               "normal_concat": r"normal_concat=\[.*?\]", "reduce_concat": r"reduce_concat=\[.*?\]"}[field]
    out, n = re.subn(pattern, f"{field}={field_text}", V2_TEXT, count=1)
    assert n == 1
    return out


EIGHT = "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)] + [('skip_connect', 0)] * 6"
VALID8 = ("[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
          "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)]")


@pytest.mark.parametrize("text, match", [
    ("", "malformed genotype"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed genotype"),          # syntax error
    ("DARTS_V9", "expected Genotype"),                                       # unknown name
    ("__import__('os').system('echo hi')", "expected Genotype"),            # never evaluated
    ("Genotype(normal=[], normal_concat=[2])", "missing field"),
    (V2_TEXT.replace("normal_concat=", "normal_kat="), "unknown field 'normal_kat'"),
    (V2_TEXT[:-1] + ", normal=[])", "given twice"),
    (_bad(EIGHT), "not a literal value"),                                    # an expression
    (_bad("open('x')", "normal_concat"), "not a call of 'open'"),
    (_bad("range(2, 'x')", "normal_concat"), "integer literals"),
    (_bad(VALID8.replace("dil_conv_3x3", "conv_7x7")), "unknown op 'conv_7x7'"),
    (_bad(VALID8.replace("('sep_conv_3x3', 1), ('skip_connect', 0)", "('sep_conv_3x3', 1), ('none', 0)")),
     "op 'none'"),
    (_bad(VALID8.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)")), "input index 5 out of range"),
    (_bad(VALID8.replace("('sep_conv_3x3', 1), ('sep_conv_3x3', 0)", "('sep_conv_3x3', 2), ('sep_conv_3x3', 0)", 1)),
     "input index 2 out of range"),
    (_bad(VALID8.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', -1)")), "out of range"),
    (_bad("[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]"), "needs 8 edges"),
    (_bad(VALID8[:-1] + ", ('skip_connect', 0), ('skip_connect', 1)]", "reduce"), "needs 8 edges"),
    (_bad(VALID8.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 2, 1)")), "expected a pair"),
    (_bad(VALID8.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', True)")), "expected a pair"),
    (_bad("{'a': 1}"), "must be a list"),
    (_bad("range(2, 7)", "normal_concat"), "bad normal_concat"),
    (_bad("[2, 2, 3, 4]", "reduce_concat"), "bad reduce_concat"),
    (_bad("[1, 2, 3]", "reduce_concat"), "bad reduce_concat"),
    (_bad("[]", "normal_concat"), "non-empty list"),
    (_bad("'2345'", "normal_concat"), "non-empty list"),
])
def test_parse_errors(text, match):
    with pytest.raises(D.GenotypeError, match=re.escape(match)):
        D.parse_genotype(text)
    assert issubclass(D.GenotypeError, ValueError)


def test_genotype_to_ops_and_one_hot():
    normal, reduce = D.genotype_to_ops(D.DARTS_V2)
    assert len(normal) == len(reduce) == D.NUM_EDGES == 14
    # node 2: edges 0->2, 1->2 are sep_conv_3x3; node 5: 0->5 skip, 2->5 dil_conv_3x3
    assert normal[D.EDGES.index((0, 2))] == normal[D.EDGES.index((1, 2))] == D.OPS.index("sep_conv_3x3")
    assert normal[D.EDGES.index((2, 5))] == D.OPS.index("dil_conv_3x3")
    assert sum(o != 0 for o in normal) == sum(o != 0 for o in reduce) == 8
    wn, wr = D.one_hot(D.DARTS_V2)
    assert wn.shape == wr.shape == (14, 8) and np.all(np.asarray(wn).sum(1) == 1)
    twice = D.DARTS_V2._replace(normal=(("sep_conv_3x3", 0), ("skip_connect", 0)) + D.DARTS_V2.normal[2:])
    with pytest.raises(D.GenotypeError, match="two edges from node 0"):
        D.genotype_to_ops(twice)


# --------------------------------------------------------------------------- read-out

def test_readout_never_none_two_edges_per_node():
    rng = np.random.default_rng(0)
    for trial in range(20):
        a = rng.normal(size=(2, 14, 8))
        a[:, :, 0] += 3.0  # 'none' dominates every edge
        for logits in (True, False):
            g = D.genotype_from_alpha(a[0], a[1], logits=logits)
            assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
            for cell, alpha in ((g.normal, a[0]), (g.reduce, a[1])):
                assert len(cell) == 8
                p = np.exp(alpha) / np.exp(alpha).sum(1, keepdims=True) if logits else alpha
                for m in range(4):
                    node = m + 2
                    pairs = cell[2 * m: 2 * m + 2]
                    js = [j for _, j in pairs]
                    assert len(set(js)) == 2 and all(0 <= j < node for j in js)
                    # brute force: the two incoming edges with the largest best non-none weight
                    strength = {j: p[D.EDGES.index((j, node)), 1:].max() for j in range(node)}
                    assert sorted(js) == sorted(sorted(strength, key=lambda j: -strength[j])[:2])
                    for op, j in pairs:
                        assert op != "none"
                        assert op == D.OPS[1 + int(np.argmax(p[D.EDGES.index((j, node)), 1:]))]
            assert D.parse_genotype(str(g)) == g


def test_read_out_ops_equals_genotype_from_raw_alpha():
    # The traceable read-out used inside the search equals the host-side one on raw alpha*,
    # ties included (integer-valued alpha makes ties frequent).
    rng = np.random.default_rng(1)
    alphas = np.concatenate([rng.normal(size=(30, 2, 14, 8)),
                             rng.integers(-2, 3, size=(30, 2, 14, 8)).astype(float)])
    ops = np.asarray(D.read_out_ops(alphas))
    assert ops.shape == (60, 2, 14)
    for a, o in zip(alphas, ops):
        g = D.genotype_from_alpha(a[0], a[1], logits=False)
        assert D.genotype_to_ops(g) == tuple(map(tuple, o.tolist()))
        assert D.genotype_to_ops(D.ops_to_genotype(o)) == D.genotype_to_ops(g)
    with pytest.raises(D.GenotypeError, match=r"\[\.\.\., 2, 14, 8\]"):
        D.read_out_ops(np.zeros((14, 8)))


def test_ops_to_genotype_errors():
    ok = np.asarray(D.genotype_to_ops(D.DARTS_V2))
    bad = ok.copy(); bad[0, 0] = 0          # node 2 keeps one edge
    with pytest.raises(D.GenotypeError, match="node 2 has 1 edges"):
        D.ops_to_genotype(bad)
    bad = ok.copy(); bad[1, 3] = 9
    with pytest.raises(D.GenotypeError, match="op index 9"):
        D.ops_to_genotype(bad)
    with pytest.raises(D.GenotypeError, match=r"shape \(2, 14\)"):
        D.ops_to_genotype(ok[0])


def test_parse_accepts_darts_namedtuples_and_names_5_node_cells():
    import collections
    G = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    theirs = G(list(D.DARTS_V2.normal), range(2, 6), list(D.DARTS_V2.reduce), range(2, 6))
    assert D.parse_genotype(theirs) == D.DARTS_V2
    nasnet_like = G([("sep_conv_5x5", 1)] * 10, [2, 3, 4, 5, 6], [("sep_conv_5x5", 1)] * 10, [4, 5, 6])
    with pytest.raises(D.GenotypeError, match="5-node cell"):
        D.parse_genotype(nasnet_like)


def test_readout_recovers_a_genotype_and_checks_shapes():
    wn, wr = D.one_hot(D.DARTS_V2)
    g = D.genotype_from_alpha(5.0 * wn, 5.0 * wr)
    for got, want in ((g.normal, D.DARTS_V2.normal), (g.reduce, D.DARTS_V2.reduce)):
        for m in range(4):
            assert set(got[2 * m: 2 * m + 2]) == set(want[2 * m: 2 * m + 2])
    with pytest.raises(D.GenotypeError, match="shape"):
        D.genotype_from_alpha(np.zeros((14, 7)), np.zeros((14, 8)))
    with pytest.raises(D.GenotypeError, match="non-finite"):
        D.genotype_from_alpha(np.full((14, 8), np.nan), np.zeros((14, 8)))


# --------------------------------------------------------------------------- parameter counts

def test_param_count_darts_v2_matches_literature():
    # Reference: DARTS' cnn/train.py logs "param size = 3.349342MB" for the default genotype
    # (DARTS = DARTS_V2) with init_channels=36, layers=20; utils.count_parameters_in_MB sums
    # every parameter whose name lacks "auxiliary", divided by 1e6 (so 3 349 342 parameters).
    # Seen in a public annotated copy of DARTS' train.py that records that log line; the
    # DARTS paper (Table 1) rounds it to 3.3M.
    assert D.count_params(D.DARTS_V2, channels=36, layers=20) == 3_349_342
    # DARTS_V1 (first order): our count; no exact published log value was found (paper: "3.3M").
    assert D.count_params(D.DARTS_V1) == 3_169_414
    assert D.count_params(D.DARTS_V2, auxiliary=True) > 3_349_342


def test_param_count_aux_head_equals_the_built_network():
    net = D.NetworkCIFAR(D.DARTS_V2, **TINY, auxiliary=True)
    shapes = jax.eval_shape(lambda k: net.init(k, jnp.zeros((1, 32, 32, 3)), train=False), _key())
    full = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(shapes["params"]))
    assert "auxiliary_head" in shapes["params"]
    assert "batch_stats" in shapes  # running stats exist but are not counted
    assert D.count_params(D.DARTS_V2, **TINY, auxiliary=True) == full
    assert D.count_params(D.DARTS_V2, **TINY) < full


def test_supernet_and_network_share_the_cell_wiring():
    """The fixed supernet and NetworkCIFAR have the same conv/linear weights (cells written twice)."""
    def kernels(tree):
        flat = flax.traverse_util.flatten_dict(tree)
        return sorted(int(np.prod(v.shape)) for k, v in flat.items() if k[-1] == "kernel")

    for g in (D.DARTS_V2, NO_POOL):
        sup = D.DartsSupernet(**TINY, fixed=D.genotype_to_ops(g))
        net = D.NetworkCIFAR(g, **TINY, auxiliary=False)
        x = jnp.zeros((1, 8, 8, 3))
        ps = jax.eval_shape(lambda k: sup.init(k, x, None, train=False), _key())["params"]
        pn = jax.eval_shape(lambda k: net.init(k, x, train=False), _key())["params"]
        assert kernels(ps) == kernels(pn)


# --------------------------------------------------------------------------- search supernet

def _supernet_vars(x, w, **kw):
    return D.DartsSupernet(**TINY, **kw).init(_key(), x, w, train=False)


def test_supernet_one_hot_equals_the_discrete_cells():
    x = jax.random.normal(_key(1), (2, 8, 8, 3))
    g = NO_POOL
    w = D.one_hot(g)
    sup = D.DartsSupernet(**TINY)
    variables = _supernet_vars(x, w)
    y_sup, _ = sup.apply(variables, x, w, train=True, mutable=["batch_stats"])

    # (1) the supernet restricted to the chosen ops (same parameters) gives the same logits
    fixed = D.DartsSupernet(**TINY, fixed=D.genotype_to_ops(g))
    fshape = jax.eval_shape(lambda k: fixed.init(k, x, None, train=False), _key())
    flat_sup = flax.traverse_util.flatten_dict(variables["params"])
    flat_fix = {k: flat_sup[k] for k in flax.traverse_util.flatten_dict(fshape["params"])}
    params_fix = flax.traverse_util.unflatten_dict(flat_fix)
    y_fix, _ = fixed.apply({"params": params_fix}, x, None, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y_sup, y_fix, rtol=1e-6, atol=1e-6)

    # (2) NetworkCIFAR, a separately written discrete network, with the same weights (its affine
    # BNs are the identity at init; no pools in this genotype) gives the same logits too
    net = D.NetworkCIFAR(g, **TINY, auxiliary=False)
    nshape = jax.eval_shape(lambda k: net.init(k, x, train=False), _key())["params"]
    flat_net = {}
    for k, v in flax.traverse_util.flatten_dict(nshape).items():
        if k[0].startswith("cell_") and k[1].startswith("node"):
            node, slot, op = re.match(r"node(\d)_(\d)_(\w+)", k[1]).groups()
            cell = int(k[0].split("_")[1])
            edges = g.reduce if cell in (1, 2) else g.normal
            j = edges[2 * (int(node) - 2) + int(slot)][1]
            src = (k[0], f"edge_{j}_{node}", op) + k[2:]
        else:
            src = k
        if src in flat_sup:
            assert flat_sup[src].shape == v.shape, (k, src)
            flat_net[k] = flat_sup[src]
        else:  # BN scale / bias of the affine BNs: identity at init
            assert k[-1] in ("scale", "bias") and "BatchNorm" in "/".join(k), k
            flat_net[k] = jnp.ones(v.shape) if k[-1] == "scale" else jnp.zeros(v.shape)
    (y_net, aux), _ = net.apply({"params": flax.traverse_util.unflatten_dict(flat_net)}, x, train=True,
                                mutable=["batch_stats"])
    assert aux is None
    np.testing.assert_allclose(y_sup, y_net, rtol=1e-5, atol=1e-5)


def test_supernet_mixes_ops_by_the_input_weights():
    x = jax.random.normal(_key(1), (2, 8, 8, 3))
    w = D.one_hot(D.DARTS_V2)
    sup = D.DartsSupernet(**TINY)
    variables = _supernet_vars(x, w)
    a = jax.nn.softmax(jax.random.normal(_key(2), (2, 14, 8)), axis=-1)
    f = jax.jit(lambda ww: sup.apply(variables, x, ww, train=True, mutable=["batch_stats"])[0])
    y_hot, y_soft = f(jnp.stack(w)), f(a)
    assert y_soft.shape == (2, 10) and np.all(np.isfinite(y_soft))
    assert not np.allclose(y_hot, y_soft)
    # a pair, a dict and a [2, 14, 8] array are the same input
    y_dict = sup.apply(variables, x, {"normal": a[0], "reduce": a[1]}, train=True, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(y_soft, y_dict, rtol=1e-5, atol=1e-5)
    for bad, match in (((a[0], a[1][:, :7]), "must have shape"), (a[0], "got shape"),
                       ({"normal": a[0]}, "needs keys"), ((a[0].astype(jnp.int32), a[1]), "floating")):
        with pytest.raises(D.GenotypeError, match=match):
            sup.apply(variables, x, bad, train=False)
    with pytest.raises(D.GenotypeError, match="needs arch_weights"):
        sup.apply(variables, x, None, train=False)


@pytest.mark.parametrize("impl", ["loop-safe", "xla-dense", "xla-shift", "xla-taps"])
def test_conv_impls_match_xla(x64, impl):
    """Every conv_impl computes DARTS' ops as ``xla`` does: the depthwise convolutions and the
    supernet on soft weights (all 8 ops, pools included); for the CPU defaults ``xla-dense``
    (search) and ``xla-taps`` (training) also its gradients in theta and A (float64: many
    weight gradients are ~0 by BatchNorm's scale invariance, and float32 noise would dominate
    them)."""
    x = jax.random.normal(_key(3), (2, 12, 12, 3))
    for kernel, stride, dilation, pad in ((3, 1, 1, 1), (5, 2, 1, 2), (3, 2, 2, 2), (5, 1, 2, 4)):
        ref = D.DepthwiseConv(kernel, stride, dilation, pad)
        v = ref.init(_key(), x)
        other = D.DepthwiseConv(kernel, stride, dilation, pad, D.Cfg(conv_impl=impl))
        np.testing.assert_allclose(ref.apply(v, x), other.apply(v, x), rtol=1e-5, atol=1e-5)
    xs = jax.random.normal(_key(1), (2, 8, 8, 3), jnp.float64)
    w = jax.nn.softmax(jax.random.normal(_key(2), (2, 14, 8), jnp.float64), axis=-1)
    one_cell = dict(TINY, layers=1)  # one reduction cell: stride-2 and stride-1 edges, every op
    variables = D.DartsSupernet(**one_cell, dtype=jnp.float64).init(_key(), xs, w, train=False)

    def loss(impl_, params, w_):
        out, _ = D.DartsSupernet(**one_cell, conv_impl=impl_, dtype=jnp.float64).apply(
            {**variables, "params": params}, xs, w_, train=True, mutable=["batch_stats"])
        return jnp.sum(out * jnp.arange(10.0))

    if impl not in ("xla-dense", "xla-taps"):  # the CPU defaults: their gradients too; the others' outputs
        np.testing.assert_allclose(loss("xla", variables["params"], w), loss(impl, variables["params"], w),
                                   rtol=1e-12)
        return
    (l0, g0), (l1, g1) = (jax.value_and_grad(functools.partial(loss, i), argnums=(0, 1))(variables["params"], w)
                          for i in ("xla", impl))
    np.testing.assert_allclose(l0, l1, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("wgrad", ["taps", "dense"])  # the kernel's gradient: its two forms
def test_taps_depthwise_conv_and_its_derivatives(x64, monkeypatch, wgrad):
    """``xla-taps`` (:mod:`nasi_jax.spaces.darts.taps`): the depthwise convolution and its
    hand-written derivatives equal XLA's grouped convolution's (float64): values, the VJP in
    ``x`` and ``w`` (reverse form), the JVP and the reverse pass over the JVP (forward form),
    at every stride, dilation and padding DARTS uses; each form refuses the other mode."""
    from nasi_jax.spaces.darts import taps
    if wgrad == "dense":
        monkeypatch.setattr(taps, "TAPS_WGRAD_MAX", 0)
    channels = 3
    x = jax.random.normal(_key(3), (2, 9, 10, channels), jnp.float64)
    for k, s, d, p in ((3, 1, 1, 1), (5, 2, 1, 2), (3, 2, 2, 2), (5, 1, 2, 4), (3, 2, 1, 0)):
        w = jax.random.normal(_key(k + s + d), (k, k, 1, channels), jnp.float64)
        ref = lambda x_, w_: jax.lax.conv_general_dilated(  # noqa: E731
            x_, w_, (s, s), ((p, p), (p, p)), rhs_dilation=(d, d), dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels)
        rev = lambda x_, w_: taps.depthwise_conv(x_, w_, k, s, d, p)  # noqa: E731
        fwd = lambda x_, w_: taps.depthwise_conv_jvp(x_, w_, k, s, d, p)  # noqa: E731
        y = ref(x, w)
        np.testing.assert_allclose(rev(x, w), y, rtol=1e-12, atol=1e-12)
        ct = jax.random.normal(_key(9), y.shape, jnp.float64)
        for a, b in zip(jax.vjp(ref, x, w)[1](ct), jax.vjp(rev, x, w)[1](ct)):
            np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-11)
        dx, dw = jax.random.normal(_key(10), x.shape, jnp.float64), jax.random.normal(_key(11), w.shape, jnp.float64)
        for a, b in zip(jax.jvp(ref, (x, w), (dx, dw)), jax.jvp(fwd, (x, w), (dx, dw))):
            np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-11)

        def second(f):  # reverse over forward, in (x, dx, w): the staged step's hbwd program
            h = lambda x_, dx_, w_: jnp.sum(jnp.sin(jax.jvp(f, (x_, w_), (dx_, dw))[1]) * ct)  # noqa: E731
            return jax.grad(h, argnums=(0, 1, 2))(x, dx, w)
        for a, b in zip(second(ref), second(fwd)):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(rev, (x, w), (x, w))
    with pytest.raises(NotImplementedError, match="Transpose rule"):
        jax.grad(lambda x_: jnp.sum(fwd(x_, w)))(x)


@pytest.mark.parametrize("stride", [1, 2])
def test_separable_max_pool_equals_reduce_window(stride):
    x = jax.random.normal(_key(5), (2, 9, 8, 3))
    ref = lambda x_: D.ops.max_pool_3x3(x_, stride, "xla")
    sep = lambda x_: D.ops.max_pool_3x3(x_, stride, "xla-dense")
    np.testing.assert_array_equal(ref(x), sep(x))  # the max is exact
    y, vjp_ref = jax.vjp(ref, x)
    ct = jax.random.normal(_key(6), y.shape)
    # no ties in random inputs: the same element of each window gets the cotangent
    np.testing.assert_allclose(vjp_ref(ct)[0], jax.vjp(sep, x)[1](ct)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_derivatives_are_jnp_maximums_bit_for_bit(stride):
    """The written-out derivative of the separable max pool (``ops._max3``) gives the same
    floats as jax's own rule for two nested ``jnp.maximum`` (the form it replaced), ties
    included, in every program of the staged step: value, VJP, JVP and the VJP of the JVP."""
    # the same pooling through jax's own jnp.maximum derivative (the undecorated maxima)
    plain = lambda x_: D.ops._separable_max_pool(x_, stride, D.ops._max3.fun)
    ours = lambda x_: D.ops.max_pool_3x3(x_, stride, "xla-taps")
    assert "custom_jvp_call" in str(jax.make_jaxpr(ours)(jnp.ones((1, 4, 4, 1))))  # the written-out rule runs
    # small integers: many ties inside the windows, where the two rules could part
    x = jnp.round(2 * jax.random.normal(_key(7), (2, 9, 8, 3)))
    xd = jax.random.normal(_key(8), x.shape)
    y = plain(x)
    g, gd = jax.random.normal(_key(9), y.shape), jax.random.normal(_key(10), y.shape)
    # each program compiled whole, as the staged step compiles it (fusion included)
    outs = [(jax.jit(f)(x), jax.jit(lambda x_, g_: jax.vjp(f, x_)[1](g_))(x, g),
             jax.jit(lambda x_, xd_: jax.jvp(f, (x_,), (xd_,)))(x, xd),
             jax.jit(lambda x_, xd_, g_, gd_: jax.vjp(lambda a, b: jax.jvp(f, (a,), (b,)), x_, xd_)[1]((g_, gd_)))(
                 x, xd, g, gd)) for f in (plain, ours)]
    first_wins = jax.vjp(lambda x_: D.ops.max_pool_3x3(x_, stride, "xla"), x)[1](g)[0]
    assert not np.array_equal(outs[0][1][0], first_wins)  # there are ties, and they are split
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
        np.testing.assert_array_equal(a, b)


def test_avg_pool_ignores_padding():
    x = jax.random.normal(_key(4), (1, 6, 6, 2))
    xn = np.asarray(x)
    for s in (1, 2):
        got = np.asarray(D.ops.avg_pool_3x3(x, s))
        for r in range(got.shape[1]):
            for c in range(got.shape[2]):
                win = xn[0, max(0, s * r - 1): s * r + 2, max(0, s * c - 1): s * c + 2]
                np.testing.assert_allclose(got[0, r, c], win.mean((0, 1)), rtol=1e-5)


# --------------------------------------------------------------------------- evaluation network

@pytest.fixture(scope="module")
def tiny_net():
    net = D.NetworkCIFAR(D.DARTS_V2, **TINY, auxiliary=True, drop_path_prob=0.5)
    x = jax.random.normal(_key(5), (2, 32, 32, 3))  # 32x32: the auxiliary head needs an 8x8 map
    variables = net.init({"params": _key(), "dropout": _key(1)}, x, train=False)
    return net, x, variables


def test_network_cifar_train_and_eval(tiny_net):
    net, x, variables = tiny_net
    assert "auxiliary_head" in variables["params"]
    (logits, aux), state = net.apply(variables, x, train=True, rngs={"dropout": _key(2)},
                                     mutable=["batch_stats"])
    assert logits.shape == aux.shape == (2, 10) and np.all(np.isfinite(logits)) and np.all(np.isfinite(aux))
    assert "batch_stats" in state
    logits_eval, aux_eval = net.apply(variables, x, train=False)
    assert logits_eval.shape == (2, 10) and aux_eval is None
    no_aux = D.NetworkCIFAR(D.DARTS_V2, **TINY, auxiliary=False)
    (_, aux2), _ = no_aux.apply({"params": {k: v for k, v in variables["params"].items() if k != "auxiliary_head"},
                                 "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"])
    assert aux2 is None


def test_drop_path_only_in_train_mode(tiny_net):
    net, x, variables = tiny_net

    def train(key, p=None):
        return net.apply(variables, x, train=True, drop_path_prob=p, rngs={"dropout": key},
                         mutable=["batch_stats"])[0][0]

    a, b = train(_key(2)), train(_key(3))
    assert not np.allclose(a, b)                       # different masks
    np.testing.assert_array_equal(a, train(_key(2)))   # same key, same mask
    off = net.apply(variables, x, train=True, drop_path_prob=0.0, mutable=["batch_stats"])[0][0]
    assert not np.allclose(a, off)
    np.testing.assert_allclose(train(_key(2), jnp.float32(0.0)), off, rtol=1e-5, atol=1e-5)  # traced p=0
    e1 = net.apply(variables, x, train=False, rngs={"dropout": _key(2)})[0]
    e2 = net.apply(variables, x, train=False, rngs={"dropout": _key(3)})[0]
    np.testing.assert_array_equal(e1, e2)
    with pytest.raises(Exception, match="dropout"):
        net.apply(variables, x, train=True, mutable=["batch_stats"])  # p=0.5 needs an rng


# --------------------------------------------------------------------------- CLI and docs

def test_cli_info_darts(capsys):
    assert cli.main(["info", "--space", "darts", "--genotype", V2_TEXT]) == 0
    out = capsys.readouterr().out
    assert "3349342 (3.349342 M)" in out and "C=36, 20 cells" in out and V2_TEXT in out
    assert cli.main(["info", "--space", "darts", "--genotype", "DARTS_V2", "--channels", "2",
                     "--layers", "3"]) == 0
    assert f"{D.count_params(D.DARTS_V2, **TINY)} " in capsys.readouterr().out


def test_flops_follow_the_ops_and_the_width(capsys):
    small = dict(layers=3, image_size=8)
    pools = D.Genotype([("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5],
                       [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5])
    v2 = D.count_flops(D.DARTS_V2, channels=2, **small)
    assert D.count_flops(pools, channels=2, **small) < v2
    # pointwise convolutions grow as C^2, the rest as C: doubling C more than doubles the count
    assert 2 * v2 < D.count_flops(D.DARTS_V2, channels=4, **small) < 4 * v2
    assert cli.main(["info", "--space", "darts", "--genotype", "DARTS_V2", "--channels", "2",
                     "--layers", "3", "--flops"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("FLOPs"))
    assert f"{D.count_flops(D.DARTS_V2, channels=2, layers=3) / 1e6:.1f} M" in line


def test_cli_info_takes_a_genotype_file(tmp_path, capsys):
    f = tmp_path / "g.txt"
    f.write_text(V2_TEXT + "\n")
    assert cli.main(["info", "--space", "darts", "--genotype", str(f)]) == 0
    assert "3349342 (3.349342 M)" in capsys.readouterr().out


def _err(capsys, argv):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli.main(argv))
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["info", "--space", "darts"], "--space darts needs --genotype"),
    (["info", "--space", "darts", "--genotype", "Genotype(normal=[("], "malformed genotype"),
    (["info", "--space", "darts", "--genotype", V2_TEXT.replace("dil_conv_3x3", "conv_7x7")],
     "unknown op 'conv_7x7'"),
    (["info", "--space", "darts", "--genotype", V2_TEXT.replace("'skip_connect', 2), ('max", "'none', 2), ('max")],
     "op 'none'"),
    (["info", "--space", "darts", "--genotype", "DARTS_V2", "--layers", "0"], "--layers must be > 0"),
    (["info", "--space", "nb201"], "needs --arch"),
    (["info", "--arch", "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--flops"],
     "--flops is for --space darts"),
])
def test_cli_info_darts_errors(capsys, argv, match):
    assert match in _err(capsys, argv)


def test_docstring_examples():
    result = doctest.testmod(D, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
