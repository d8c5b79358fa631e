"""The 2023-2024 training-free scores (ZiCo, MeCo, SWAP, AZ-NAS's three network scores) in the
one-compilation harness: each equals its computation on the discrete network, and each
statistic equals a NumPy computation from that network's own gradients and feature maps
(float64, a tiny NB201 network); AZ-NAS's block VJPs are checked against forward mode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import cli, ntk, proxies, score, search
from nasi_jax.spaces import nb201

TINY = score.ScoreConfig(batch_size=4, channels=2, cells_per_stage=1, image_size=8, dtype="float64")
# connected with none edges | every op type | no path from input to output | the identity cell
CELLS = [(3, 0, 3, 1, 0, 1), (2, 4, 1, 3, 2, 0), (0, 0, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0)]
RECENT = ["zico", "meco", "swap", "az_expressivity", "az_progressivity", "az_trainability"]


def _cfg(proxy, **kw):
    init = "kaiming" if proxy.startswith("az_") else "pytorch"
    return dataclasses.replace(TINY, proxy=proxy, init_scheme=init, **kw)


def _discrete(ops, cfg, seed):
    """The discrete network, initialised with the harness's key, and its appliers."""
    dt = jnp.dtype(cfg.dtype)
    inputs = score.init_scoring(cfg, seed)
    net = nb201.NB201Network(cfg.channels, cfg.cells_per_stage, cfg.num_classes, fixed=ops, dtype=dt,
                             init_scheme=cfg.init_scheme)
    init_key, _ = jax.random.split(jax.random.PRNGKey(seed))
    v = net.init(init_key, inputs.x[:1], None, train=False)
    bs = jax.tree_util.tree_map(lambda a: a.astype(dt), v["batch_stats"])
    f = search.make_apply(net, bs, cfg.bn_mode)
    return net, v["params"], bs, (lambda p, x: f(p, x, None)), inputs


def _collect(net, p, bs, x, col, taps=None):
    v = {"params": p, "batch_stats": bs}
    if taps is not None:
        v[nb201.BLOCK_TAPS] = {f"in{i:03d}": t for i, t in enumerate(taps)}
    _, st = net.apply(v, x, None, train=True, mutable=["batch_stats", col])
    return st[col]


def _blocks(net, p, bs, x, taps=None):
    d = _collect(net, p, bs, x, nb201.BLOCKS, taps)
    return [d[k][0] for k in sorted(d)]


def _direct(proxy, ops, cfg, seed):
    net, p, bs, f, inp = _discrete(ops, cfg, seed)
    if proxy == "zico":
        return proxies.zico(f, p, inp.x, inp.y)
    if proxy in ("meco", "swap"):
        return getattr(proxies, proxy)(proxies.collect_probes(_collect(net, p, bs, inp.x, nb201.PROBES)))
    blocks = lambda q, x, taps=None: _blocks(net, q, bs, x, taps)
    if proxy == "az_trainability":
        return proxies.az_trainability(*proxies.block_vjps(
            proxies.Network(f, None, None, None, None, blocks, inp.key), p, inp.x))
    return getattr(proxies, proxy)(blocks(p, inp.x))


@pytest.mark.parametrize("proxy", RECENT)
def test_harness_equals_discrete_network(x64, proxy):
    """One compiled function (int ops through lax.switch for the blocks; the one-hot supernet
    path, unused ops weighted 0, for the layer probes) gives each cell its discrete
    network's score: the masking of unused ops is exact."""
    cfg = _cfg(proxy)
    score.clear_cache()
    before = score.TRACE_COUNT["score"]
    got = score.score_cells(cfg, CELLS, seed=3, progress=False)
    assert score.TRACE_COUNT["score"] - before == 1
    for ops, g in zip(CELLS, got):
        np.testing.assert_allclose(g, float(_direct(proxy, ops, cfg, 3)), rtol=1e-9, err_msg=f"{proxy} {ops}")
    floor = float(proxies.floor(jnp.float64))
    dead, ident = got[2], got[3]
    expected_dead = {"zico": 0.0, "az_expressivity": floor, "az_progressivity": floor}
    if proxy in expected_dead:
        assert dead == expected_dead[proxy]
    if proxy == "az_trainability":
        assert ident == floor and floor < dead < -1e4  # sigma = 0 in a dead block: -1/(0 + 1e-6)
    if proxy == "swap":
        assert dead < got[0]
    assert (np.asarray(got[:2]) > floor).all()


