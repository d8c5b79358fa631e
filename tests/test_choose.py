"""NASI proposes, an aggregate chooses (objective ``nasi+ensemble``): the candidates are the
most probable cells under alpha*, the choice is the aggregate's argmax among each seed's
candidates, and `nasi search` records the read-out's cell beside the chosen one."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from nasi_jax import cli, presets, search
from nasi_jax.scoring import ENSEMBLES, ScoreConfig, ensemble, rank_aggregate, score_cells
from nasi_jax.search import choose
from nasi_jax.spaces import nb201


def test_candidates_are_the_most_probable_cells():
    rng = np.random.default_rng(0)
    alpha = rng.normal(size=(6, 5))
    for readout, ops in (("argmax", range(5)), ("argmax-no-none", range(1, 5))):
        got = choose.candidate_cells("nb201", alpha, readout, 7)
        logp = alpha - np.log(np.exp(alpha[:, list(ops)]).sum(1, keepdims=True))
        every = sorted(itertools.product(ops, repeat=6), key=lambda c: -sum(logp[e, o] for e, o in enumerate(c)))
        assert got == every[:7]
        first = np.asarray(nb201.SPACE.read_out(alpha, readout)).tolist()
        assert list(got[0]) == first  # the read-out's cell leads


@pytest.fixture
def tiny_choice(monkeypatch):
    ENSEMBLES["test-choice"] = ensemble.Ensemble(
        (ensemble.Component("params"), ensemble.Component("az_expressivity", {"init_scheme": "kaiming",
                                                                              "data": "random"})),
        "test", "test")
    monkeypatch.setattr(choose, "ENSEMBLE", "test-choice")
    monkeypatch.setattr(choose, "SCORING", {"batch_size": 2, "cells_per_stage": 1, "channels": 2,
                                            "image_size": 8})
    p = presets.get_preset("nb201-random")
    presets.register(presets.Preset("test-nasi-ens", 1, "test", dict(p.values, objective="nasi+ensemble",
                                                                      candidates=4),
                                    p.space_values, p.provenance))
    yield
    presets.unregister("test-nasi-ens")
    del ENSEMBLES["test-choice"]


def test_search_chooses_the_aggregates_best_candidate(tiny_choice, tmp_path):
    out = tmp_path / "r.json"
    flags = ["--seeds", "2", "--steps", "3", "--batch-size", "4", "--channels", "2", "--cells", "1",
             "--image-size", "8", "--no-progress"]
    assert cli.main(["search", "--preset", "test-nasi-ens", *flags, "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["config"]["objective"] == "nasi+ensemble" and r["config"]["candidates"] == 4
    assert r["choose_time_s"] > 0
    cfg = search.SearchConfig(preset="test-nasi-ens", steps=3, batch_size=4, channels=2, cells_per_stage=1,
                              image_size=8)
    for row in r["seeds"]:
        cands = choose.candidate_cells("nb201", np.asarray(row["alpha_star"]), cfg.readout, 4)
        assert row["nasi_readout"]["ops"] == list(cands[0])
        scfg = ScoreConfig(batch_size=2, cells_per_stage=1, channels=2, image_size=8)
        cols = [score_cells(dataclasses.replace(scfg, proxy="params"), cands, 0, progress=False),
                score_cells(dataclasses.replace(scfg, proxy="az_expressivity", init_scheme="kaiming"),
                            cands, 0, progress=False)]
        agg = rank_aggregate(cols, [1, 1])
        assert row["ops"] == list(cands[int(np.argmax(agg))])
        assert row["choice"] == {"candidates": 4, "chosen_rank_by_probability": int(np.argmax(agg)) + 1}
        assert row["arch"] == nb201.arch_to_str(row["ops"]) and row["params_M"] > 0


def test_candidates_need_the_ensemble_objective():
    with pytest.raises(ValueError, match="candidates must be 1 with objective 'nasi'"):
        search.SearchConfig(candidates=3).validate()
    with pytest.raises(ValueError, match="cannot score"):
        search.SearchConfig(space="darts", objective="nasi+ensemble", candidates=3).validate()
