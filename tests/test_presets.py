"""Presets: the one source of defaults, overrides, what a result records, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasi_jax import cli, presets, search

HERE = Path(__file__).parent
OLD_RUN = HERE / "data" / "run_v0.1.0_tiny.json"  # `nasi search` of nasi-jax 0.1.0 (before presets)
ROOT = HERE.parent


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_complete_and_valid(name):
    p = presets.get_preset(name)
    assert p.version >= 1 and p.summary and set(p.provenance) == {"command", "output", "note"}
    for space in p.spaces:
        cfg = search.SearchConfig(space=space, preset=name).validate()
        values = p.values_for(space)
        for field in presets.SEARCH_FIELDS:
            want = values[field] if values[field] is not None else presets.DEFAULT_DATA
            assert getattr(cfg, field) == want, field
        assert cfg.preset == name and cfg.preset_overrides() == {}
    if p.provenance["output"] != "-":
        assert (ROOT / p.provenance["output"]).is_file()  # the tuning output is committed


def test_defaults_come_from_the_preset_for_the_data():
    assert search.SearchConfig().preset == "nb201-random"
    assert search.SearchConfig(data="real").preset == "nb201-real"
    assert search.SearchConfig(data="random-labels").preset == "nb201-random-labels"
    assert search.SearchConfig(space="darts").preset == "paper"
    assert search.SearchConfig(preset="nb201-real").data == "real"
    assert search.SearchConfig(preset="paper").data == "random"  # paper leaves the data to --data
    tuned = presets.get_preset("nb201-random").values_for("nb201")
    cfg = search.SearchConfig()
    assert (cfg.batch_size, cfg.tau, cfg.mu, cfg.nu, cfg.readout, cfg.steps, cfg.cells_per_stage) == (
        tuned["batch_size"], tuned["tau"], tuned["mu"], tuned["nu"], tuned["readout"], tuned["steps"], 5)
    # the CLI takes its defaults from the same place
    from nasi_jax.cli import search as search_cli
    args = cli.build_parser().parse_args(["search"])
    assert search_cli.search_config(args)[0] == search.SearchConfig().validate()
    args = cli.build_parser().parse_args(["search", "--data", "real"])
    assert search_cli.search_config(args)[0].preset == "nb201-real"


def test_explicit_values_override_single_preset_values():
    cfg = search.SearchConfig(preset="paper", steps=7, mu=0.5, readout="argmax-no-none")
    assert (cfg.steps, cfg.mu, cfg.readout, cfg.nu, cfg.batch_size) == (7, 0.5, "argmax-no-none", 100.0, 64)
    assert cfg.preset_overrides() == {"steps": 7, "mu": 0.5, "readout": "argmax-no-none"}
    rec = cfg.preset_record()
    assert rec["name"] == "paper" and rec["version"] == 1 and rec["overrides"]["mu"] == 0.5
    from nasi_jax.cli import search as search_cli
    args = cli.build_parser().parse_args(["search", "--preset", "paper", "--soft", "--nu", "3"])
    cfg, _ = search_cli.search_config(args)
    assert cfg.hard is False and cfg.nu == 3.0 and cfg.mu == 2.0


def test_unknown_or_unfit_preset_is_one_line_exit_2():
    for argv, match in ((["search", "--preset", "fastest"], "unknown preset 'fastest'; available: "),
                        (["search", "--space", "darts", "--preset", "nb201-real"],
                         "preset 'nb201-real' is for space(s) nb201, not 'darts'")):
        out = subprocess.run([sys.executable, "-m", "nasi_jax.cli", *argv], capture_output=True, text=True)
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1 and match in out.stderr, out.stderr
    with pytest.raises(presets.PresetError, match="unknown preset"):
        search.SearchConfig(preset="nope")


def test_presets_command_and_the_docs_page(capsys):
    assert cli.main(["presets", "nb201-random"]) == 0
    out = capsys.readouterr().out
    assert "nb201-random (version 1)" in out and "batch_size=8" in out and "nb201_tune_n5.json" in out
    assert cli.main(["presets", "--markdown"]) == 0
    table = capsys.readouterr().out
    page = (ROOT / "docs" / "presets.md").read_text()
    assert table.strip() in page, "docs/presets.md is stale: paste `nasi presets --markdown` into it"
    help_text = subprocess.run([sys.executable, "-m", "nasi_jax.cli", "search", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--preset" in help_text and "nb201-random: 91.22" in " ".join(help_text.split())


def test_paper_preset_reproduces_a_run_made_before_presets(tmp_path):
    """nasi-jax 0.1.0's `nasi search` (mu 2, nu 100, b 64 defaults) with its explicit sizes;
    `--preset paper` with the same flags selects the same cells with the same alpha*.

    At XLA's default optimisation the command reproduces the file bit for bit; the suite
    compiles at -O0 (conftest.py), which reorders float32 sums: s then moves by about 1e-6
    relative, hence the tolerances."""
    old = json.loads(OLD_RUN.read_text())
    assert old["versions"]["nasi_jax"] == "0.1.0" and "preset" not in old["config"]
    out = tmp_path / "r.json"
    flags = ["--seeds", "2", "--steps", "3", "--batch-size", "4", "--channels", "2", "--cells", "1",
             "--image-size", "8", "--no-progress"]
    assert cli.main(["search", "--preset", "paper", *flags, "--output", str(out)]) == 0
    new = json.loads(out.read_text())
    assert new["config"]["preset"] == "paper" and new["preset"]["version"] == 1
    assert new["preset"]["overrides"] == {"steps": 3, "cells_per_stage": 1, "channels": 2,
                                          "batch_size": 4, "image_size": 8}
    for key in ("mu", "nu", "nu_mode", "tau", "readout", "batch_size", "steps", "data"):
        assert new["config"][key] == old["config"][key], key
    for a, b in zip(old["seeds"], new["seeds"]):
        assert a["arch"] == b["arch"]
        np.testing.assert_allclose(b["alpha_star"], a["alpha_star"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(b["history"]["s"], a["history"]["s"], rtol=1e-5)
