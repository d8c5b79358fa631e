"""experiments/league.py's bookkeeping: which settings a proxy ignores, reusing scores of the
same cells from earlier score files, and the ``--proxies`` plan (tiny networks only)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from conftest import import_experiment
from nasi_jax.scoring import ScoreConfig, score_cells
from nasi_jax.scoring.cells import meta_path
from nasi_jax.spaces import nb201

league = import_experiment("league")
TINY = dict(batch_size=2, cells_per_stage=1, channels=2, image_size=8)


def _key(**kw):
    return league.config_key(dataclasses.asdict(ScoreConfig(**kw)))


def test_config_key_drops_only_the_settings_a_proxy_ignores():
    assert _key(proxy="synflow", data="real", batch_size=64) == _key(proxy="synflow", data="random")
    assert _key(proxy="synflow", init_scheme="kaiming") != _key(proxy="synflow")  # |W| depends on init
    assert _key(proxy="flops", init_scheme="kaiming", data="real") == _key(proxy="flops")
    assert _key(proxy="meco", data="real") != _key(proxy="meco", data="random")
    assert _key(proxy="meco", batch_size=1) != _key(proxy="meco")


def test_prefill_takes_the_same_cells_and_score_cells_finishes_the_rest(tmp_path):
    cells = [nb201.code_to_ops(c) for c in (5, 77, 1234, 9000, 15000)]
    index = [5, 77, 1234, 9000, 15000]
    archs = [nb201.arch_to_str(o) for o in cells]
    cfg = ScoreConfig(proxy="params", **TINY)
    old = tmp_path / "old" / "params.csv"
    old.parent.mkdir()
    first = score_cells(cfg, cells[:3], 0, output=str(old), index=index[:3], index_kind="nb201", progress=False)
    other = tmp_path / "old" / "other.csv"  # other settings (another seed): never read
    score_cells(cfg, cells[3:], 1, output=str(other), index=index[3:], index_kind="nb201", progress=False)

    out = tmp_path / "new" / "params.csv"
    out.parent.mkdir()
    want = [1, 2, 3, 4]  # cells 77 and 1234 are in the old file, 9000 and 15000 are not (seed 0)
    cfg_new = dataclasses.replace(cfg, batch_size=4)  # ignored by params: the old file serves
    taken = league.prefill(str(out), cfg_new, 0, [index[i] for i in want], [archs[i] for i in want],
                           [str(old.parent)])
    assert taken == 2
    assert [ln.split(",")[0] for ln in out.read_text().splitlines()] == ["index", "77", "1234"]
    assert json.loads(open(meta_path(str(out))).read())["prefilled_cells"] == 2
    assert not [n for n in os.listdir(out.parent) if n.endswith(".tmp")]
    assert league.prefill(str(out), cfg_new, 0, index, archs, [str(old.parent)]) == 0  # exists: untouched

    got = score_cells(cfg_new, [cells[i] for i in want], 0, output=str(out), index=[index[i] for i in want],
                      index_kind="nb201", progress=False)
    fresh = score_cells(cfg_new, [cells[i] for i in want], 0, progress=False)
    np.testing.assert_array_equal(got, fresh)
    np.testing.assert_array_equal(got[:2], first[1:])
    assert len(out.read_text().splitlines()) == 5


def test_plan_reads_name_at_protocol():
    plan = league.parse_plan("meco@published,flops,az_trainability", "ours,agnostic", 16)
    assert [(n, p) for n, p, _, _ in plan] == [("meco", "published"), ("flops", "ours"),
                                               ("az_trainability", "ours"), ("az_trainability", "agnostic")]
    assert plan[0][2]["batch_size"] == 1 and plan[3][2]["init_scheme"] == "kaiming"
    with pytest.raises(SystemExit, match="flops has no 'agnostic' protocol"):
        league.parse_plan("flops@agnostic", "ours", 16)
    with pytest.raises(SystemExit, match="unknown proxy 'nope'"):
        league.parse_plan("nope", "ours", 16)
