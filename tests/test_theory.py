"""nasi_jax.theory: the neural-tangents spaces, finite vs infinite width, Propositions 1 and 2,
and the experiment scripts at tiny settings. Float64 throughout (exact comparisons)."""

import importlib.util
import json

import pytest

if importlib.util.find_spec("neural_tangents") is None:
    pytest.skip("neural-tangents is not installed", allow_module_level=True)

import jax
import jax.numpy as jnp
import numpy as np

from conftest import data_path, import_experiment
from nasi_jax import ntk
from nasi_jax.nt_compat import empirical_ntk_trace, import_neural_tangents
from nasi_jax.theory import agnostic, inputs, kernels, spaces, training

pytestmark = pytest.mark.usefixtures("x64")  # conftest: float64 for each test


def _x(space, n=4, seed=0):
    x = jax.random.normal(jax.random.PRNGKey(seed), (n, 4, 4, 3))
    x = x / jnp.linalg.norm(x.reshape(n, -1), axis=1)[:, None, None, None]
    return x.reshape(n, -1) if space == "mlp" else x


# ----------------------------------------------------------------------------- spaces


def test_space_sizes_and_round_trip():
    mlp, conv = spaces.architectures("mlp"), spaces.architectures("conv")
    assert len(mlp) == 64 and len(set(mlp)) == 64
    assert len(conv) == 56 and len(set(conv)) == 56  # 8 convolution-free sums rejected
    for space, archs in (("mlp", mlp), ("conv", conv)):
        for a in archs[:5]:
            assert spaces.to_string(space, spaces.parse(space, a)) == a


@pytest.mark.parametrize("space,arch,match", [
    ("resnet", "relu", "unknown theory space"),
    ("mlp", "relu-erf", "expected 3 ops"),
    ("mlp", "relu-tanh-erf", "expected 3 ops"),
    ("conv", "|nor_conv_3x3~0|+|skip_connect~0|", "expected"),
    ("conv", "|conv9~0|+|skip_connect~0|nor_conv_1x1~1|", "unknown op 'conv9'"),
    ("conv", "|nor_conv_3x3~0|+|skip_connect~1|nor_conv_1x1~1|", "should read from node 0"),
    ("conv", "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|", "without a convolution"),
])
def test_malformed_architectures_are_rejected(space, arch, match):
    with pytest.raises(spaces.SpaceError, match=match):
        spaces.build(space, arch, 8)


def test_bad_width_is_rejected():
    with pytest.raises(spaces.SpaceError, match="positive integer"):
        spaces.build("mlp", "relu-relu-relu", 0)


# ----------------------------------------------------------------------------- exact trace


@pytest.mark.parametrize("space,arch", [
    ("mlp", "relu-erf-gelu"), ("mlp", "linear-relu-linear"),
    ("conv", "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"),
    ("conv", "|avg_pool_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"),
])
def test_our_exact_trace_equals_neural_tangents_in_float64(space, arch):
    x = _x(space)
    net = spaces.build(space, arch, 8)
    _, params = net.init_fn(jax.random.PRNGKey(3), x.shape)
    ours = ntk.exact_trace(net.apply_fn, params, x)
    for impl in (1, 2):
        ref = empirical_ntk_trace(net.apply_fn, params, x, implementation=impl)
        np.testing.assert_allclose(ours, ref, rtol=1e-12)
    k = kernels.empirical_ntk(net.apply_fn, params, x)
    np.testing.assert_allclose(kernels.full_trace(k, spaces.NUM_CLASSES), ours, rtol=1e-12)
    full = kernels.empirical_ntk(net.apply_fn, params, x, full=True)  # [N, N, K, K]
    assert full.shape == (4, 4, 10, 10)
    np.testing.assert_allclose(jnp.einsum("ijkk->ij", full) / 10, k, rtol=1e-10, atol=1e-14)


def test_empirical_ntk_approaches_the_analytic_kernel_with_width():
    x = _x("mlp", n=6)
    net_inf = spaces.build("mlp", "relu-erf-linear", 1)
    k_inf = kernels.analytic_ntk(net_inf.kernel_fn, x)
    sweep = kernels.width_sweep("mlp", ["relu-erf-linear"], [16, 1024], x, [0, 1, 2],
                                progress=False)
    err = sweep["kernel_error"][0].mean(-1)
    assert err[1] < err[0] / 3  # 64x the width: theory ~8x smaller
    assert sweep["analytic_trace"][0] == pytest.approx(float(10 * jnp.trace(k_inf)))
    assert kernels.loglog_slope([16, 1024], err) < -0.3


