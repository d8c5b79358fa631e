"""Proposition 2 measured: how much the NTK trace moves when the inputs change distribution.

NASI's Proposition 2 (PAPER.md §5): for inputs with ``||x|| <= 1`` and a ``gamma``-Lipschitz
activation with ``|sigma(x)| <= |x|``, the per-entry NTK trace under two input
distributions ``P`` and ``Q`` differs by at most ``n0^-1 * Z * D(gamma)``, with
``n0`` the input dimension, ``Z = int |P - Q|`` and ``D(1) = L`` (the depth). We read
"per-entry trace" as the expected NTK diagonal of one output,
``T(P) = E_{x~P} Theta(x, x)`` (``tr Theta / (N K)`` for N examples from P), and measure

    Delta = |T(P) - T(Q)|       against       bound = Z * L / n0     (gamma = 1)

with ``L`` the number of weight layers. The paper states ``D`` only at ``gamma = 1``
(PAPER.md), so the bound is evaluated for ReLU and linear layers only (both 1-Lipschitz with
``|sigma(x)| <= |x|``); :func:`assumptions_hold` says which stax architectures qualify.
When ``P`` is an empirical distribution (finitely many images) and ``Q`` has a density
(Gaussian inputs), the two are mutually singular and ``Z = 2``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.theory import agnostic
    >>> x = agnostic.into_unit_ball(jax.random.normal(jax.random.PRNGKey(0), (5, 8)))
    >>> bool(jnp.all(jnp.linalg.norm(x, axis=1) <= 1 + 1e-6))
    True
    >>> agnostic.bound(z=2.0, depth=4, n0=192)
    0.041666666666666664
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nasi_jax.theory import spaces

__all__ = ["LIPSCHITZ_OPS", "assumptions_hold", "bound", "depth", "gaussian_like",
           "into_unit_ball", "per_entry_trace"]

LIPSCHITZ_OPS = ("relu", "linear")  # 1-Lipschitz with |sigma(x)| <= |x|


def assumptions_hold(space: str, arch: str) -> bool:
    """True for mlp architectures whose activations are all in :data:`LIPSCHITZ_OPS`."""
    return space == "mlp" and all(o in LIPSCHITZ_OPS for o in spaces.parse(space, arch))


def depth(space: str, arch: str) -> int:
    """Number of weight layers ``L`` (the mlp's hidden layers plus the readout)."""
    if space != "mlp":
        raise ValueError("the bound is evaluated on the mlp space only")
    return len(spaces.parse(space, arch)) + 1


def bound(*, z: float, depth: int, n0: int) -> float:
    """``Z * D(1) / n0`` with ``D(1) = depth``."""
    if not 0.0 <= z <= 2.0:
        raise ValueError(f"Z = int |P - Q| lies in [0, 2], got {z}")
    if int(n0) < 1 or int(depth) < 1:
        raise ValueError(f"n0 and depth must be positive, got n0={n0}, depth={depth}")
    return float(z) * int(depth) / int(n0)


def into_unit_ball(x: jax.Array, scale: float | None = None) -> jax.Array:
    """Flatten ``x [N, ...]`` to ``[N, d]`` and divide by ``scale`` (default: the largest norm),
    so that ``||x|| <= 1`` holds for every row."""
    x = jnp.reshape(x, (x.shape[0], -1))
    norms = jnp.linalg.norm(x, axis=1)
    scale = jnp.max(norms) if scale is None else scale
    if not float(scale) > 0:
        raise ValueError("into_unit_ball: every input is zero (or scale <= 0); nothing to scale")
    return x / scale


def gaussian_like(key: jax.Array, x: jax.Array) -> jax.Array:
    """I.i.d. ``N(0, s^2 I)`` inputs of ``x``'s shape ``[N, d]``, ``s^2 = E||x||^2 / d``
    (the same mean squared norm), with rows longer than 1 shrunk onto the unit sphere."""
    if x.ndim != 2:
        raise ValueError(f"gaussian_like takes flattened inputs [N, d], got shape {x.shape}: "
                         "flatten them first (into_unit_ball does)")
    s2 = jnp.mean(jnp.sum(jnp.square(x), axis=1)) / x.shape[1]
    g = jax.random.normal(key, x.shape, x.dtype) * jnp.sqrt(s2)
    norms = jnp.linalg.norm(g, axis=1, keepdims=True)
    return g / jnp.maximum(norms, 1.0)


def per_entry_trace(k: jax.Array) -> jax.Array:
    """``tr(k) / N`` for one output's NTK ``k [N, N]``: the sample mean of ``Theta(x, x)``."""
    return jnp.trace(k) / k.shape[0]
