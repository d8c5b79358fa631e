"""NASI proposes, a training-free aggregate chooses (objective ``nasi+ensemble``).

NASI's search ends with ``alpha*``, a distribution over cells: each edge ``e`` picks op ``k``
with probability ``softmax(alpha*_e)_k``. The read-out keeps the most probable cell; here
the ``K`` most probable cells allowed by the read-out (``argmax-no-none``: no ``none`` op)
are the candidates,

    log p(cell) = sum_e log softmax(alpha*_e)[op_e]     (over the allowed ops),

and the aggregate of :data:`ENSEMBLE` (:mod:`nasi_jax.scoring.ensemble`, a sum of log ranks
of several training-free scores) chooses among them. The components score each candidate in
the full benchmark network with one ``theta_0`` and batch (:data:`SCORING_SEED`); one
compilation per component serves every seed, and a cell two seeds propose is scored once.

Example:
    >>> import numpy as np
    >>> from nasi_jax.spaces import get_space
    >>> alpha = np.zeros((6, 5)); alpha[:, 3] = 2.0; alpha[0, 2] = 1.9
    >>> [get_space("nb201").to_text(c) for c in candidate_cells("nb201", alpha, "argmax-no-none", 2)][1]
    '|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
"""

from __future__ import annotations

import time
from typing import NamedTuple, Sequence

import numpy as np

from nasi_jax.spaces import get_space

__all__ = ["ENSEMBLE", "SCORING", "SCORING_SEED", "candidate_cells", "Choice", "choose"]

ENSEMBLE = "ensemble"
"""The aggregate (:data:`nasi_jax.scoring.ENSEMBLES`) that chooses among the candidates."""

SCORING = {"batch_size": 16, "cells_per_stage": 5, "channels": 16, "image_size": 32}
"""The scoring network and batch of the candidates (the league's protocol: the benchmark's
network, 16 examples), whatever the search network's size; the aggregate's components set
their own data and initialisation."""

SCORING_SEED = 0
"""``theta_0`` and the batch the candidates are scored with (the same for every search seed)."""

_MAX_ENUMERATE = 1 << 20


def candidate_cells(space, alpha_star, readout: str, k: int) -> list[tuple[int, ...]]:
    """The ``k`` most probable cells under ``alpha_star`` (``[*alpha_shape]``), most probable
    first, among those the read-out allows (the read-out's own cell is the first).

    Cells are enumerated exactly (NB201: 15 625, or 4 096 without ``none``); ties in
    probability keep the cells' code order.
    """
    space = get_space(space) if isinstance(space, str) else space
    alpha = np.asarray(alpha_star, np.float64)
    K = space.alpha_shape[-1]
    alpha = alpha.reshape(-1, K)
    allowed = np.arange(1, K) if readout == "argmax-no-none" else np.arange(K)
    a = alpha[:, allowed]
    logp = a - a.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))  # log softmax over the allowed ops
    E, A = alpha.shape[0], len(allowed)
    if A ** E > _MAX_ENUMERATE:
        raise ValueError(f"space {space.name!r} has {A}**{E} cells: too many to rank exactly")
    digits = np.stack(np.unravel_index(np.arange(A ** E), (A,) * E), axis=1)  # [cells, E], code order
    total = logp[np.arange(E)[None, :], digits].sum(axis=1)
    top = np.argsort(-total, kind="stable")[:k]
    return [tuple(int(allowed[d]) for d in digits[i]) for i in top]


class Choice(NamedTuple):
    """One seed's choice: the chosen cell, the candidates (most probable first), their
    aggregate among themselves and each component's scores."""

    ops: tuple[int, ...]
    candidates: list[tuple[int, ...]]
    aggregate: np.ndarray
    components: dict


def choose(cfg, alpha_stars: Sequence, *, images=None, labels=None, progress: bool = False,
           ensemble: str | None = None) -> tuple[list[Choice], float]:
    """For each ``alpha*`` (one per seed), its candidates and the aggregate's choice; and the
    seconds the scoring took (compilation included).

    ``cfg``: the search's :class:`~nasi_jax.search.SearchConfig` (``candidates``,
    ``readout``, ``space``). The components score every distinct candidate of all seeds once,
    with ``theta_0`` and the batch of :data:`SCORING_SEED` at :data:`SCORING` (so a cell's
    scores do not depend on the search seed, and the seeds share them); each seed's
    aggregate ranks its own candidates only. Ties go to the more probable candidate.
    ``ensemble``: a name of :data:`nasi_jax.scoring.ENSEMBLES` (default :data:`ENSEMBLE`).
    """
    from nasi_jax.scoring import ENSEMBLES, PROXIES, ScoreConfig, rank_aggregate, score_ensemble

    ensemble = ENSEMBLE if ensemble is None else ensemble
    per_seed = [candidate_cells(cfg.space, a, cfg.readout, cfg.candidates) for a in alpha_stars]
    if cfg.candidates == 1:
        return [Choice(c[0], c, np.zeros(1), {}) for c in per_seed], 0.0
    t0 = time.perf_counter()
    union = sorted({c for cands in per_seed for c in cands})
    scfg = ScoreConfig(space=cfg.space, num_classes=cfg.num_classes, **SCORING)
    _, cols = score_ensemble(scfg, union, SCORING_SEED, name=ensemble, images=images, labels=labels,
                             progress=progress)
    where = {c: i for i, c in enumerate(union)}
    signs = [PROXIES[comp.proxy].sign for comp in ENSEMBLES[ensemble].components]
    out = []
    for cands in per_seed:
        rows = [where[c] for c in cands]
        mine = {p: v[rows] for p, v in cols.items()}
        agg = rank_aggregate(list(mine.values()), signs)
        out.append(Choice(cands[int(np.argmax(agg))], cands, agg, mine))
    return out, time.perf_counter() - t0