def test_stax_analytic_ntk_matches_monte_carlo_of_the_empirical_one():
    """The analytic kernel of a conv space network is the mean of empirical kernels."""
    nt = import_neural_tangents()
    x = _x("conv", n=3)
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"
    net = spaces.build("conv", arch, 64)
    mc = nt.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, jax.random.PRNGKey(0), n_samples=16,
                                  trace_axes=(-1,), vmap_axes=0)
    k_mc = mc(x, None, "ntk")
    k_inf = kernels.analytic_ntk(net.kernel_fn, x)
    assert float(kernels.relative_error(k_mc, k_inf)) < 0.1


# ----------------------------------------------------------------------------- Proposition 1


def test_nt_predict_matches_the_closed_form_gradient_flow():
    k = jnp.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 0.5]])
    y = jnp.eye(3)[:, :2] - 0.5
    fx0 = jnp.array([[0.1, -0.2], [0.0, 0.3], [-0.1, 0.05]])
    ts = jnp.array([0.0, 1.0, 5.0])
    got = training.linearised_loss(k, fx0, y, lr=0.7, ts=ts)
    lam, u = jnp.linalg.eigh(k)
    c = u.T @ (fx0 - y)
    want = [0.5 * float(jnp.sum(jnp.exp(-2 * 0.7 * t * lam / y.size)[:, None] * c ** 2)) / y.size
            for t in ts]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert got[0] == pytest.approx(float(training.mse(fx0, y)))


def test_mean_eigenvalue_bound_holds_and_decreases():
    key = jax.random.PRNGKey(0)
    for s in range(5):
        a = jax.random.normal(jax.random.fold_in(key, s), (6, 6))
        k = a @ a.T
        y = jax.random.normal(jax.random.fold_in(key, 100 + s), (6, 3))
        fx0 = jnp.zeros_like(y)
        ts = jnp.linspace(0, 50, 11)
        lr = 0.5 * y.size / float(jnp.linalg.eigvalsh(k)[-1])
        b = training.mean_eigenvalue_bound(k, fx0, y, lr=lr, ts=ts)
        lin = training.linearised_loss(k, fx0, y, lr=lr, ts=ts)
        assert np.all(lin <= b["bound"] * (1 + 1e-12))
        assert np.all(np.diff(b["bound"]) <= 0)
        assert 1.0 <= b["slack"] <= y.size
        assert b["lambda_bar"] == pytest.approx(float(jnp.trace(k)) / 6)


def test_gd_follows_the_linearised_prediction_at_large_width():
    x = _x("mlp", n=6) * np.sqrt(48)  # norm sqrt(d): the kernel is of order 1
    y = jnp.eye(10)[jnp.arange(6)] - 0.1
    net = spaces.build("mlp", "relu-relu-relu", 2048)
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    k = kernels.empirical_ntk(net.apply_fn, params, x, full=True)
    lr = 0.1 * y.size / float(jnp.linalg.eigvalsh(k.transpose(0, 2, 1, 3).reshape(60, 60))[-1])
    gd = training.train_gd(net.apply_fn, params, x, y, lr=lr, steps=30)
    lin = training.linearised_loss(k, net.apply_fn(params, x), y, lr=lr, ts=jnp.array([0., 30.]))
    assert gd[0] == pytest.approx(lin[0])
    assert gd[-1] < 0.9 * gd[0]
    assert abs(gd[-1] - lin[-1]) / lin[-1] < 0.05


def test_train_gd_reports_divergence():
    x = _x("mlp", n=4)
    y = jnp.ones((4, 10))
    net = spaces.build("mlp", "relu-relu-relu", 16)
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        training.train_gd(net.apply_fn, params, x, y, lr=1e10, steps=60)


# ----------------------------------------------------------------------------- Proposition 2


def test_prop2_bound_and_assumptions():
    assert agnostic.bound(z=2.0, depth=4, n0=192) == pytest.approx(8 / 192)
    with pytest.raises(ValueError, match="lies in"):
        agnostic.bound(z=3.0, depth=4, n0=192)
    assert agnostic.assumptions_hold("mlp", "relu-linear-relu")
    assert not agnostic.assumptions_hold("mlp", "relu-erf-relu")
    assert agnostic.depth("mlp", "relu-linear-relu") == 4


