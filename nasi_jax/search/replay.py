"""Every ceiling from one run: a search with ``mu = 0`` replayed at any ``(mu, nu)``, rule and T.

Because every ``G_t`` is taken at ``alpha_0`` and ``R`` depends on the architecture only
through ``s``, ``G_t(mu, nu) = (1 - mu [s(A_t) > nu_t]) grad_alpha s(A_t)``; with ``mu = 0``
the history's ``G`` is ``grad_alpha s(A_t)``, and ``nu_t`` (fixed, or the running mean of
NASI-ADA) depends only on ``nu`` and the ``s`` history (:mod:`nasi_jax.core.objective`). The
data batch, the Gumbel sample and ``s`` of step ``t`` do not depend on ``mu``, ``nu`` or ``T``
(step keys are ``fold_in(loop_key, t)``), so a replay equals a fresh search with those
settings (tested: identical cells; ``alpha*`` equal to float rounding), and the first
``steps`` of a ``T``-step run are the ``steps``-step search.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.core import objective
from nasi_jax.search.algorithm import eq18_delta, eq18_init, eq18_update
from nasi_jax.search.runners import SearchResult
from nasi_jax.spaces import get_space

__all__ = ["replay"]


@functools.partial(jax.jit, static_argnames=("nu_mode",))
def _replay(s, G, mu, nu, xi, nu_mode):  # alpha* [S, *alpha_shape]
    def one(s_seq, G_seq):
        def body(carry, sg):
            acc, nu_state = carry
            s_t, G_t = sg
            factor = objective.dR_ds(s_t, mu, objective.current_nu(nu_state, nu_mode))
            return (eq18_update(acc, factor * G_t), objective.nu_update(nu_state, s_t)), None
        (acc, _), _ = jax.lax.scan(body, (eq18_init(G_seq[0]), objective.nu_init(nu)), (s_seq, G_seq))
        return eq18_delta(acc, xi)
    return jax.vmap(one)(s, G)


def replay(result: SearchResult, *, mu: float, nu: float, nu_mode: str = "fixed",
           steps: int | None = None, xi: float | None = None, readout: str | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha* [S, *alpha_shape], ops [S, *alpha_shape[:-1]])`` of the search with other
    ``mu``, ``nu``, ``nu_mode`` or a shorter ``T``, from the history of a run with ``mu = 0``
    (module docstring). One ``mu = 0`` run thus serves a whole grid of ``(mu, nu)`` and both
    NASI-FIX and NASI-ADA. ``readout`` and ``xi`` default to the run's.

    Example:
        >>> from nasi_jax.search import SearchConfig, run_search
        >>> cfg = SearchConfig(steps=3, batch_size=4, channels=2, cells_per_stage=1,
        ...                    image_size=8, mu=0.0)
        >>> res = run_search(cfg, seeds=[0])
        >>> alpha, ops = replay(res, mu=2.0, nu=float(res.history["s"].mean()), steps=2)
        >>> alpha.shape, ops.shape
        ((1, 6, 5), (1, 6))
    """
    if result.config.mu != 0:
        raise ValueError(f"replay needs a search run with mu=0 (its G_t are grad_alpha s); this "
                         f"one used mu={result.config.mu}")
    T = result.config.steps if steps is None else int(steps)
    if not 1 <= T <= result.config.steps:
        raise ValueError(f"steps must be in 1..{result.config.steps} (the run's T), got {steps}")
    if nu_mode not in objective.NU_MODES:
        raise ValueError(f"nu_mode must be one of {objective.NU_MODES}, got {nu_mode!r}")
    if not (np.isfinite(mu) and mu >= 0 and np.isfinite(nu) and nu > 0):
        raise ValueError(f"need mu >= 0 and nu > 0 (finite); got mu={mu}, nu={nu}")
    if "G" not in result.history:
        raise ValueError("this search history has no G (recorded since replay exists); run the search again")
    space = get_space(result.config.space)
    readout = readout or result.config.readout
    if readout not in space.readouts:
        raise ValueError(f"readout for space {space.name!r} must be one of {space.readouts}, got {readout!r}")
    s = jnp.asarray(result.history["s"][:, :T], jnp.float32)
    G = jnp.asarray(result.history["G"][:, :T], jnp.float32)
    xi = result.config.xi if xi is None else xi
    alpha = _replay(s, G, float(mu), float(nu), float(xi), nu_mode)
    return np.asarray(alpha), np.asarray(space.read_out(alpha, readout))
