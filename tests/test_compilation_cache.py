"""The persistent compilation cache: on by default, its folder, switching it off, a second run
loads every program, and `nasi cache` reports and clears it."""

import json
import os
import subprocess
import sys

import pytest

from nasi_jax import compilation_cache as cc

# `nasi search` on the toy space of tests/toy_space.py (registered in the subprocess): the cache
# works the same for every space, and the toy step compiles in about a second
TOY = ["search", "--space", "toy", "--steps", "2", "--no-progress"]
_TOY_CLI = ("import sys; sys.path.insert(0, {tests!r}); from toy_space import registered; "
            "from nasi_jax import cli\nwith registered(): sys.exit(cli.main({args!r}))")


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


@pytest.fixture
def restore_cache_settings():
    import jax
    saved = {k: getattr(jax.config, k) for k in ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
                                                  "jax_compilation_cache_max_size",
                                                  "jax_persistent_cache_min_compile_time_secs",
                                                  "jax_persistent_cache_min_entry_size_bytes")}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)
    cc._reset()


def _setup(*flags):
    from nasi_jax.cli import _common, build_parser
    return _common.setup_cache(build_parser("search").parse_args(["search", *flags]))


def test_switching_off_and_unwritable_folders(monkeypatch, tmp_path, capsys, restore_cache_settings):
    import jax
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    on = _setup("--compilation-cache", str(tmp_path / "on"))
    jax.jit(lambda x: x * 5.0 - 2.0).lower(1.0).compile()
    assert cc.usage(on)[0] == 1  # switched on, a compile is stored (so the next check can fail)
    assert _setup("--no-compilation-cache") is None
    assert jax.config.jax_enable_compilation_cache is False and cc.current_dir() is None
    jax.jit(lambda x: x * 3.0 + 1.0).lower(1.0).compile()
    assert cc.usage(on)[0] == 1  # switched off: nothing more written
    with pytest.raises(ValueError, match="contradict"):
        _setup("--no-compilation-cache", "--compilation-cache", str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="not writable"):  # an explicit folder: an error
        _setup("--compilation-cache", str(blocker / "cache"))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(blocker / "cache"))  # a default: a warning
    assert _setup() is None and "running without it" in capsys.readouterr().err
    assert cc.current_dir() is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "ok"))
    assert _setup() == str(tmp_path / "ok") and cc.current_dir() == str(tmp_path / "ok")


def test_unwritable_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="not writable.*--no-compilation-cache"):
        cc.enable(str(blocker / "cache"))


def _nasi_toy(args, env):
    code = _TOY_CLI.format(tests=os.path.dirname(os.path.abspath(__file__)), args=list(args))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_second_run_loads_every_program(tmp_path, monkeypatch, capsys):
    env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["NASI_JAX_CACHE_DIR"] = str(tmp_path / "cache")  # the default folder, as a user gets it
    runs = []
    for i in range(2):
        _nasi_toy([*TOY, "--output", str(tmp_path / f"r{i}.json")], env)
        runs.append(json.loads((tmp_path / f"r{i}.json").read_text()))
    first, second = runs[0]["compilation_cache"], runs[1]["compilation_cache"]
    assert first["dir"] == second["dir"] == str(tmp_path / "cache")
    assert first["hits"] == 0 and first["misses"] > 0
    assert second["hits"] == first["misses"] and second["misses"] == 0  # every program loaded
    assert [r["alpha_star"] for r in runs[0]["seeds"]] == [r["alpha_star"] for r in runs[1]["seeds"]]
    stored, size = cc.usage(str(tmp_path / "cache"))
    assert stored == first["misses"] and size > 0
    # `nasi cache` only reads the folder: in this process, with the same environment
    from nasi_jax import cli
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("NASI_JAX_CACHE_DIR", env["NASI_JAX_CACHE_DIR"])
    capsys.readouterr()
    assert cli.main(["cache"]) == 0 and f"{stored} compiled program(s)" in capsys.readouterr().out
    assert cli.main(["cache", "--clear"]) == 0
    assert f"removed {stored} compiled program(s)" in capsys.readouterr().out
    assert cc.usage(str(tmp_path / "cache")) == (0, 0)
