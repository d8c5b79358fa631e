"""experiments/_common.py, the helper every experiment script shares (no jax compiles)."""

import json
import os
import pathlib

import numpy as np
import pytest

from conftest import import_experiment

common = import_experiment("_common")
REPO = pathlib.Path(__file__).resolve().parents[1]


def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith(".tmp-") or ".tmp" in n]


# ----------------------------------------------------------------------------- data paths

def test_data_root_follows_nasi_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NASI_DATA_DIR", str(tmp_path))
    assert common.data_root() == str(tmp_path)
    assert common.data_path("nb201", "t.csv") == os.path.join(str(tmp_path), "nb201", "t.csv")
    import argparse
    a = common.add_data_args(argparse.ArgumentParser(), nbsz=True).parse_args([])
    assert a.benchmark == os.path.join(str(tmp_path), "nb201", "nb201_accuracies.csv")
    assert a.data_dir == os.path.join(str(tmp_path), "cifar10_jpeg")
    assert a.nbsz == os.path.join(str(tmp_path), "nb201_zc", "nbsz_proxies_cifar10.csv")


def test_data_root_defaults_to_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("NASI_DATA_DIR", raising=False)
    assert os.path.normpath(common.data_root()) == os.path.normpath(REPO / ".." / "shared" / "data")
    import argparse
    a = common.add_data_args(argparse.ArgumentParser(), data_dir=False).parse_args(["--benchmark", "x.csv"])
    assert a.benchmark == "x.csv" and not hasattr(a, "data_dir")


def test_no_script_hard_codes_the_data_folder():
    for folder in ("experiments", "benchmarks"):
        for path in (REPO / folder).glob("*.py"):
            code = path.read_text()
            for line in code.splitlines():
                if "default=" in line:
                    assert "shared/data" not in line, f"{path.name}: {line.strip()}"


# ----------------------------------------------------------------------------- run records

def test_run_record_and_write_result(tmp_path):
    rec = common.run_record(str(REPO / "experiments" / "x.py"), ["--a", "b c"], seeds=[0, 1])
    assert rec["command"] == "python experiments/x.py --a 'b c'"
    assert list(rec)[:3] == ["command", "created", "seeds"] and list(rec)[-1] == "versions"
    assert {"python", "jax", "numpy", "nasi_jax"} <= set(rec["versions"])
    out = tmp_path / "sub" / "r.json"
    common.write_result(str(out), rec, "# r\n")
    assert json.loads(out.read_text()) == rec
    assert (tmp_path / "sub" / "r.md").read_text() == "# r\n"
    assert sorted(os.listdir(out.parent)) == ["r.json", "r.md"]
    # a write that fails leaves the old file whole and no temporary file behind
    with pytest.raises(TypeError):
        common.write_result(str(out), {"bad": object()})
    assert json.loads(out.read_text()) == rec and not _leftovers(out.parent)


def test_command_defaults_to_sys_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["experiments/y.py", "tune", "--output", "o.json"])
    assert common.command(str(REPO / "experiments" / "y.py")) == "python experiments/y.py tune --output o.json"


