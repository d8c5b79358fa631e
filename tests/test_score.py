"""Scoring cells at benchmark scale: the switch network equals the discrete network, one
compilation for all cells, streaming output that resumes, and clear errors."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_space import registered

from nasi_jax import cli, ntk, score, search
from nasi_jax.spaces import nb201

TINY = score.ScoreConfig(batch_size=2, channels=2, cells_per_stage=1, image_size=8)
CELLS = [(3, 0, 3, 1, 0, 1), (1, 1, 1, 1, 1, 1), (0, 0, 0, 0, 0, 0), (2, 4, 1, 3, 2, 0),
         (4, 4, 4, 4, 4, 4), (2, 2, 3, 3, 4, 1)]


@pytest.mark.parametrize("conv_impl,proxy", [("xla", "nasi"), ("loop-safe", "nasi"),
                                             ("loop-safe", "ntk_trace")])
def test_switch_score_equals_discrete_network(x64, conv_impl, proxy):
    """A cell's score from the one compiled supernet function equals the score of the
    discrete network initialised with the same key, on the same batch (float64)."""
    cfg = dataclasses.replace(TINY, dtype="float64", conv_impl=conv_impl, proxy=proxy)
    inputs = score.init_scoring(cfg, seed=7)
    fn = jax.jit(score.make_score_fn(cfg))
    init_key, _ = jax.random.split(jax.random.PRNGKey(7))
    for ops in CELLS[:4]:
        net = nb201.NB201Network(2, 1, fixed=ops, dtype=jnp.float64)
        v = net.init(init_key, inputs.x[:1], None, train=False)
        f = search.make_apply(net, v["batch_stats"], "train")
        g = lambda p, x: f(p, x, None)
        ref = (ntk.nasi_estimator(g, v["params"], inputs.x, inputs.y) if proxy == "nasi"
               else ntk.exact_trace(g, v["params"], inputs.x))
        got = fn(*inputs, jnp.asarray(ops))
        np.testing.assert_allclose(float(got), float(ref), rtol=1e-10)


def test_one_compilation_for_all_cells():
    score.clear_cache()
    before = score.TRACE_COUNT["score"]
    s = score.score_cells(TINY, CELLS, seed=0, progress=False)
    assert score.TRACE_COUNT["score"] - before == 1
    assert s.shape == (6,) and np.isfinite(s).all()
    # scoring more cells later reuses the compiled function
    score.score_cells(TINY, CELLS[:2], seed=1, progress=False)
    assert score.TRACE_COUNT["score"] - before == 1
    # same seed -> same scores
    np.testing.assert_array_equal(score.score_cells(TINY, CELLS, seed=0, progress=False), s)


def _count_cells(monkeypatch):
    """Count the cells that reach the compiled scorer."""
    seen = []
    orig = score._compiled_scorer

    def wrapped(cfg, inputs, devices):
        compiled, sharding = orig(cfg, inputs, devices)

        def call(*args):
            seen.append(np.asarray(args[-1]).tolist())
            return compiled(*args)
        return call, sharding

    monkeypatch.setattr(score, "_compiled_scorer", wrapped)
    return seen


def test_killed_run_resumes_without_redoing_cells(tmp_path, monkeypatch):
    full = tmp_path / "full.csv"
    ref = score.score_cells(TINY, CELLS, seed=0, output=str(full), progress=False)
    out = tmp_path / "part.csv"
    seen = _count_cells(monkeypatch)
    part = score.score_cells(TINY, CELLS, seed=0, output=str(out), progress=False, stop_after=3)
    assert np.isnan(part[3:]).all() and len(seen) == 3
    with open(out, "a") as fh:  # a kill in the middle of writing a row
        fh.write("12345,|none~0|+|no")
    seen.clear()
    resumed = score.score_cells(TINY, CELLS, seed=0, output=str(out), progress=False)
    assert sorted(tuple(c[0]) for c in seen) == sorted(CELLS[3:])  # only the unfinished cells
    np.testing.assert_array_equal(resumed, ref)
    assert out.read_text() == full.read_text()
    seen.clear()
    score.score_cells(TINY, CELLS, seed=0, output=str(out), progress=False)  # all done: no work
    assert seen == []


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "s.csv"
    score.score_cells(TINY, CELLS[:2], seed=0, output=str(out), progress=False)
    with pytest.raises(score.ScoreError, match="other settings"):
        score.score_cells(TINY, CELLS[:2], seed=1, output=str(out), progress=False)
    with pytest.raises(score.ScoreError, match="other settings"):
        score.score_cells(dataclasses.replace(TINY, batch_size=3), CELLS[:2], seed=0,
                          output=str(out), progress=False)
    stray = tmp_path / "stray.csv"
    stray.write_text("a,b\n")
    with pytest.raises(score.ScoreError, match="not written by"):
        score.score_cells(TINY, CELLS[:2], seed=0, output=str(stray), progress=False)


def test_resume_checks_mu_nu_and_accepts_older_meta(tmp_path):
    """mu and nu are part of the settings; a meta file from before they existed (no such
    keys) resumes as if it had their defaults."""
    import json
    out = tmp_path / "s.csv"
    score.score_cells(TINY, CELLS[:2], seed=0, output=str(out), progress=False)
    with pytest.raises(score.ScoreError, match="other settings"):
        score.score_cells(dataclasses.replace(TINY, mu=3.0), CELLS[:2], seed=0, output=str(out),
                          progress=False)
    meta_path = str(out) + ".meta.json"
    meta = json.loads(open(meta_path).read())
    del meta["config"]["mu"], meta["config"]["nu"]
    with open(meta_path, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(score.ScoreError, match="other settings"):  # the older file's nu: 100
        score.score_cells(dataclasses.replace(TINY, nu=5.0), CELLS[:2], seed=0, output=str(out),
                          progress=False)
    again = score.score_cells(TINY, CELLS[:2], seed=0, output=str(out), progress=False)
    assert np.isfinite(again).all()


def test_parse_cells(tmp_path):
    ops, index, kind = score.parse_cells("all")
    assert len(ops) == nb201.NUM_ARCHS and index == list(range(nb201.NUM_ARCHS)) and kind == "code"
    a, ia, _ = score.parse_cells("50", seed=3)
    b, ib, _ = score.parse_cells(50, seed=3)
    assert a == b and len(set(ia)) == 50
    f = tmp_path / "cells.txt"
    f.write_text(nb201.EXAMPLE_ARCH + "\n# a comment\n" + nb201.arch_to_str(CELLS[1]) + "\n")
    ops, index, _ = score.parse_cells(str(f))
    assert ops == [nb201.parse_arch(nb201.EXAMPLE_ARCH), CELLS[1]]
    f.write_text(nb201.EXAMPLE_ARCH + "\n|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    with pytest.raises(score.ScoreError, match="cell 2"):
        score.parse_cells(str(f))
    with pytest.raises(score.ScoreError, match="none of these"):
        score.parse_cells("no_such_file.txt")
    with pytest.raises(score.ScoreError, match="1..15625"):
        score.parse_cells("0")
    with pytest.raises(score.ScoreError, match="repeats"):
        score.parse_cells([CELLS[0], CELLS[0]])


def test_bad_config():
    for kw, msg in [(dict(proxy="nope"), "unknown proxy"), (dict(batch_size=0), "batch_size"),
                    (dict(conv_impl="fast"), "conv_impl"), (dict(space="darts"), "cannot score discrete cells"), (dict(space="nb999"), "unknown search space")]:
        with pytest.raises(ValueError, match=msg):
            dataclasses.replace(TINY, **kw).validate()


def test_cli_score_and_errors(tmp_path, capsys):
    out = tmp_path / "s.csv"
    flags = ["--batch-size", "2", "--channels", "2", "--cells-per-stage", "1", "--image-size", "8",
             "--no-progress"]
    assert cli.main(["score", "--cells", "3", "--seed", "0", "--output", str(out), *flags]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "index,arch_str,nasi" and len(rows) == 4
    assert os.path.exists(str(out) + ".meta.json")
    capsys.readouterr()
    assert cli.main(["score", "--proxy", "nope", "--output", str(out), *flags]) == 2
    assert "unknown proxy" in capsys.readouterr().err
    assert cli.main(["score", "--cells", "x.txt", "--output", str(out), *flags]) == 2
    assert "none of these" in capsys.readouterr().err
    assert cli.main(["score", "--devices", "3", "--cells", "2", "--output", str(tmp_path / "t.csv"),
                     *flags]) == 2
    assert "device" in capsys.readouterr().err


MULTI = textwrap.dedent("""
    import os, json, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 {flags}"
    import jax, numpy as np
    from nasi_jax import score, search
    assert len(jax.devices()) == 4
    sys.path.insert(0, {tests!r})
    from toy_space import registered  # sharding does not depend on the space: the toy one compiles fast
    with registered():
        cfg = score.ScoreConfig(space="toy", batch_size=4, channels=4, image_size=8)
        cells = [(0, 1), (1, 2), (2, 2), (2, 0), (1, 1)]  # 5 cells over 4 devices: the last group is padded
        one = score.score_cells(cfg, cells, seed=0, progress=False)
        four = score.score_cells(cfg, cells, seed=0, progress=False, devices=jax.devices())
        s = search.SearchConfig(space="toy", steps=3, batch_size=4, mu=2.0, nu=5.0, nu_mode="adaptive")
        scan = search.Execution(loop="scan")
        a = search.run_search(s, seeds=list(range(6)), execution=scan)
        b = search.run_search(s, seeds=list(range(6)), execution=scan, devices=jax.devices())
    print(json.dumps({{"one": one.tolist(), "four": four.tolist(),
        "ops_equal": bool((a.ops == b.ops).all()), "s_equal": bool((a.history["s"] == b.history["s"]).all()),
        "alpha_maxdiff": float(np.abs(a.alpha_star - b.alpha_star).max())}}))
