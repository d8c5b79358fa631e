"""Training-free scores of discrete cells: space-free proxies, the scorer, cell lists.

* :mod:`~nasi_jax.scoring.proxies`: every score as a pure function of a network, its
  initial parameters and one batch, and their registry (:func:`proxies.register`).
* :mod:`~nasi_jax.scoring.scorer`: :func:`score_cells`, every cell of a space with one
  compiled function (``lax.switch`` on the op indices), sharded over devices.
* :mod:`~nasi_jax.scoring.cells`: which cells (:func:`parse_cells`) and the resumable CSV.
* :mod:`~nasi_jax.scoring.ensemble`: aggregates of several proxies by their ranks
  (:func:`score_ensemble`, the named aggregates :data:`ENSEMBLES`).

Example:
    >>> from nasi_jax.scoring import ScoreConfig, score_cells
    >>> cfg = ScoreConfig(batch_size=2, channels=2, cells_per_stage=1, image_size=8)
    >>> s = score_cells(cfg, [(3, 0, 3, 1, 0, 1), (1, 1, 1, 1, 1, 1)], seed=0, progress=False)
    >>> s.shape
    (2,)
"""

from nasi_jax.scoring import ensemble, proxies
from nasi_jax.scoring.cells import ScoreError, parse_cells, read_scores
from nasi_jax.scoring.ensemble import ENSEMBLES, rank_aggregate, score_ensemble
from nasi_jax.scoring.scorer import (PROXIES, TRACE_COUNT, Proxy, ScoreConfig, clear_cache,
                                     init_scoring, make_score_fn, score_cells)

__all__ = ["ScoreConfig", "ScoreError", "score_cells", "parse_cells", "read_scores", "PROXIES", "Proxy",
           "TRACE_COUNT", "make_score_fn", "init_scoring", "clear_cache", "proxies", "ensemble",
           "ENSEMBLES", "rank_aggregate", "score_ensemble"]
