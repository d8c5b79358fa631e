"""NASI's search (Algorithm 1): the config, the pure algorithm, the runners, replay.

* :mod:`~nasi_jax.search.config`: :class:`SearchConfig` (the maths; defaults from the
  presets) and :class:`Execution` (how it runs, resolved once per backend).
* :mod:`~nasi_jax.search.algorithm`: one seed's ``init``/``step``/``finalize`` and eq. 18.
* :mod:`~nasi_jax.search.runners`: :func:`run_search`, many seeds in one compilation.
* :mod:`~nasi_jax.search.replay`: every ``(mu, nu)`` from one ``mu = 0`` run.
* :mod:`~nasi_jax.search.staged`: the step computed stage by stage (large supernets on CPU).

Example:
    >>> from nasi_jax.search import SearchConfig, run_search
    >>> cfg = SearchConfig(steps=2, batch_size=4, channels=2, cells_per_stage=1, image_size=8)
    >>> res = run_search(cfg, seeds=[0, 1])
    >>> res.ops.shape, len(res.arch_strs)
    ((2, 6), 2)
"""

from nasi_jax.search.algorithm import (TRACE_COUNT, Eq18State, SeedOutput, SeedState, StepMetrics,
                                       alpha_shape, arch_str, eq18_delta, eq18_init, eq18_update,
                                       finalize, init_state, make_apply, make_network,
                                       objective_and_grad, read_out, search_step)
from nasi_jax.search.config import (BN_MODES, GRAD_MODES, LOOPS, SEED_BATCHING, STEP_IMPLS,
                                    Execution, NonFiniteScoreError, SearchConfig, check_seeds)
from nasi_jax.search.replay import replay
from nasi_jax.search.runners import (SearchResult, clear_cache, compiled_host_step, resolve_loop,
                                     resolve_seed_batching, resolve_step_impl, run_search, search_fn)

READOUTS = ("argmax", "argmax-no-none", "darts")
"""Every read-out rule of the built-in spaces (each space lists its own: ``Space.readouts``)."""

__all__ = ["SearchConfig", "Execution", "SearchResult", "run_search", "replay", "read_out",
           "Eq18State", "eq18_init", "eq18_update", "eq18_delta", "StepMetrics", "SeedOutput",
           "SeedState", "init_state", "search_step", "finalize", "objective_and_grad", "make_network",
           "make_apply", "alpha_shape", "arch_str", "search_fn", "clear_cache", "compiled_host_step",
           "resolve_loop", "resolve_seed_batching", "resolve_step_impl", "check_seeds",
           "NonFiniteScoreError", "TRACE_COUNT", "READOUTS", "BN_MODES", "SEED_BATCHING", "LOOPS",
           "GRAD_MODES", "STEP_IMPLS"]