""")


def test_multi_device_equals_one_device():
    """Cells (the scorer) and seeds (the search) sharded over 4 (forced host) devices give the
    one-device results, on the toy space of tests/toy_space.py (the sharding is the same code
    for every space; NB201's scorer is checked cell by cell against its networks above)."""
    from conftest import TEST_XLA_FLAGS
    code = MULTI.format(flags=TEST_XLA_FLAGS, tests=os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    import json
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(set(r["one"])) > 1  # the cells differ
    np.testing.assert_allclose(r["four"], r["one"], rtol=1e-6)
    assert r["ops_equal"] and r["s_equal"]
    assert r["alpha_maxdiff"] < 1e-6


def test_memory_budget(tmp_path):
    """The scorer's and the search's memory checks (space-independent: on the toy space)."""
    from nasi_jax import memory
    out = tmp_path / "s.csv"
    with registered():
        toy = score.ScoreConfig(space="toy", batch_size=2, channels=4, image_size=8)
        with pytest.raises(memory.MemoryBudgetError, match="over the budget"):
            score.score_cells(toy, [(0, 1), (2, 2)], seed=0, output=str(out), progress=False,
                              memory_budget="1KB")
        assert not out.exists() and not os.path.exists(str(out) + ".meta.json")  # nothing written
        # ntk_trace without a chunk size: the largest chunk whose program fits is chosen
        cfg = dataclasses.replace(toy, proxy="ntk_trace")
        inputs = score.init_scoring(cfg, 0)
        full = memory.compiled_peak_bytes(score._compiled_scorer(
            dataclasses.replace(cfg, chunk_size=20), inputs, jax.local_devices()[:1])[0])
        small = memory.compiled_peak_bytes(score._compiled_scorer(
            dataclasses.replace(cfg, chunk_size=10), inputs, jax.local_devices()[:1])[0])
        assert small < full
        chosen, _ = score._plan(cfg, inputs, jax.local_devices()[:1], (small + full) // 2)
        assert chosen.chunk_size == 10  # halving from b*K = 20: the first that fits (compiled above)
        with pytest.raises(memory.MemoryBudgetError):  # the search's check
            search.run_search(search.SearchConfig(space="toy", steps=1), [0], memory_budget=1000)
