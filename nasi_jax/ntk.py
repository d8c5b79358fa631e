"""Traces of the empirical Neural Tangent Kernel at initialisation.

For a network ``F(theta) = f(theta, X) in R^{B x K}`` (``B`` examples, ``K`` logits) the
empirical NTK is ``Theta_0 = J J^T`` with ``J = dF/dtheta in R^{BK x P}``, so

    tr Theta_0 = ||J||_F^2 = sum_{x, k} ||d f_k(x) / d theta||_2^2.          (exact)

NASI (eq. 12) replaces it by a one-backprop lower bound on a mini-batch:

    s = || (1/B) sum_x grad_theta l(f(x; theta), y) ||_2^2                    (estimator)

with ``l`` the softmax cross-entropy (random labels allowed).

Both are pure functions of ``(variables, x, ...)``. BatchNorm in train mode mixes the
examples of a batch, so the exact trace is taken over rows of the *batch* Jacobian
(one VJP per row ``(x, k)``), never assuming per-example independence. Rows are
processed ``chunk_size`` at a time (``lax.map`` over chunks of a vmapped VJP), so the
peak memory is about ``chunk_size * P`` floats on top of one forward pass; the full
``BK x P`` Jacobian is never materialised.

Example:
    >>> import jax, jax.numpy as jnp
    >>> f = lambda p, x: jnp.tanh(x @ p["w"])            # [B, 3] -> [B, 2]
    >>> p = {"w": jnp.ones((3, 2))}
    >>> x = jnp.arange(6.0).reshape(2, 3) / 10
    >>> t = exact_trace(f, p, x)
    >>> J = jax.jacrev(f)(p, x)["w"]                      # [2, 2, 3, 2]
    >>> bool(jnp.allclose(t, jnp.sum(J ** 2)))
    True
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["tree_sq_norm", "cross_entropy", "loss_gradient", "nasi_estimator", "exact_trace"]

PyTree = Any


def tree_sq_norm(tree: PyTree) -> jax.Array:
    """Squared global L2 norm ``sum_leaves sum(leaf**2)`` of a pytree."""
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; ``logits`` ``[B, K]``, integer ``labels`` ``[B]``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def loss_gradient(f: Callable, params: PyTree, x: jax.Array, y: jax.Array,
                  loss: Callable = cross_entropy) -> PyTree:
    """``grad_theta (1/B) sum_x l(f(theta, x), y)`` at ``params``; ``f(params, x) -> [B, K]``."""
    return jax.grad(lambda p: loss(f(p, x), y))(params)


def nasi_estimator(f: Callable, params: PyTree, x: jax.Array, y: jax.Array,
                   loss: Callable = cross_entropy) -> jax.Array:
    """NASI's trace estimator (eq. 12): squared norm of the mean-loss gradient.

    Args:
        f: ``f(params, x) -> logits [B, K]`` (a pure function; BatchNorm mode is f's choice).
        params: the weights ``theta`` (the gradient is over all their leaves).
        x: inputs ``[B, ...]``; y: integer labels ``[B]`` (may be random).
        loss: ``loss(logits, labels) -> scalar`` mean over the batch.

    Returns:
        scalar ``||grad_theta loss||_2^2``.
    """
    return tree_sq_norm(loss_gradient(f, params, x, y, loss))


def exact_trace(f: Callable, params: PyTree, x: jax.Array, *, chunk_size: int | None = None
                ) -> jax.Array:
    """Exact empirical NTK trace ``sum_{x,k} ||d f_k(x)/d theta||^2`` (a sum, not a mean).

    Args:
        f: ``f(params, x) -> [B, K]``.
        params: pytree of weights.
        x: inputs ``[B, ...]``.
        chunk_size: Jacobian rows per vmapped VJP (memory ~ ``chunk_size * P``); None or
            a value >= B*K does all rows at once. Must be positive.

    Returns:
        scalar trace (float, the dtype of ``f``'s output).
    """
    out, vjp = jax.vjp(lambda p: f(p, x), params)
    if out.ndim != 2:
        raise ValueError(f"f must return logits of shape [B, K], got {out.shape}")
    rows = out.size
    if chunk_size is None:
        chunk_size = rows
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    chunk_size = min(chunk_size, rows)
    n_chunks = -(-rows // chunk_size)
    padded = n_chunks * chunk_size
    # Row r of J is vjp(e_r); padding rows are all-zero cotangents and contribute 0.
    eye_ids = jnp.arange(padded).reshape(n_chunks, chunk_size)

    def row_sq_norms(ids):
        cot = jax.nn.one_hot(ids, rows, dtype=out.dtype).reshape((chunk_size,) + out.shape)
        grads = jax.vmap(lambda c: vjp(c)[0])(cot)
        return sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads))

    return jnp.sum(jax.lax.map(row_sq_norms, eye_ids))