def test_zico_by_numpy(x64):
    net, p, bs, f, inp = _discrete(CELLS[1], _cfg("zico"), 0)
    x, y = inp.x, inp.y
    halves = [jax.grad(lambda q: ntk.cross_entropy(f(q, x[i:i + 2]), y[i:i + 2]))(p) for i in (0, 2)]
    ref, layers = 0.0, 0
    for path, _ in jax.tree_util.tree_flatten_with_path(p)[0]:
        if path[-1].key != "kernel":
            continue
        G = np.stack([np.ravel(_at(h, path)) for h in halves])
        sd = G.std(axis=0)
        S = np.sum(np.abs(G).mean(axis=0)[sd > 0] / sd[sd > 0])
        if S > 0:
            ref += np.log(S)
            layers += 1
    assert layers == 1 + 3 * 3 + 2 * 3 + 1  # stem, 3 conv ops x 3 cells, 2 reductions x 3, classifier
    np.testing.assert_allclose(float(proxies.zico(f, p, x, y)), ref, rtol=1e-10)
    with pytest.raises(ValueError, match="multiple of 2"):
        proxies.zico(f, p, x[:3], y[:3])


def _at(tree, path):
    for k in path:
        tree = tree[k.key]
    return tree


def _hand_layer_count(ops, cells=3):
    per_op = {"none": 0, "skip_connect": 1, "avg_pool_3x3": 1, "nor_conv_1x1": 3, "nor_conv_3x3": 3}
    cell = sum(per_op[nb201.OPS[o]] for o in ops) + 1           # the ops' outputs, the cell's
    return 2 + cells * cell + 2 * 9 + 2                          # stem, cells, reductions, head


@pytest.mark.parametrize("ops", CELLS[:2])
def test_meco_and_swap_by_numpy(x64, ops):
    net, p, bs, f, inp = _discrete(ops, _cfg("meco"), 1)
    probes = proxies.collect_probes(_collect(net, p, bs, inp.x, nb201.PROBES))
    maps = [(k, np.asarray(x)) for k, x, w in probes]
    assert all(float(w) == 1.0 for _, _, w in probes)
    assert len(maps) == _hand_layer_count(ops)
    n_relu = sum(k == "relu" for k, _ in maps)
    assert n_relu == 3 * sum(nb201.OPS[o].startswith("nor_conv") for o in ops) + 2 * 2 + 1
    # MeCo: sample 0, channels as variables, NaN (constant channel) -> 0, least eigenvalue
    ref = 0.0
    for _, x in maps:
        F = x[0].reshape(-1, x.shape[-1]).T
        with np.errstate(invalid="ignore", divide="ignore"):
            P = np.corrcoef(F)
        ref += np.linalg.eigvalsh(np.clip(np.nan_to_num(P, nan=0.0, posinf=0.0, neginf=0.0), -1, 1))[0]
    np.testing.assert_allclose(float(proxies.meco(probes)), ref, rtol=1e-9)
    # SWAP: every ReLU unit's sign pattern over the batch, unique over the whole network
    pats = np.concatenate([(x > 0).reshape(x.shape[0], -1).T for k, x in maps if k == "relu"])
    assert float(proxies.swap(probes)) == len(np.unique(pats, axis=0))


def test_swap_packs_more_than_32_samples():
    x = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(0), (40, 2, 2, 8)))
    x = x.at[35:, :, :, :4].set(0.0)     # patterns that differ only beyond the first word
    pats = np.asarray(x > 0).reshape(40, -1).T
    got = proxies.swap([("relu", x, jnp.ones(())), ("relu", x[:, :, :, ::-1], jnp.ones(())),
                        ("relu", jnp.ones_like(x), jnp.zeros(()))])
    assert float(got) == len(np.unique(pats, axis=0))
    assert float(proxies.swap([("relu", x, jnp.zeros(()))])) == 0.0  # no ReLU of the cell runs


def _entropy(f):
    X = np.asarray(f).reshape(-1, f.shape[-1])
    X = X - X.mean(axis=0)
    lam = np.clip(np.linalg.eigvalsh(X.T @ X / len(X)), 0, None)
    q = lam / lam.sum()
    return -np.sum(q * np.log(q + 1e-8))


