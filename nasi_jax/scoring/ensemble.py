"""Aggregates of training-free scores: several proxies combined by their ranks.

A proxy ranks cells well where it is informative and badly where it is blind; proxies that
look at different things (the expressivity of the features, the conditioning of the
gradients, the size) fail on different cells. AZ-NAS (Lee & Ham, CVPR 2024) combines them by
the **non-linear rank aggregation**

    ensemble(c) = sum_m log(rank_m(c) / N),

``rank_m`` the ascending average rank (ties share it; 1 = worst, N = best) of
``sign_m * score_m`` among the ``N`` cells scored together: a cell must rank well on every
component, since one low rank costs much (``log(1/N)``), while a sum of ranks forgives it.
Higher is better; the maximum is 0 (best on every component).

An aggregate is relative to the cells scored together (``N`` and the ranks): the same cell
gets another value in another population, and only the order within one call means
anything. :data:`ENSEMBLES` holds the named aggregates; each component is a proxy of
:data:`nasi_jax.scoring.PROXIES` with the :class:`~nasi_jax.scoring.ScoreConfig` settings it
is scored under (its own protocol: e.g. AZ-NAS's scores on Kaiming-normal weights), and
:func:`score_ensemble` scores every component with one compilation each.

Example:
    >>> import numpy as np
    >>> a, b = np.array([3.0, 1.0, 2.0]), np.array([10.0, 30.0, 20.0])
    >>> np.round(rank_aggregate([a, b], [1, -1]), 3)          # cell 0 is best on both
    array([ 0.   , -2.197, -0.811])
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from nasi_jax import records
from nasi_jax.scoring.cells import ScoreError

__all__ = ["Component", "Ensemble", "ENSEMBLES", "rank_aggregate", "average_ranks", "component_path",
           "score_ensemble"]


class Component(NamedTuple):
    """One proxy of an aggregate and the settings (``ScoreConfig`` fields) it is scored with."""

    proxy: str
    settings: Mapping = {}


class Ensemble(NamedTuple):
    """A named aggregate: its components, what it is, and how the components were chosen."""

    components: tuple[Component, ...]
    description: str
    provenance: str


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ascending ranks 1..N of ``x``, ties sharing their average (``scipy.stats.rankdata``).

    Example:
        >>> average_ranks(np.array([5.0, 1.0, 5.0, 2.0]))
        array([3.5, 1. , 3.5, 2. ])
    """
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
        raise ScoreError("rank_aggregate needs finite scores (the harness floors undefined ones)")
    from scipy import stats  # a dependency of jax; imported here to keep import time low
    return stats.rankdata(x)


def rank_aggregate(columns: Sequence[np.ndarray], signs: Sequence[int]) -> np.ndarray:
    """``sum_m log(rank(sign_m * columns[m]) / N)`` over the ``N`` cells (module docstring).

    ``columns``: one array ``[N]`` per component; ``signs``: +1 where larger is better, -1
    where smaller is. Returns ``[N]``, higher is better, at most 0.
    """
    if len(columns) != len(signs) or not columns:
        raise ScoreError("rank_aggregate needs one sign per column and at least one column")
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ScoreError("rank_aggregate: the columns score different numbers of cells")
    return sum(np.log(average_ranks(s * np.asarray(c, np.float64)) / n) for c, s in zip(columns, signs))


_AZ = {"init_scheme": "kaiming", "data": "random", "batch_size": 64}
_AGNOSTIC = {"data": "random", "batch_size": 16}

ENSEMBLES: dict[str, Ensemble] = {
    "ensemble": Ensemble(
        (Component("synflow", _AGNOSTIC), Component("meco", _AGNOSTIC),
         Component("az_expressivity", dict(_AGNOSTIC, init_scheme="kaiming")),
         Component("az_trainability", dict(_AGNOSTIC, init_scheme="kaiming"))),
        "data-agnostic: SynFlow, MeCo, AZ-NAS's expressivity and trainability, on 16 Gaussian "
        "inputs (AZ-NAS's scores on Kaiming-normal weights); no data, no labels",
        "experiments/league.py --cells 1000 (docs/runs/league_1000.json): of the data-agnostic "
        "scores (synflow, flops, params and every data-reading proxy on Gaussian inputs), the "
        "set of up to 4 whose aggregate has the best Spearman rho with CIFAR-10 validation "
        "accuracy on the 500 tune cells; test accuracy not read"),
    "az-nas": Ensemble(
        (Component("az_expressivity", _AZ), Component("az_progressivity", _AZ),
         Component("az_trainability", _AZ), Component("flops")),
        "AZ-NAS's aggregate (Lee & Ham, CVPR 2024): expressivity, progressivity, trainability "
        "at its protocol (64 Gaussian inputs, Kaiming-normal weights) and FLOPs",
        "the paper's choice"),
}


def component_path(output: str, proxy: str) -> str:
    """Where a component's resumable CSV lives beside the aggregate's ``output``."""
    stem, _ = os.path.splitext(output)
    return f"{stem}.{proxy}.csv"


def score_ensemble(cfg, cells: Sequence, seed: int = 0, *, name: str = "az-nas",
                   output: str | None = None, index: Sequence[int] | None = None,
                   index_kind: str = "code", images=None, labels=None, progress: bool = True,
                   **kw) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score ``cells`` with every component of :data:`ENSEMBLES` ``[name]`` and aggregate.

    ``cfg`` (a :class:`~nasi_jax.scoring.ScoreConfig`) gives the settings the components
    share (space, network size, batch, data); each component's own settings replace them.
    With ``output``, each component streams to :func:`component_path` (resumable, as
    ``nasi score``), and ``output`` is written at the end (atomically) as
    ``index,arch_str,ensemble,<component>...``. Returns ``(aggregate [N], {proxy: [N]})``.
    """
    from nasi_jax.scoring.scorer import PROXIES, score_cells
    from nasi_jax.spaces import get_space

    if name not in ENSEMBLES:
        raise ScoreError(f"unknown ensemble {name!r}; choose one of {sorted(ENSEMBLES)}")
    ens = ENSEMBLES[name]
    cols = {}
    for comp in ens.components:
        ccfg = dataclasses.replace(cfg, proxy=comp.proxy, **dict(comp.settings)).validate()
        cols[comp.proxy] = score_cells(ccfg, cells, seed, index=index, index_kind=index_kind,
                                       output=None if output is None else component_path(output, comp.proxy),
                                       images=images if ccfg.data != "random" else None,
                                       labels=labels if ccfg.data == "real" else None,
                                       progress=progress, **kw)
    agg = rank_aggregate(list(cols.values()), [PROXIES[p].sign for p in cols])
    if output is not None:
        space = get_space(cfg.space)
        ops = [space.parse(c) if isinstance(c, str) else tuple(c) for c in cells]
        ids = list(index) if index is not None else [space.ops_to_code(o) for o in ops]
        lines = [",".join(["index", "arch_str", "ensemble", *cols])]
        for i, o in enumerate(ops):
            lines.append(",".join([str(ids[i]), space.to_text(o), repr(float(agg[i])),
                                   *(repr(float(v[i])) for v in cols.values())]))
        records.write_text_atomic(output, "\n".join(lines) + "\n")
    return agg, cols
