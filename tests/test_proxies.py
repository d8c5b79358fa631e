"""Training-free peer scores (nasi_jax/scoring/proxies.py) in the one-compilation harness: each equals
its direct computation on the discrete network, hand checks of the maths, the extreme cells
at full size, signs and papers, params/FLOPs, and clear errors."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import cli, ntk, proxies, score, search
from nasi_jax.spaces import nb201

TINY = score.ScoreConfig(batch_size=3, channels=2, cells_per_stage=1, image_size=8)
# none edges but connected | every op type | no path from input to output (constant output)
CELLS = [(3, 0, 3, 1, 0, 1), (2, 4, 1, 3, 2, 0), (0, 0, 0, 0, 0, 0)]
NETWORK_PROXIES = ["nasi_objective", "grad_norm", "snip", "grasp", "synflow", "jacob_cov", "naswot",
                   "te_nas_cond"]


def _discrete(ops, cfg, inputs, seed):
    """The discrete network initialised with the harness's key; BN statistics in cfg.dtype
    (as the harness casts them), BatchNorm train/eval appliers."""
    dt = jnp.dtype(cfg.dtype)
    net = nb201.NB201Network(cfg.channels, cfg.cells_per_stage, cfg.num_classes, fixed=ops, dtype=dt)
    init_key, _ = jax.random.split(jax.random.PRNGKey(seed))
    v = net.init(init_key, inputs.x[:1], None, train=False)
    bs = jax.tree_util.tree_map(lambda a: a.astype(dt), v["batch_stats"])
    f = search.make_apply(net, bs, cfg.bn_mode)
    return net, v["params"], bs, (lambda p, x: f(p, x, None))


def _direct(proxy, ops, cfg, inputs, seed):
    net, p, bs, f = _discrete(ops, cfg, inputs, seed)
    x, y = inputs.x, inputs.y
    if proxy == "nasi_objective":
        return proxies.nasi_objective(f, p, x, y, mu=cfg.mu, nu=cfg.nu)
    if proxy in ("grad_norm", "snip", "grasp"):
        return getattr(proxies, proxy)(f, p, x, y)
    if proxy == "synflow":
        f_eval = lambda q, x_: net.apply({"params": q, "batch_stats": bs}, x_, None, train=False)
        return proxies.synflow(f_eval, p, (1,) + x.shape[1:])
    if proxy in ("jacob_cov", "te_nas_cond"):
        return getattr(proxies, proxy)(f, p, x)
    if proxy == "naswot":
        _, st = net.apply({"params": p, "batch_stats": bs}, x, None, train=True,
                          mutable=["batch_stats", nb201.RELU_CODES])
        return proxies.naswot(sum(jax.tree_util.tree_leaves(st[nb201.RELU_CODES])))
    raise AssertionError(proxy)


@pytest.mark.parametrize("proxy", NETWORK_PROXIES)
def test_harness_equals_discrete_network(x64, proxy):
    """The one compiled function (int ops, lax.switch, supernet weights) gives each cell the
    score of its discrete network initialised with the same key, on the same batch."""
    cfg = dataclasses.replace(TINY, dtype="float64", proxy=proxy, nu=5.0)
    inputs = score.init_scoring(cfg, seed=3)
    fn = jax.jit(score.make_score_fn(cfg))
    for ops in CELLS:
        got = float(fn(*inputs, jnp.asarray(ops, jnp.int32)))
        ref = float(_direct(proxy, ops, cfg, inputs, 3))
        assert np.isfinite(got)
        np.testing.assert_allclose(got, ref, rtol=1e-8, err_msg=f"{proxy} {ops}")
    # CELLS[-1] (the last, got) has no path from input to output: the documented finite values
    B, k = cfg.batch_size, 1e-5
    degenerate = {"grad_norm": 0.0, "snip": 0.0, "grasp": 0.0, "naswot": -1.0,
                  "synflow": np.log(np.finfo(np.float64).tiny), "te_nas_cond": 1 / np.finfo(np.float64).eps,
                  "jacob_cov": -((B - 1) * (np.log(k) + 1 / k) + np.log(B + k) + 1 / (B + k))}
    if proxy in degenerate:
        np.testing.assert_allclose(got, degenerate[proxy], rtol=1e-12)


def test_nasi_objective_penalises_above_nu(x64):
    cfg = dataclasses.replace(TINY, dtype="float64", proxy="nasi", mu=3.0, nu=5.0)
    s = score.score_cells(cfg, CELLS, seed=1, progress=False)
    r = score.score_cells(dataclasses.replace(cfg, proxy="nasi_objective"), CELLS, seed=1, progress=False)
    np.testing.assert_allclose(r, s - 3.0 * np.maximum(0.0, s - 5.0), rtol=1e-12)
    assert (s > 5.0).any() and (s < 5.0).any()  # both branches are exercised


# --------------------------------------------------------------------------- hand checks

def _tiny_discrete(ops=(3, 0, 3, 1, 0, 1), seed=0):
    cfg = dataclasses.replace(TINY, dtype="float64")
    inputs = score.init_scoring(cfg, seed)
    net, p, bs, f = _discrete(ops, cfg, inputs, seed)
    return net, p, bs, f, inputs.x, inputs.y


def _kernel_leaves(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat if k[-1].key == "kernel"}


def test_grad_norm_and_snip_by_hand(x64):
    net, p, bs, f, x, y = _tiny_discrete()
    g = jax.grad(lambda q: ntk.cross_entropy(f(q, x), y))(p)
    gk, wk = _kernel_leaves(g), _kernel_leaves(p)
    assert len(gk) == 14  # stem, 2 nor_convs x 3 cells, 3 convs x 2 reductions, classifier
    ref_gn = sum(np.sqrt(np.sum(v ** 2)) for v in gk.values())
    ref_snip = sum(np.sum(np.abs(wk[n] * gk[n])) for n in gk)
    np.testing.assert_allclose(float(proxies.grad_norm(f, p, x, y)), ref_gn, rtol=1e-12)
    np.testing.assert_allclose(float(proxies.snip(f, p, x, y)), ref_snip, rtol=1e-12)
    # BatchNorm and bias gradients are nonzero but left out
    everything = sum(np.sqrt(np.sum(np.asarray(v) ** 2)) for v in jax.tree_util.tree_leaves(g))
    assert everything > ref_gn * (1 + 1e-6)


def test_grasp_hessian_gradient_by_finite_differences(x64):
    net, p, bs, f, x, y = _tiny_discrete()
    loss = lambda q: ntk.cross_entropy(f(q, x), y)
    g = jax.grad(loss)(p)
    mask = proxies.weight_mask(p)
    v = jax.tree_util.tree_map(lambda a, m: a if m else jnp.zeros_like(a), g, mask)
    h = 1e-6  # the ReLUs' kinks: larger steps cross them on this tiny network (1e-4 is off by 14x)
    gp = jax.grad(loss)(jax.tree_util.tree_map(lambda a, b: a + h * b, p, v))
    gm = jax.grad(loss)(jax.tree_util.tree_map(lambda a, b: a - h * b, p, v))
    hv = jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), gp, gm)
    wk, hk = _kernel_leaves(p), _kernel_leaves(hv)
    ref = -sum(np.sum(wk[n] * hk[n]) for n in wk)
    got = float(proxies.grasp(f, p, x, y))
    assert abs(ref) > 1e-3
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_jacob_cov_by_numpy(x64):
    net, p, bs, f, x, y = _tiny_discrete()
    full = np.asarray(jax.jacrev(lambda z: f(p, z))(x))  # [B, K, B, H, W, 3]
    J = full.sum(axis=(0, 1)).reshape(x.shape[0], -1)   # d(sum of all logits)/dx, one row per example
    lam = np.linalg.eigvalsh(np.corrcoef(J))
    ref = -np.sum(np.log(lam + 1e-5) + 1 / (lam + 1e-5))
    np.testing.assert_allclose(float(proxies.jacob_cov(f, p, x)), ref, rtol=1e-9)


def test_te_nas_cond_by_jacrev(x64):
    net, p, bs, f, x, y = _tiny_discrete()
    J = jax.jacrev(lambda q: f(q, x).sum(axis=1))(p)   # leaves [B, *shape]
    rows = np.concatenate([v.reshape(x.shape[0], -1) for v in _kernel_leaves(J).values()], axis=1)
    ref = np.linalg.cond(rows @ rows.T)
    np.testing.assert_allclose(float(proxies.te_nas_cond(f, p, x)), ref, rtol=1e-8)
    assert ref > 1


def test_synflow_by_direct_computation(x64):
    """A cell without skips (a conv chain): log of sum |W| dR/d|W| on an all-ones input,
    computed without any rescaling."""
    net, p, bs, f, x, y = _tiny_discrete(ops=(3, 0, 2, 0, 0, 3))
    ap = jax.tree_util.tree_map(jnp.abs, p)
    ones = jnp.ones((1,) + x.shape[1:])
    R = lambda q: net.apply({"params": q, "batch_stats": bs}, ones, None, train=False).sum()
    g = jax.grad(R)(ap)
    wk, gk = _kernel_leaves(ap), _kernel_leaves(g)
    ref = np.log(sum(np.sum(wk[n] * gk[n]) for n in wk))
    f_eval = lambda q, x_: net.apply({"params": q, "batch_stats": bs}, x_, None, train=False)
    np.testing.assert_allclose(float(proxies.synflow(f_eval, p, ones.shape)), ref, rtol=1e-12)


def test_synflow_finite_at_full_size_float32():
    """NB201's full size (C = 16, 5 cells per stage, 32x32) in float32: the largest cell (all
    nor_conv_3x3, synflow ~7e49, beyond float32) is finite, and the cell with no path gives
    the documented floor. On the discrete networks (the harness equals them: the test above;
    the full-size switch network costs 45 s more to compile)."""
    cfg = score.ScoreConfig(proxy="synflow", batch_size=1)
    ones = jnp.ones((1, cfg.image_size, cfg.image_size, 3))
    got = []
    for ops in [(3,) * 6, (0,) * 6]:
        net = nb201.NB201Network(cfg.channels, cfg.cells_per_stage, cfg.num_classes, fixed=ops)
        v = net.init(jax.random.PRNGKey(0), ones, None, train=False)
        f_eval = lambda q, x_: net.apply({"params": q, "batch_stats": v["batch_stats"]}, x_, None, train=False)
        got.append(float(jax.jit(lambda q: proxies.synflow(f_eval, q, ones.shape))(v["params"])))
    assert np.isfinite(got).all()
    assert 100 < got[0] < 130  # log(~7e49) = 114.8 with PRNGKey(0)
    assert got[1] == np.float64(np.log(np.finfo(np.float32).tiny))


def _code_kernel(z):
    c = (np.asarray(z) > 0).reshape(z.shape[0], -1).astype(np.float64)
    return c @ c.T + (1 - c) @ (1 - c).T


def _hand_relu_kernel(net, p, bs, x, ops):
    """NASWOT's K_H from the discrete network's intermediates: the input of every ReLU."""
    _, st = net.apply({"params": p, "batch_stats": bs}, x, None, train=True, capture_intermediates=True,
                      mutable=["intermediates", "batch_stats"])
    it = st["intermediates"]
    out = lambda d: d["__call__"][0]
    K = np.zeros((x.shape[0], x.shape[0]))
    prev = out(it["BatchNorm_0"])  # the stem's output
    for stage in range(3):
        if stage > 0:
            r = it[f"reduce_{stage}"]
            K += _code_kernel(prev) + _code_kernel(out(r["conv_a"]))  # conv_a's and conv_b's ReLUs
            prev = out(r)
        for n in range(net.cells_per_stage):
            cell = it[f"cell_{stage}_{n}"]
            nodes, e = [prev], 0
            for i, sources in enumerate(((0,), (0, 1), (0, 1, 2)), start=1):
                total = jnp.zeros_like(prev)
                for j in sources:
                    if nb201.OPS[ops[e]] in ("nor_conv_1x1", "nor_conv_3x3"):
                        K += _code_kernel(nodes[j])
                    y = out(cell[f"edge_{j}_{i}"])
                    total = total if y is None else total + y
                    e += 1
                nodes.append(total)
            prev = out(cell)
            np.testing.assert_allclose(nodes[3], prev)  # the reconstruction is the cell
    return K + _code_kernel(out(it["BatchNorm_1"]))  # the final ReLU


@pytest.mark.parametrize("ops", [(3, 0, 3, 1, 0, 1), (2, 0, 0, 3, 2, 4)])
def test_naswot_kernel_by_hand(x64, ops):
    cfg = dataclasses.replace(TINY, dtype="float64", proxy="naswot")
    inputs = score.init_scoring(cfg, 5)
    net, p, bs, _ = _discrete(ops, cfg, inputs, 5)
    K = _hand_relu_kernel(net, p, bs, inputs.x, ops)
    n_conv = sum(nb201.OPS[o].startswith("nor_conv") for o in ops)
    size = [8 * 8 * 2, 4 * 4 * 4, 2 * 2 * 8]  # H*W*C of the three stages
    units = (sum(n_conv * cfg.cells_per_stage * n for n in size)  # the cells' nor_conv ReLUs
             + sum(size[s - 1] + size[s] for s in (1, 2))            # conv_a, conv_b of each reduction
             + size[2])                                             # the final ReLU
    assert (np.diag(K) == units).all()  # each example agrees with itself on every unit
    # the sown kernel of the discrete network, and the harness's score (one-hot supernet path)
    _, st = net.apply({"params": p, "batch_stats": bs}, inputs.x, None, train=True,
                      mutable=["batch_stats", nb201.RELU_CODES])
    np.testing.assert_array_equal(sum(jax.tree_util.tree_leaves(st[nb201.RELU_CODES])), K)
    got = score.score_cells(cfg, [ops], seed=5, progress=False)[0]
    np.testing.assert_allclose(got, np.linalg.slogdet(K)[1], rtol=1e-10)


@pytest.mark.parametrize("ops", [(2, 4, 1, 3, 2, 0), (0, 0, 0, 0, 0, 0)])
def test_relu_codes_and_probes_through_the_switch(ops):
    """Integer ops (each edge's lax.switch branch returns what it would sow) sow the codes
    and layer outputs of the one-hot float path, where unused ops weigh 0."""
    net = nb201.NB201Network(2, 1)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 3))
    v = net.init(jax.random.PRNGKey(0), x, nb201.one_hot((3,) * 6), train=False)
    cols = ["batch_stats", nb201.RELU_CODES, nb201.PROBES]
    _, a = net.apply(v, x, jnp.asarray(ops), train=True, mutable=cols)
    _, b = net.apply(v, x, nb201.one_hot(ops), train=True, mutable=cols)
    np.testing.assert_allclose(sum(jax.tree_util.tree_leaves(a[nb201.RELU_CODES])),
                               sum(jax.tree_util.tree_leaves(b[nb201.RELU_CODES])), rtol=1e-6)
    for name, fn in (("meco", proxies.meco), ("swap", proxies.swap)):
        np.testing.assert_allclose(fn(proxies.collect_probes(a[nb201.PROBES])),
                                   fn(proxies.collect_probes(b[nb201.PROBES])), rtol=1e-5, err_msg=name)
    # without the collections nothing is sown
    _, st = net.apply(v, x, jnp.asarray(ops), train=True, mutable=["batch_stats"])
    assert set(st) == {"batch_stats"}


# --------------------------------------------------------------------------- registry

def test_signs_and_papers():
    assert list(score.PROXIES) == [n for n, _, _ in proxies.describe()]
    assert {"nasi", "ntk_trace", "nasi_objective", "grad_norm", "snip", "grasp", "synflow",
            "jacob_cov", "naswot", "te_nas_cond", "zico", "meco", "swap", "az_expressivity",
            "az_progressivity", "az_trainability", "params", "flops"} == set(score.PROXIES)
    for name, s, desc in proxies.describe():
        assert s in (1, -1) and proxies.sign(name) == s
        assert re.search(r"\b(19|20)\d\d\b", desc) and re.search(r"et al\.|&", desc), desc
        fn_doc = getattr(proxies, name).__doc__
        assert f"Sign {'+1' if s > 0 else '-1'}" in fn_doc, name
    assert proxies.sign("te_nas_cond") == -1
    assert [n for n, s, _ in proxies.describe() if s < 0] == ["te_nas_cond"]
    with pytest.raises(KeyError, match="unknown proxy"):
        proxies.sign("nope")


def test_registry_is_listed_in_docs_and_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    for name in score.PROXIES:
        assert f"``{name}``" in score.__doc__, name
        assert f"``{name}``" in proxies.__doc__, name
        assert re.search(rf"\b{name} \([+-]\)", flat), name


@pytest.mark.parametrize("kind", ["params", "flops"])
def test_params_and_flops_equal_counts(kind):
    count = nb201.count_params if kind == "params" else nb201.count_flops
    cells = CELLS + [(3,) * 6, (1, 2, 3, 4, 0, 1)]
    s = score.score_cells(dataclasses.replace(TINY, proxy=kind), cells, seed=0, progress=False)
    assert s.tolist() == [count(c, channels=2, cells_per_stage=1, image_size=8) for c in cells]
    fn = lambda ops: nb201.count_jit(kind, ops)
    for c in cells:  # full size, jitted in the op indices
        assert int(jax.jit(fn)(jnp.asarray(c))) == count(c)


def test_new_proxies_compile_once():
    for name in ("synflow", "naswot"):
        score.clear_cache()
        before = score.TRACE_COUNT["score"]
        s = score.score_cells(dataclasses.replace(TINY, proxy=name), CELLS + [(3,) * 6], seed=0,
                              progress=False)
        assert score.TRACE_COUNT["score"] - before == 1 and np.isfinite(s).all()
        assert len(set(s.tolist())) == 4


def test_bad_proxy_and_penalty():
    with pytest.raises(score.ScoreError, match=r"unknown proxy 'nope'; choose one of .*te_nas_cond"):
        dataclasses.replace(TINY, proxy="nope").validate()
    for kw in (dict(mu=-1.0), dict(mu=float("inf")), dict(mu=float("nan")), dict(nu=0.0),
               dict(nu=-3.0), dict(nu=float("inf")), dict(nu=True), dict(mu="2")):
        with pytest.raises(score.ScoreError, match=next(iter(kw))):
            dataclasses.replace(TINY, **kw).validate()
    dataclasses.replace(TINY, mu=0, nu=1).validate()  # integers and mu = 0 are fine


def test_cli_scores_a_new_proxy(tmp_path, capsys):
    out = tmp_path / "s.csv"
    flags = ["--batch-size", "2", "--channels", "2", "--cells-per-stage", "1", "--image-size", "8",
             "--no-progress"]
    assert cli.main(["score", "--proxy", "naswot", "--cells", "2", "--output", str(out), *flags]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "index,arch_str,naswot" and len(rows) == 3
    capsys.readouterr()
    assert cli.main(["score", "--proxy", "nasi_objective", "--mu", "-1", "--output",
                     str(tmp_path / "t.csv"), *flags]) == 2
    assert "mu must be" in capsys.readouterr().err