def test_mlp_ntk_diagonal_depends_only_on_the_input_norm():
    """Why Delta is small: with i.i.d. Gaussian weights an MLP's Theta(x, x) is a function of
    ||x|| alone (for ReLU/linear layers, c ||x||^2), so inputs with the same norms give the same
    per-entry trace whatever their distribution."""
    x = agnostic.into_unit_ball(jax.random.normal(jax.random.PRNGKey(0), (5, 12)))
    g = agnostic.gaussian_like(jax.random.PRNGKey(2), x)
    assert bool(jnp.all(jnp.linalg.norm(g, axis=1) <= 1 + 1e-12))
    g_same = g / jnp.linalg.norm(g, axis=1, keepdims=True) * jnp.linalg.norm(x, axis=1,
                                                                            keepdims=True)
    for arch, homogeneous in (("relu-linear-relu", True), ("erf-gelu-relu", False)):
        k = spaces.build("mlp", arch, 1).kernel_fn
        t = [float(agnostic.per_entry_trace(kernels.analytic_ntk(k, v))) for v in (x, g_same, 0.5 * x)]
        assert t[0] == pytest.approx(t[1], rel=1e-7)
        assert (t[2] == pytest.approx(0.25 * t[0], rel=1e-7)) == homogeneous


# ----------------------------------------------------------------------------- experiments


def _run(script, args, capsys):
    import_experiment(script).main(args)
    return capsys.readouterr().out.strip().splitlines()


def test_theory_width_script_ends_with_the_summary_line(tmp_path, capsys):
    out = tmp_path / "w.json"
    lines = _run("theory_width", ["--spaces", "mlp,conv", "--archs", "3", "--mlp-widths", "8,64",
                                  "--conv-widths", "4,16", "--seeds", "1", "--examples", "3",
                                  "--inputs", "gaussian", "--output", str(out)], capsys)
    summary = json.loads(lines[-1])
    assert {"slope", "rank_corr_at_max_width"} <= set(summary)
    saved = json.loads(out.read_text())
    assert saved["spaces"]["conv"]["exact_trace_vs_neural_tangents_max_rel_diff"] < 1e-10
    assert (tmp_path / "w.png").stat().st_size > 0
    assert "versions" in saved and saved["summary"] == summary


def test_theory_width_quick_mode_ends_with_slope_and_rank_corr(capsys, monkeypatch):
    theory_width = import_experiment("theory_width")
    # the --quick path with smaller settings than the real ones (about 40 s)
    monkeypatch.setattr(theory_width, "QUICK", dict(spaces="mlp", archs=3, widths={"mlp": "8,32,128"},
                                                    seeds=1, examples=3))
    theory_width.main(["--quick", "--inputs", "gaussian"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"slope", "rank_corr_at_max_width", "wall_s"} <= set(summary)
    assert summary["slope"] < 0 and -1 <= summary["rank_corr_at_max_width"] <= 1


def test_theory_training_and_agnostic_scripts_on_real_images(tmp_path, capsys):
    d = str(data_path("cifar10_jpeg"))
    out = tmp_path / "t.json"
    _run("theory_training", ["--spaces", "conv", "--archs", "2", "--examples", "6",
                             "--conv-width", "8", "--steps", "4", "--data-dir", d,
                             "--output", str(out)], capsys)
    res = json.loads(out.read_text())["spaces"]["conv"]
    assert res["bound_holds_all"]["linear_analytic"]
    assert len(res["archs"]) == 2
    out = tmp_path / "a.json"
    _run("theory_agnostic", ["--examples", "4", "--width", "8", "--seeds", "1",
                             "--archs", "relu-relu-relu,erf-gelu-relu,linear-linear-linear",
                             "--data-dir", d, "--output", str(out)], capsys)
    summary = json.loads(out.read_text())["summary"]
    # For the all-linear net T = L E|x|^2 / n0 exactly (not a bound: an identity that can fail).
    assert summary["linear_net_T_P_vs_L_norm2_over_n0_rel_diff"] < 1e-10
    assert 0 < summary["max_delta_analytic"] < summary["max_delta_analytic_sphere"]


def test_cifar_subset_norms():
    d = data_path("cifar10_jpeg")
    x, y = inputs.cifar_subset(d, 3, norm="dim")
    assert x.shape == (3, 8, 8, 3) and y.shape == (3,)
    np.testing.assert_allclose(np.linalg.norm(x.reshape(3, -1), axis=1), np.sqrt(192))
    with pytest.raises(ValueError, match="norm must be"):
        inputs.cifar_subset(d, 3, norm="max")