def test_save_figure_is_atomic_and_closes(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "f.png"
    common.save_figure(fig, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number) and not _leftovers(tmp_path)


# ----------------------------------------------------------------------------- formatting

def test_formatting():
    assert common.fmt_ms({"mean": 93.0812, "std": 0.2449}) == "93.08±0.24"
    assert common.fmt_ms({"mean": 1.0, "std": 0.0}, digits=1) == "1.0±0.0"
    assert common.fmt_num(None) == "–" and common.fmt_num(0.12345) == "0.123"
    assert common.md_header("a", "b c") == ["| a | b c |", "|---|---|"]
    assert common.md_row(["x", 1, 2.5]) == "| x | 1 | 2.5 |"


# ----------------------------------------------------------------------------- cached runs

def test_mu0_cache_key_is_unchanged():
    """The key of runs/nb201_mu0_n5/random_b8_t400_ca9a821f815915b5.npz (written when grad_mode
    and conv_impl were SearchConfig fields): cached runs stay valid."""
    from nasi_jax import search
    cfg = search.SearchConfig(preset="nb201-random", steps=400, mu=0.0)
    assert common.cache_key(cfg, range(10), None) == "ca9a821f815915b5"
    assert common.cache_key(cfg, range(10), None, search.Execution(loop="scan", conv_impl="xla")) == "ca9a821f815915b5"
    assert common.cache_key(cfg, range(10), None, search.Execution(grad_mode="rev-rev")) != "ca9a821f815915b5"


def test_saved_run_loads_back_and_mu0_run_reuses_it(tmp_path):
    from nasi_jax import search
    cfg = search.SearchConfig(steps=3, batch_size=4, channels=2, cells_per_stage=1, image_size=8, mu=0.0)
    exe = search.Execution("host", "map", "fwd-rev", "xla", "one-program")
    rng = np.random.default_rng(0)
    hist = {"s": rng.random((2, 3)), "G": rng.random((2, 3, 6, 5))}
    res = search.SearchResult(cfg, [0, 1], rng.random((2, 6, 5)), np.zeros((2, 6), int), ["a", "b"], hist,
                              1.5, 2.5, exe)
    path = tmp_path / f"random_b4_t3_{common.cache_key(cfg, [0, 1], None)}.npz"
    common.save_run(str(path), res, data_dir=None)
    assert sorted(os.listdir(tmp_path)) == [path.name]
    back, meta = common.load_run(str(path), cfg, [0, 1])
    assert back.execution == exe and back.arch_strs == ["a", "b"] and back.run_time_s == 2.5
    np.testing.assert_array_equal(back.history["G"], hist["G"])
    assert meta["config"]["loop"] == "host" and meta["config"]["steps"] == 3  # the one-config layout
    cached = common.mu0_run(cfg, [0, 1], data_dir=None, cache=str(tmp_path))  # no search runs
    np.testing.assert_array_equal(cached.alpha_star, res.alpha_star)


def test_nb201_search_cache_key_is_the_one_before_presets(tmp_path):
    """experiments/nb201_search.py keys its runs by the whole config as it was before presets
    and the Execution split (the runs behind docs/runs/nb201_*): the paper's values."""
    import argparse
    import hashlib
    nb201_search = import_experiment("nb201_search")
    cfg = nb201_search.base_config(argparse.Namespace(channels=16, cells_per_stage=1), steps=200,
                                   batch_size=8, tau=0.5, data="real")
    old = {"space": "nb201", "steps": 200, "batch_size": 8, "mu": 0.0, "nu": 100.0, "nu_mode": "fixed",
           "tau": 0.5, "hard": True, "xi": 1.0, "data": "real", "channels": 16, "cells_per_stage": 1,
           "num_classes": 10, "image_size": 32, "init_scheme": "pytorch", "bn_mode": "train",
           "seed_batching": "auto", "loop": "auto", "grad_mode": "fwd-rev", "conv_impl": "xla",
           "step_impl": "auto"}  # SearchConfig's fields before presets, the read-out left out
    key = json.dumps({"config": old, "seeds": [1000, 1001]}, sort_keys=True)
    want = hashlib.sha256(key.encode()).hexdigest()[:16] + ".npz"
    assert nb201_search.run_path(cfg, [1000, 1001], str(tmp_path)) == str(tmp_path / want)


# ----------------------------------------------------------------------------- benchmarks

def test_darts_train_step_benchmark_writes_its_record(tmp_path):
    """``benchmarks/darts_train_step.py`` at a tiny size: one row per round and impl, positive
    times, the record written with its command (the figures themselves are measurements)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("darts_train_step", REPO / "benchmarks" / "darts_train_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "b.json"
    assert bench.main(["--channels", "2", "--layers", "2", "--batch", "2", "--repeats", "1", "--rounds", "1",
                       "--impls", "xla-dense", "xla-taps", "--output", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["command"].startswith("python benchmarks/darts_train_step.py --channels 2")
    assert [(r["round"], r["impl"]) for r in rec["rows"]] == [(0, "xla-dense"), (0, "xla-taps")]
    assert all(r["best_s"] > 0 and r["first_s"] >= r["best_s"] for r in rec["rows"])


def test_darts_pooling_benchmark_writes_its_record(tmp_path):
    """``benchmarks/darts_pooling.py`` at batch 1 and one size: both strides, every form, four
    positive times, the record written with its command."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("darts_pooling", REPO / "benchmarks" / "darts_pooling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.SIZES = ((8, 4),)  # one small size: the suite's time
    out = tmp_path / "p.json"
    assert bench.main(["--batch", "1", "--output", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["command"].startswith("python benchmarks/darts_pooling.py --batch 1")
    assert sorted(rec["programs_ms"]) == sorted(f"{hw}x{hw}x{c} s{s}" for hw, c in bench.SIZES for s in (1, 2))
    assert all(set(row) == set(bench.FORMS) and all(v > 0 for f in row.values() for v in f.values())
               for row in rec["programs_ms"].values())
