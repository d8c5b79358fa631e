"""The `nasi` command: a tiny end-to-end search, the result file, info, and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import data_path
from nasi_jax import cli

TINY = ["--preset", "paper", "--steps", "3", "--batch-size", "4", "--channels", "2", "--cells", "1", "--image-size", "8",
        "--nu", "5", "--nu-mode", "adaptive", "--no-progress"]  # == tests/test_search.py TINY
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "nasi_jax.cli", "search", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--seeds", "--steps", "--batch-size", "--mu", "--nu", "--nu-mode", "--data",
                 "--data-dir", "--benchmark", "--output"):
        assert flag in out


def test_tiny_search_writes_result(tmp_path, capsys):
    out = tmp_path / "sub" / "result.json"
    assert cli.main(["search", "--seeds", "2", *TINY, "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"config", "versions", "seeds", "wall_time_s"}
    assert set(res["versions"]) >= {"python", "jax", "jaxlib", "flax", "optax"}
    assert [r["seed"] for r in res["seeds"]] == [0, 1]
    assert res["config"]["steps"] == 3 and res["config"]["data"] == "random"
    assert res["config"]["loop_used"] == "host"
    for r in res["seeds"]:
        assert len(r["history"]["s"]) == 3 and 0 <= r["penalty_active_frac"] <= 1
        q = r["trace_estimate_quantiles"]
        assert q["q0"] == min(r["history"]["s"]) and q["q100"] == max(r["history"]["s"])
        assert q["q50"] == pytest.approx(float(np.median(r["history"]["s"])))
    printed = capsys.readouterr().out
    for r in res["seeds"]:
        assert r["arch"] in printed
    assert "per step" in printed
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]
    assert out.stat().st_mode & 0o044  # readable by others, unlike mkstemp's default 0600


def test_search_with_benchmark(tmp_path, capsys):
    table = data_path("nb201", "nb201_accuracies.csv")
    out = tmp_path / "r.json"
    assert cli.main(["search", "--seeds", "2", *TINY, "--benchmark", str(table), "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    for r in res["seeds"]:
        assert set(r["benchmark"]) >= {"cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid"}
    assert set(res["summary"]["cifar10_test"]) >= {"mean", "std"}
    assert "mean ± std" in capsys.readouterr().out


def test_info(capsys):
    assert cli.main(["info", "--space", "nb201", "--arch", RESNET]) == 0
    out = capsys.readouterr().out
    assert "559386" in out and "78.562 M" in out


def _err(capsys, argv, code=2):
    with pytest.raises(SystemExit) as e:
        rc = cli.main(argv)
        raise SystemExit(rc)
    assert e.value.code == code
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["search", "--space", "nb999", "--steps", "1"], "invalid choice: 'nb999'"),
    (["search", "--space", "darts", "--benchmark", "x.csv"], "no benchmark table"),
    (["search", "--space", "darts", "--readout", "argmax"], "readout for space 'darts'"),
    (["info", "--space", "darts", "--genotype", "DARTS_V2", "--cells", "2"], "--cells is for --space nb201"),
    (["info", "--space", "nb999", "--arch", RESNET], "unknown search space"),
    (["info", "--arch", "|nor_conv_3x3~0|+|none~0|"], "malformed NB201 architecture"),
    (["info", "--arch", RESNET.replace("nor_conv_3x3", "conv_7x7")], "unknown op 'conv_7x7'"),
    (["search", "--steps", "0"], "--steps must be > 0"),
    (["search", "--steps", "-5"], "--steps must be > 0"),
    (["search", "--seeds", "x"], "--seeds must be an integer"),
    (["search", "--data", "real", "--steps", "1"], "--data-dir"),
    (["search", "--first-seed", "-1"], "seeds must lie in"),
    (["search", "--cells", "0"], "--cells-per-stage must be > 0"),
    (["search", "--cells-per-stage", "0"], "--cells-per-stage must be > 0"),
    (["info", "--arch", RESNET, "--cells", "-1"], "--cells must be > 0"),
])
def test_clear_errors(capsys, argv, match):
    assert match in _err(capsys, argv)


def test_benchmark_missing_columns(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("index,arch_str,cifar10_test_200\n0,%s,93.9\n" % RESNET)
    out = tmp_path / "r.json"
    err = _err(capsys, ["search", *TINY, "--benchmark", str(bad), "--output", str(out)])
    assert "missing" in err and "cifar100_test_200" in err
    assert not out.exists()


def test_unwritable_output_fails_before_search(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _err(capsys, ["search", *TINY, "--output", str(blocker / "sub" / "r.json")])
    assert "cannot write --output" in err


def test_data_dir_without_cifar(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("nothing here")
    err = _err(capsys, ["search", "--steps", "1", "--data", "real", "--data-dir", str(tmp_path)])
    assert "CIFAR-10" in err and str(tmp_path) in err


def test_real_data_tiny_search(tmp_path):
    """A search on CIFAR-10 images with random labels, end to end (in this process; the console
    entry point runs as a subprocess in test_help_runs, whole searches through the CLI in a
    subprocess in test_compilation_cache.py)."""
    d = data_path("cifar10_jpeg")
    out = tmp_path / "r.json"
    assert cli.main(["search", "--data", "random-labels", "--data-dir", str(d), "--steps", "1", "--batch-size", "4",
                     "--channels", "2", "--cells", "1", "--no-progress", "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["config"]["data"] == "random-labels" and r["config"]["image_size"] == 32
