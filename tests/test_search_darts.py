"""NASI on the DARTS space: the search (staged on CPU), its genotypes, the CLI and the read-out.

One module, so that its tests share one compilation of the smallest DARTS supernet's step.
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from conftest import import_experiment
from nasi_jax import cli, search


# The smallest DARTS supernet: 5 cells (N=1), C=2, 8x8 inputs; the same settings as DARTS_FLAGS
# below, so the library and the CLI tests share one (staged) compilation in this module.
DARTS_TINY = search.SearchConfig(space="darts", steps=2, batch_size=2, channels=2, cells_per_stage=1,
                                 image_size=8, mu=0.0)


@pytest.fixture(scope="module")
def darts_run():
    return search.run_search(DARTS_TINY, seeds=[0, 1])


def test_darts_search_shapes_and_genotypes(darts_run):
    from nasi_jax.spaces import darts
    res = darts_run
    assert res.config.readout == "darts" and res.config.cells_per_stage == 1
    assert res.execution.step_impl == "staged"  # CPU host loop: compiled edge by edge
    assert res.alpha_star.shape == (2, 2, 14, 8) and res.ops.shape == (2, 2, 14)
    assert res.history["G"].shape == (2, 2, 2, 14, 8) and res.history["sampled"].shape == (2, 2, 2, 14)
    np.testing.assert_array_equal(res.ops, darts.read_out_ops(res.alpha_star))
    for a, ops, text in zip(res.alpha_star, res.ops, res.arch_strs):
        g = darts.parse_genotype(text)  # the saved text form parses back
        assert g == darts.ops_to_genotype(ops)
        assert darts.genotype_to_ops(g) == darts.genotype_to_ops(
            darts.genotype_from_alpha(a[0], a[1], logits=False))
        assert all(op != "none" for op, _ in g.normal + g.reduce)
    # both cells got a gradient (normal and reduction weights are both used)
    assert (np.abs(res.history["G"][:, :, 0]).sum() > 0) and (np.abs(res.history["G"][:, :, 1]).sum() > 0)
    # eq. 18 at mu=0 is the scaled sum of the recorded G_t: replay reproduces alpha* and the cells
    alpha, ops = search.replay(res, mu=0.0, nu=1.0)
    np.testing.assert_allclose(alpha, res.alpha_star, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ops, res.ops)
    _, ops_fix = search.replay(res, mu=2.0, nu=float(np.median(res.history["s"])))
    for o in ops_fix:
        darts.ops_to_genotype(o)  # a valid genotype
    with pytest.raises(ValueError, match="readout for space 'darts'"):
        search.replay(res, mu=2.0, nu=1.0, readout="argmax")


def test_darts_space_defaults_and_errors():
    cfg = search.SearchConfig(space="darts")
    assert cfg.cells_per_stage == 2 and cfg.readout == "darts" and cfg.alpha_shape == (2, 14, 8)
    assert search.make_network(cfg).layers == 8  # DARTS' 8-cell search network
    # NB201's default preset reads the cell without `none`; the paper preset with the argmax
    assert search.SearchConfig().readout == "argmax-no-none" and search.SearchConfig().cells_per_stage == 5
    assert search.SearchConfig(preset="paper").readout == "argmax"
    assert cfg.preset == "paper" and (cfg.mu, cfg.nu, cfg.batch_size) == (2.0, 100.0, 64)
    with pytest.raises(ValueError, match="readout for space 'darts'"):
        search.SearchConfig(space="darts", readout="argmax").validate()
    with pytest.raises(ValueError, match="readout for space 'nb201'"):
        search.SearchConfig(readout="darts").validate()
    Ex = search.Execution
    with pytest.raises(ValueError, match="step_impl='staged' needs a space that offers it"):
        Ex(step_impl="staged", seed_batching="vmap").resolve(search.SearchConfig())
    # NB201 offers the staged step but keeps the one-program step by default; DARTS defaults to staged
    assert Ex().resolve(search.SearchConfig(), backend="cpu").step_impl == "one-program"
    assert Ex(step_impl="staged").resolve(search.SearchConfig(), backend="cpu").step_impl == "staged"
    assert Ex().resolve(cfg, backend="cpu").step_impl == "staged"
    with pytest.raises(ValueError, match="step_impl='staged'"):
        Ex(step_impl="staged", loop="scan").resolve(cfg)
    with pytest.raises(ValueError, match="conv_impl for space 'nb201'"):
        Ex(conv_impl="xla-dense").resolve(search.SearchConfig())
    with pytest.raises(ValueError, match="conv_impl for space 'darts'"):
        Ex(conv_impl="fast").resolve(cfg)
    # conv_impl='auto' is resolved once, so result files record what ran
    assert Ex().resolve(search.SearchConfig()).conv_impl == "xla"
    on_cpu = jax.default_backend() == "cpu"
    assert Ex().resolve(cfg).conv_impl == ("xla-taps" if on_cpu else "xla")  # the staged step on CPU
    assert Ex(loop="scan").resolve(cfg).conv_impl == ("xla-dense" if on_cpu else "xla")  # one program
    with pytest.raises(ValueError, match="xla-taps.*rev-rev"):
        Ex(loop="scan", conv_impl="xla-taps").resolve(cfg)
    assert Ex(loop="scan", conv_impl="xla-taps", grad_mode="rev-rev").resolve(cfg).step_impl == "one-program"
    assert search.resolve_step_impl(cfg, Ex(loop="scan")) == "one-program"
    assert search.resolve_step_impl(cfg, Ex(loop="host")) == "staged"


# == DARTS_TINY
DARTS_FLAGS = ["--space", "darts", "--steps", "2", "--batch-size", "2", "--channels", "2", "--cells", "1",
              "--image-size", "8", "--mu", "0", "--no-progress"]


def test_darts_search_saves_a_genotype_that_train_accepts(tmp_path, capsys):
    from nasi_jax import train
    from nasi_jax.spaces import darts
    out = tmp_path / "darts.json"
    assert cli.main(["search", "--seeds", "2", *DARTS_FLAGS, "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["config"]["space"] == "darts" and res["config"]["readout"] == "darts"
    assert res["config"]["cells_per_stage"] == 1
    printed = capsys.readouterr().out
    for r in res["seeds"]:
        g = darts.parse_genotype(r["arch"])           # DARTS' text form, printed and saved
        assert r["arch"] in printed and len(r["ops"]) == 2 and len(r["ops"][0]) == 14
        assert r["params_eval_network"] == darts.count_params(g, channels=36, layers=20)
        assert "degenerate" not in r and len(r["alpha_star"]) == 2
    for ref, seed in ((str(out), 0), (f"{out}#1", 1)):  # the training command takes the file back
        assert train.parse_architecture(genotype=ref).text == res["seeds"][seed]["arch"]


def test_penalty_active_fraction():
    ds = import_experiment("darts_search")
    s = [50.0, 150.0, 120.0]
    assert ds.penalty_active_frac(s, 100.0, "fixed") == pytest.approx(2 / 3)
    # adaptive: nu_t = mean(100, s_1..s_{t-1}) = 100, 75, 100 -> active at steps 2 and 3
    assert ds.penalty_active_frac(s, 100.0, "adaptive") == pytest.approx(2 / 3)
    assert ds.penalty_active_frac(s, 40.0, "adaptive") == pytest.approx(1.0)


def test_darts_search_script_never_overwrites_the_chosen_genotypes(capsys):
    """docs/runs/darts_search_{fix,ada}.txt are the chosen ceiling rule's cells (written by
    darts_short_training.py): an --output with that stem is refused before anything runs."""
    ds = import_experiment("darts_search")
    chosen = pathlib.Path(__file__).resolve().parents[1] / "docs/runs/darts_search.json"
    before = (chosen.parent / "darts_search_fix.txt").read_text()
    with pytest.raises(SystemExit):
        ds.main(["--output", str(chosen), "--steps", "1"])
    assert "would overwrite the chosen rule's genotypes" in capsys.readouterr().err
    assert (chosen.parent / "darts_search_fix.txt").read_text() == before and not chosen.exists()


def test_darts_search_script_writes_both_variants_and_resumes(tmp_path, capsys):
    """experiments/darts_search.py at DARTS_TINY's sizes (the staged programs compiled above are
    reused): FIX, ADA and the mu=0 reference, genotype files, and a rerun that resumes."""
    from nasi_jax.spaces import darts
    ds = import_experiment("darts_search")
    out, hist = tmp_path / "d.json", tmp_path / "h.npz"
    args = ["--steps", "2", "--batch-size", "2", "--channels", "2", "--cells", "1", "--image-size", "8",
            "--output", str(out), "--history", str(hist)]
    assert ds.main(args) == 0
    res = json.loads(out.read_text())
    assert set(res["variants"]) == {"NASI-FIX", "NASI-ADA", "NASI-FIX, q60 rule", "NASI-ADA, q65 rule",
                                    "trace-only (mu=0)"}
    q60 = res["variants"]["NASI-FIX, q60 rule"]["settings"]
    assert q60["mu"] == 1.0 and q60["nu"] == pytest.approx(np.quantile(res["s"]["history"], 0.6), rel=1e-4)
    z = np.load(tmp_path / "d_history.npz")  # s and G of the run, for replaying other rules
    assert np.allclose(z["s"], res["s"]["history"]) and z["G"].shape == (2, 2, 14, 8)
    assert res["config"]["space"] == "darts" and res["config"]["steps"] == 2 and len(res["s"]["history"]) == 2
    assert "versions" in res and res["search_time_s"] > 0
    for name, v in res["variants"].items():
        assert 0.0 <= v["penalty_active_frac"] <= 1.0
        g = darts.parse_genotype(v["genotype"])
        assert v["params_eval_network"] == darts.count_params(g, channels=36, layers=20)
    for tag, name in (("fix", "NASI-FIX"), ("ada", "NASI-ADA"), ("fix_q60", "NASI-FIX, q60 rule"),
                      ("ada_q65", "NASI-ADA, q65 rule")):
        assert (tmp_path / f"d_{tag}.txt").read_text().strip() == res["variants"][name]["genotype"]
    capsys.readouterr()
    assert ds.main(args) == 0  # all steps are in the history: nothing is recomputed
    assert "resuming at step 2/2" in capsys.readouterr().err
    assert json.loads(out.read_text())["variants"] == res["variants"]
    h = np.asarray(res["s"]["history"])
    assert res["s"]["q50"] == pytest.approx(float(np.median(h))) and res["s"]["frac_above_100"] == np.mean(h > 100)
    assert ds.main(["--summarize", str(out)]) == 0  # the per-data-mode table, from the file alone
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| random | 2 | ") and f"{float(np.median(h)):.4g}" in row
    committed = pathlib.Path(__file__).resolve().parents[1] / "docs/runs/darts_search_data_agnostic.json"
    assert ds.main(["--summarize", str(committed)]) == 0  # a file from before the quantile rules
    assert "| - | - |" in capsys.readouterr().out
