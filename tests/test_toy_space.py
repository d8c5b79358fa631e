"""A third space from outside the package: two edges, registered in the test, searched and scored.

Adding a space means implementing :class:`nasi_jax.spaces.Space` and registering it (with a
preset for its defaults); the search, replay, the scorer and its proxies then work unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from toy_space import registered

from nasi_jax import scoring, search, spaces


@pytest.fixture(scope="module")
def toy():
    with registered() as space:
        yield space


def test_a_registered_space_is_searched_and_replayed(toy):
    cfg = search.SearchConfig(space="toy")
    assert cfg.preset == "toy-test" and cfg.alpha_shape == (2, 3)
    res = search.run_search(cfg, seeds=[0, 1])
    assert res.ops.shape == (2, 2) and res.history["G"].shape == (2, 3, 2, 3)
    assert all(toy.parse(a) == tuple(o) for a, o in zip(res.arch_strs, res.ops))
    alpha, ops = search.replay(res, mu=0.0, nu=1.0)
    np.testing.assert_array_equal(ops, res.ops)
    scan = search.run_search(cfg, seeds=[0, 1], execution=search.Execution(loop="scan"))
    assert scan.arch_strs == res.arch_strs


def test_a_registered_space_is_scored(toy):
    cfg = scoring.ScoreConfig(space="toy", batch_size=4, channels=4, cells_per_stage=1, image_size=8)
    cells, index, kind = scoring.parse_cells("all", space="toy")
    assert len(cells) == 9 and kind == "code"
    s = scoring.score_cells(cfg, cells, seed=0, progress=False)
    assert np.isfinite(s).all() and len(set(s.tolist())) > 1  # the cell changes the score
    params = scoring.score_cells(dataclasses.replace(cfg, proxy="params"), cells, seed=0, progress=False)
    assert params.tolist() == [144.0 * sum(o == 2 for o in c) for c in cells]
    with pytest.raises(spaces.ArchitectureError, match="toy cells look like"):
        scoring.parse_cells(["conv-pool"], space="toy")
