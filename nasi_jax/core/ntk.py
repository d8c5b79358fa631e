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
``BK x P`` Jacobian is never materialised. With a ``memory_budget`` the chunk size is
chosen on the host from XLA's compiled memory estimate (:func:`plan_exact_trace`), and a
request that cannot fit raises :class:`~nasi_jax.core.memory.MemoryBudgetError` before running.

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

import warnings

import jax
import jax.numpy as jnp
import optax

from nasi_jax.core.memory import MemoryBudgetError, check_fits, compiled_peak_bytes, parse_bytes

__all__ = ["tree_sq_norm", "cross_entropy", "loss_gradient", "nasi_estimator", "exact_trace",
           "plan_exact_trace", "exact_trace_within", "MemoryBudgetError"]

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


def exact_trace(f: Callable, params: PyTree, x: jax.Array, *, chunk_size: int | None = None,
                memory_budget: int | str | None = None) -> jax.Array:
    """Exact empirical NTK trace ``sum_{x,k} ||d f_k(x)/d theta||^2`` (a sum, not a mean).

    Args:
        f: ``f(params, x) -> [B, K]``.
        params: pytree of weights.
        x: inputs ``[B, ...]``.
        chunk_size: Jacobian rows per vmapped VJP (memory ~ ``chunk_size * P``); None or
            a value >= B*K does all rows at once. Must be positive.
        memory_budget: None (default) computes as above, a pure jit-able function. Bytes
            (int or ``"2GiB"``-style string) first plan the chunk size on the host (see
            :func:`plan_exact_trace`; raises :class:`MemoryBudgetError` before running if
            it cannot fit) and then compute the same trace (see :func:`exact_trace_within`).
            Under ``jax.jit`` the plan is made at trace time from shapes, for
            ``exact_trace`` compiled on its own, and ``f`` must not close over traced values.

    Returns:
        scalar trace (float, the dtype of ``f``'s output).
    """
    if memory_budget is not None:
        return exact_trace_within(f, params, x, memory_budget, chunk_size=chunk_size)
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


def _is_traced(tree: PyTree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _lowering_arg(leaf: Any) -> Any:
    """Concrete leaves lower as themselves; traced ones by shape and dtype only."""
    if isinstance(leaf, jax.core.Tracer):
        aval = leaf.aval
        return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=getattr(aval, "weak_type", False))
    return leaf


def _plan(f: Callable, params: PyTree, x: jax.Array, memory_budget: int | str,
          chunk_size: int | None) -> tuple[int, Any]:
    """``(chunk_size, compiled exact_trace)`` fitting ``memory_budget``; see plan_exact_trace."""
    budget = parse_bytes(memory_budget)
    args = jax.tree_util.tree_map(_lowering_arg, (params, x))
    out = jax.eval_shape(f, *args)
    if len(getattr(out, "shape", ())) != 2:
        raise ValueError(f"f must return logits of shape [B, K], got {getattr(out, 'shape', out)}")
    rows = out.shape[0] * out.shape[1]
    if chunk_size is not None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        candidates = [min(chunk_size, rows)]
    else:
        candidates, c = [], rows
        while c >= 1:
            candidates.append(c)
            c //= 2

    def compile_at(c):
        return jax.jit(lambda p, xb: exact_trace(f, p, xb, chunk_size=c)).lower(*args).compile()

    for c in candidates[:-1]:  # all but the last: keep halving while over the budget
        compiled = compile_at(c)
        est = compiled_peak_bytes(compiled)
        if est is None or est <= budget:
            if est is None:
                warnings.warn("exact_trace: this backend gives no memory analysis; the memory "
                              "budget is not checked", RuntimeWarning, stacklevel=3)
            return c, compiled
    c = candidates[-1]
    compiled = compile_at(c)
    if chunk_size is not None:
        what = f"exact_trace with chunk_size={c} (of B*K={rows} Jacobian rows)"
        hint = "use a smaller chunk_size, or leave it None to let memory_budget choose one"
    else:
        what = f"exact_trace even with chunk_size=1 (B*K={rows} Jacobian rows)"
        hint = "reduce the batch size or the network"
    check_fits(compiled, budget, what, hint)
    return c, compiled


def plan_exact_trace(f: Callable, params: PyTree, x: jax.Array, *, memory_budget: int | str,
                     chunk_size: int | None = None) -> int:
    """The largest chunk size whose compiled :func:`exact_trace` fits ``memory_budget``.

    Host-side and before running anything: compiles ``exact_trace`` (``f(params, x) ->
    [B, K]``) with ``chunk_size`` = ``B*K``, ``B*K // 2``, ``B*K // 4``, ... 1 in turn and
    returns the first whose estimated peak device memory
    (:func:`nasi_jax.core.memory.compiled_peak_bytes`: arguments + outputs + XLA temps - aliased)
    is within the budget. The estimate is for ``exact_trace`` compiled on its own; it
    is about ``forward residuals + chunk_size * P`` floats (``P`` parameters), so it
    shrinks with the chunk size down to a floor set by the batch and the network.

    Args:
        f, params, x: as for :func:`exact_trace` (only shapes and dtypes are used).
        memory_budget: bytes, an int or a string like ``"512MB"`` / ``"2GiB"``.
        chunk_size: if given, only this chunk size is checked.

    Returns:
        the chunk size (``1 <= chunk_size <= B*K``).

    Raises:
        MemoryBudgetError: even ``chunk_size=1`` (or the given ``chunk_size``) is over the
            budget; the message gives the estimate and the budget in MiB.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda p, x: jnp.tanh(x @ p["w"])            # [B, 3] -> [B, 2]
        >>> p, x = {"w": jnp.ones((3, 2))}, jnp.ones((2, 3))
        >>> plan_exact_trace(f, p, x, memory_budget="1MiB")  # all B*K = 4 rows at once
        4
        >>> plan_exact_trace(f, p, x, memory_budget=16)
        Traceback (most recent call last):
        ...
        nasi_jax.core.memory.MemoryBudgetError: exact_trace even with chunk_size=1 ... over the budget of 0.00 MiB (16 bytes); ...
    """
    return _plan(f, params, x, memory_budget, chunk_size)[0]


def exact_trace_within(f: Callable, params: PyTree, x: jax.Array, memory_budget: int | str,
                       chunk_size: int | None = None) -> jax.Array:
    """:func:`exact_trace` at the chunk size :func:`plan_exact_trace` picks, within the budget.

    Plans (compiling, raising :class:`MemoryBudgetError` before running if nothing fits)
    and then runs the planned executable, so nothing is compiled twice. The result is the
    same trace as ``exact_trace(f, params, x)``, up to float summation order. Called on
    traced values (inside ``jax.jit``), it plans from shapes and returns
    ``exact_trace(f, params, x, chunk_size=planned)``.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda p, x: jnp.tanh(x @ p["w"])
        >>> p, x = {"w": jnp.ones((3, 2))}, jnp.arange(6.0).reshape(2, 3) / 10
        >>> bool(jnp.allclose(exact_trace_within(f, p, x, "64MiB"), exact_trace(f, p, x)))
        True
    """
    chunk, compiled = _plan(f, params, x, memory_budget, chunk_size)
    if _is_traced((params, x)):
        return exact_trace(f, params, x, chunk_size=chunk)
    return compiled(params, x)
