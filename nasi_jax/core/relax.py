"""Gumbel-softmax relaxation of a factorised categorical over ops per edge.

With logits ``alpha`` ``[E, K]`` and Gumbel noise ``g ~ Gumbel(0, 1)`` of the same shape,

    soft:  A = softmax((alpha + g) / tau)                      (rows sum to 1)
    hard:  A = one_hot(argmax(alpha + g)) + soft - stop_gradient(soft)

``hard`` (the project default) is a discrete architecture in the forward pass with the
straight-through gradient of the soft sample; its argmax is an exact sample from
``p_alpha`` (the Gumbel-max trick).

Example:
    >>> import jax, jax.numpy as jnp
    >>> g = gumbel_noise(jax.random.PRNGKey(0), (6, 5))
    >>> A = relaxed_sample(jnp.zeros((6, 5)), g, tau=1.0, hard=True)
    >>> A.shape, bool(jnp.allclose(A.max(-1), 1.0)), bool(jnp.allclose(A.sum(-1), 1.0))
    ((6, 5), True, True)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gumbel_noise", "relaxed_sample"]


def gumbel_noise(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """I.i.d. standard Gumbel noise ``-log(-log U)``."""
    return jax.random.gumbel(key, shape, dtype)


def relaxed_sample(alpha: jax.Array, g: jax.Array, *, tau: float = 1.0, hard: bool = True
                   ) -> jax.Array:
    """Gumbel-softmax sample ``[E, K]`` from logits ``alpha`` and noise ``g``.

    ``tau`` > 0 is the temperature; ``hard`` selects straight-through one-hot samples.
    """
    soft = jax.nn.softmax((alpha + g) / tau, axis=-1)
    if not hard:
        return soft
    hard_sample = jax.nn.one_hot(jnp.argmax(alpha + g, axis=-1), alpha.shape[-1], dtype=soft.dtype)
    return hard_sample + soft - jax.lax.stop_gradient(soft)
