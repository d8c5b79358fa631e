"""NASI's penalised objective and the ceiling nu (fixed or adaptive).

    R(A) = s(A) - mu * max(0, s(A) - nu)                                    (13)

``s`` is the trace estimator (eq. 12), ``mu`` the penalty coefficient, ``nu`` the ceiling
that stands for ``m n / eta`` in the constraint ``||Theta_0||_tr < m n / eta`` (8).

NASI-FIX keeps ``nu`` fixed. NASI-ADA adapts it; the paper's rule is in an appendix that
is not available, so the rule here is **the project's own** (see the README's defaults):

    nu_1 = nu_init,   nu_{t+1} = mean(nu_init, s(A_1), ..., s(A_t))

i.e. the running mean of the initial ceiling and the traces seen so far, so the ceiling
follows the scale of the space's traces. The state is a pytree (vmaps over seeds).

This module is the one place that defines the ceiling rule: the search step, the staged
DARTS step, :func:`nasi_jax.search.replay` and the experiments all use :func:`dR_ds`,
:func:`current_nu` / :func:`nu_update` or :func:`ceiling_path`; presets
(:mod:`nasi_jax.presets`) name the rule (``nu_mode``) and its ``nu``.

Example:
    >>> import jax.numpy as jnp
    >>> st = nu_init(500.0)
    >>> float(current_nu(st, "adaptive"))
    500.0
    >>> st = nu_update(st, jnp.asarray(100.0))
    >>> float(current_nu(st, "adaptive")), float(current_nu(st, "fixed"))
    (300.0, 500.0)
    >>> float(penalised(jnp.asarray(700.0), mu=2.0, nu=500.0))
    300.0
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["NU_MODES", "penalised", "dR_ds", "NuState", "nu_init", "nu_update", "current_nu",
           "ceiling_path"]

NU_MODES = ("fixed", "adaptive")


def penalised(s: jax.Array, mu: float, nu: jax.Array | float) -> jax.Array:
    """``R = s - mu * max(0, s - nu)`` (eq. 13)."""
    return s - mu * jnp.maximum(0.0, s - nu)


def dR_ds(s: jax.Array, mu: float, nu: jax.Array | float) -> jax.Array:
    """``dR/ds = 1 - mu [s > nu]``: the factor that turns ``grad_A s`` into ``grad_A R``."""
    s = jnp.asarray(s)
    return 1.0 - mu * (s > nu).astype(s.dtype)


class NuState(NamedTuple):
    """Running sum and count of ``{nu_init, s(A_1), ..., s(A_t)}``."""

    nu_init: jax.Array
    total: jax.Array
    count: jax.Array


def nu_init(nu: float) -> NuState:
    """State before step 1: ``nu_1 = nu``."""
    nu = jnp.asarray(nu, jnp.float32)
    return NuState(nu, nu, jnp.asarray(1.0, jnp.float32))


def nu_update(state: NuState, s: jax.Array) -> NuState:
    """Add the trace estimate ``s(A_t)`` of the step just taken."""
    return NuState(state.nu_init, state.total + s.astype(jnp.float32), state.count + 1.0)


def current_nu(state: NuState, mode) -> jax.Array:
    """The ceiling for the next step: ``nu_init`` (``'fixed'``) or the running mean
    (``'adaptive'``). ``mode`` may also be a (traced) boolean, True for adaptive, so that
    one compiled step serves both rules."""
    if isinstance(mode, str):
        if mode not in NU_MODES:
            raise ValueError(f"unknown nu mode {mode!r}; choose one of {NU_MODES}")
        mode = mode == "adaptive"
        return state.total / state.count if mode else state.nu_init
    return jnp.where(mode, state.total / state.count, state.nu_init)


def ceiling_path(s: "jax.Array | list[float]", nu: float, mode: str) -> jax.Array:
    """The ceilings ``nu_1 .. nu_T`` a search with this rule used, given its trace estimates
    ``s [..., T]`` (``nu_t`` depends only on ``nu`` and ``s_1 .. s_{t-1}``); ``s > path`` marks
    the steps where the penalty was active.

    Example:
        >>> [float(v) for v in ceiling_path([100.0, 200.0, 0.0], 500.0, "adaptive")]
        [500.0, 300.0, 266.6666564941406]
    """
    s = jnp.asarray(s, jnp.float32)
    lead = s.shape[:-1]

    def body(state, s_t):
        return nu_update(state, s_t), current_nu(state, mode)

    init = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, lead), nu_init(nu))
    _, path = jax.lax.scan(body, init, jnp.moveaxis(s, -1, 0))
    return jnp.moveaxis(path, 0, -1)
