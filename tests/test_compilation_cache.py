"""The persistent compilation cache: on by default, its folder, a second run loads every
program, `nasi cache` reports and clears it, and `nasi bench` stays off it."""

import json
import os
import subprocess
import sys

import pytest

from nasi_jax import compilation_cache as cc

TINY = ["search", "--preset", "paper", "--steps", "2", "--batch-size", "4", "--channels", "2", "--cells", "1",
        "--image-size", "8", "--no-progress"]


def test_folder_order(monkeypatch, tmp_path):
    for k in ("JAX_COMPILATION_CACHE_DIR", "NASI_JAX_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cc.resolve_dir() == os.path.join(str(tmp_path), ".cache", "nasi-jax")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert cc.resolve_dir() == "/x/nasi-jax"
    monkeypatch.setenv("NASI_JAX_CACHE_DIR", "/n")
    assert cc.resolve_dir() == "/n"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/j")  # jax's own variable wins over ours
    assert cc.resolve_dir() == "/j"
    assert cc.resolve_dir("/flag") == "/flag" and cc.resolve_dir("/flag", enabled=False) is None
    from nasi_jax.cli import _common, build_parser
    args = build_parser("search").parse_args(["search", "--no-compilation-cache"])
    assert _common.setup_cache(args) is None  # switched off: nothing is enabled


def test_unwritable_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="not writable.*--no-compilation-cache"):
        cc.enable(str(blocker / "cache"))


def _nasi(args, env):
    out = subprocess.run([sys.executable, "-m", "nasi_jax.cli", *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_second_run_loads_every_program(tmp_path):
    env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["NASI_JAX_CACHE_DIR"] = str(tmp_path / "cache")  # the default folder, as a user gets it
    runs = []
    for i in range(2):
        _nasi([*TINY, "--output", str(tmp_path / f"r{i}.json")], env)
        runs.append(json.loads((tmp_path / f"r{i}.json").read_text()))
    first, second = runs[0]["compilation_cache"], runs[1]["compilation_cache"]
    assert first["dir"] == second["dir"] == str(tmp_path / "cache")
    assert first["hits"] == 0 and first["misses"] > 0
    assert second["hits"] == first["misses"] and second["misses"] == 0  # every program loaded
    assert [r["alpha_star"] for r in runs[0]["seeds"]] == [r["alpha_star"] for r in runs[1]["seeds"]]
    stored, size = cc.usage(str(tmp_path / "cache"))
    assert stored == first["misses"] and size > 0
    assert f"{stored} compiled program(s)" in _nasi(["cache"], env)
    assert f"removed {stored} compiled program(s)" in _nasi(["cache", "--clear"], env)
    assert cc.usage(str(tmp_path / "cache")) == (0, 0)