def test_az_nas_by_numpy_and_forward_mode(x64):
    net, p, bs, f, inp = _discrete(CELLS[1], _cfg("az_trainability"), 2)
    feats = _blocks(net, p, bs, inp.x)
    assert [a.shape for a in feats] == ([(4, 8, 8, 2)] * 2 + [(4, 4, 4, 4)] * 2 + [(4, 2, 2, 8)] * 2)
    E = np.array([_entropy(a) for a in feats])
    np.testing.assert_allclose(float(proxies.az_expressivity(feats)), E.sum(), rtol=1e-10)
    np.testing.assert_allclose(float(proxies.az_progressivity(feats)), np.min(np.diff(E)), rtol=1e-10)
    blocks = lambda q, x, taps=None: _blocks(net, q, bs, x, taps)
    g_ins, g_outs = proxies.block_vjps(proxies.Network(f, None, None, None, None, blocks, inp.key), p, inp.x)
    assert all(set(np.unique(np.asarray(g)).tolist()) == {-1.0, 1.0} for g in g_outs)
    taps = [jnp.zeros_like(a) for a in feats[:-1]]
    rng = np.random.default_rng(0)
    sig = []
    for l in range(len(taps)):
        # <g_in, v> = <g_out, J v>, with J v from forward mode through block l+1 alone
        v = [jnp.zeros_like(t) for t in taps]
        v[l] = jnp.asarray(rng.normal(size=taps[l].shape))
        _, jv = jax.jvp(lambda t: blocks(p, inp.x, t)[1:], (taps,), (v,))
        assert all(float(jnp.abs(j).max()) == 0 for m, j in enumerate(jv) if m != l)  # isolated
        np.testing.assert_allclose(float(jnp.vdot(g_ins[l], v[l])), float(jnp.vdot(g_outs[l], jv[l])),
                                   rtol=1e-9)
        gi, go = np.asarray(g_ins[l]), np.asarray(g_outs[l])
        if gi.shape[1] != go.shape[1]:  # PixelUnshuffle by 2 (channel order is immaterial)
            B, H, W, C = gi.shape
            gi = gi.reshape(B, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, H // 2, W // 2, 4 * C)
        M = gi.reshape(-1, gi.shape[-1]).T @ go.reshape(-1, go.shape[-1]) / (go.size // go.shape[-1])
        s = np.linalg.svd(M, compute_uv=False)[0]
        sig.append(-s - 1 / (s + 1e-6) + 2)
    np.testing.assert_allclose(float(proxies.az_trainability(g_ins, g_outs)), np.mean(sig), rtol=1e-9)


def test_recent_proxies_registered_and_cli(tmp_path, capsys):
    for name in RECENT:
        assert proxies.sign(name) == 1
    out = tmp_path / "az.csv"
    flags = ["--batch-size", "2", "--channels", "2", "--cells-per-stage", "1", "--image-size", "8",
             "--no-progress", "--init", "kaiming"]
    assert cli.main(["score", "--proxy", "az_progressivity", "--cells", "3", "--output", str(out), *flags]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "index,arch_str,az_progressivity" and len(rows) == 4
    assert '"init_scheme": "kaiming"' in (tmp_path / "az.csv.meta.json").read_text()
    capsys.readouterr()
    assert cli.main(["score", "--proxy", "zico", "--batch-size", "3", "--output", str(tmp_path / "z.csv"),
                     *flags[2:]]) == 2
    assert "zico splits the batch into 2" in capsys.readouterr().err
    assert not (tmp_path / "z.csv").exists()


# --------------------------------------------------------------------------- aggregates

def test_rank_aggregate_by_hand():
    from scipy import stats
    from nasi_jax.scoring import ensemble
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 50).astype(float)          # many ties
    b = rng.normal(size=50)
    got = ensemble.rank_aggregate([a, b], [1, -1])
    ref = np.log(stats.rankdata(a) / 50) + np.log(stats.rankdata(-b) / 50)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert got.max() <= 0
    with pytest.raises(score.ScoreError, match="finite"):
        ensemble.rank_aggregate([np.array([1.0, np.nan])], [1])
    with pytest.raises(score.ScoreError, match="different numbers"):
        ensemble.rank_aggregate([a, b[:3]], [1, 1])


def test_cli_scores_an_aggregate(tmp_path, capsys):
    from nasi_jax.scoring import ensemble
    name = "test-pair"
    ensemble.ENSEMBLES[name] = ensemble.Ensemble(
        (ensemble.Component("flops"), ensemble.Component("az_expressivity", {"init_scheme": "kaiming"})),
        "a test aggregate", "a test")
    try:
        out = tmp_path / "e.csv"
        flags = ["--batch-size", "2", "--channels", "2", "--cells-per-stage", "1", "--image-size", "8",
                 "--no-progress", "--cells", "5"]
        assert cli.main(["score", "--proxy", name, "--output", str(out), *flags]) == 0
        rows = [r.split(",") for r in out.read_text().splitlines()]
        assert rows[0] == ["index", "arch_str", "ensemble", "flops", "az_expressivity"] and len(rows) == 6
        vals = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
        np.testing.assert_allclose(vals[:, 0], ensemble.rank_aggregate([vals[:, 1], vals[:, 2]], [1, 1]))
        # each component streamed to its own resumable CSV, with its own settings
        meta = (tmp_path / "e.az_expressivity.csv.meta.json").read_text()
        assert '"init_scheme": "kaiming"' in meta and (tmp_path / "e.flops.csv").exists()
    finally:
        del ensemble.ENSEMBLES[name]


def test_named_aggregates_are_valid():
    from nasi_jax.scoring import ensemble
    assert {"ensemble", "az-nas"} <= set(ensemble.ENSEMBLES)
    for name, ens in ensemble.ENSEMBLES.items():
        assert ens.description and ens.provenance and len(ens.components) >= 2
        for comp in ens.components:
            dataclasses.replace(score.ScoreConfig(), proxy=comp.proxy, **dict(comp.settings)).validate()
    # the default aggregate needs no data: every component reads Gaussian inputs or none
    assert all(c.settings.get("data") == "random" for c in ensemble.ENSEMBLES["ensemble"].components)
    with pytest.raises(score.ScoreError, match="unknown ensemble"):
        ensemble.score_ensemble(score.ScoreConfig(), [(1,) * 6], name="nope")
