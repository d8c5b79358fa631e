"""NASI's search step on a supernet written as a chain of stages, compiled stage by stage.

The search step (:func:`nasi_jax.search.objective_and_grad`) is one program: a forward
pass, ``v = grad_theta L``, and ``grad_A <grad_theta L(theta, A), v>`` through a forward-mode
pass and its reverse. For DARTS' supernet (8 cells x 14 edges x 7 ops) that program is so
large that XLA:CPU runs out of memory compiling it (docs/darts.md). This module computes the
same ``(s, grad_A s)`` as a chain of small programs, one per stage and pass, so that nothing
larger than one stage (for DARTS, one cell) is ever compiled. A space supplies its chain by
:meth:`nasi_jax.spaces.base.Space.stages` (DARTS: :mod:`nasi_jax.spaces.darts.stages`).

The network is a chain of stages ``c_i = f_i(theta_i, c_{i-1}, A)`` (:class:`Stage`; for
DARTS: the stem ``c_0 = (y, y)``, the cells ``(s0, s1) -> (s1, cell(s0, s1, A))`` and the head:
global pool, linear, mean cross-entropy ``L``). With the stage inputs kept from the forward pass:

1. ``v = grad_theta L``: reverse through the stages, each stage's VJP recomputing its
   forward pass (``(v_i, cbar_{i-1}) = vjp f_i (cbar_i)``); ``s = ||v||^2`` (eq. 12).
2. ``D(A) = <grad_theta L(theta, A), v> = d/de L(theta + e v, A)``: tangents forward,
   ``cdot_i = jvp f_i ((theta_i, c_{i-1}), (v_i, cdot_{i-1}))``, ``D = cdot_n``.
3. ``grad_A D``: reverse through the JVP'd stages, from ``(cbar_n, cdotbar_n) = (0, 1)``;
   ``grad_A D = sum_i Abar_i``, and ``grad_A s = 2 grad_A D`` (``v`` held fixed), as in
   ``grad_mode='fwd-rev'``.

Each stage costs about one more forward pass than the one-program step (recomputation), in
exchange for programs one stage in size. Equal to the one-program step to float rounding
(tested on a small supernet).

Example (a toy chain; ``trace_and_grad(net, params, x, y, A)`` does the same on the DARTS
supernet ``net = search.make_network(SearchConfig(space="darts"))``):
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.core import ntk
    >>> from nasi_jax.search import staged
    >>> sts = [staged.Stage("lin", ("w",), lambda p, x, A, y: jnp.tanh(A[0, 0] * x @ p["w"])),
    ...        staged.Stage("head", ("out",), lambda p, h, A, y: ntk.cross_entropy(h @ p["out"], y))]
    >>> params = {"w": jnp.ones((3, 4)) / 3, "out": jnp.eye(4)[:, :2]}
    >>> x, y, A = jnp.ones((2, 3)), jnp.array([0, 1]), jnp.ones((1, 1))
    >>> s, ds_dA = staged.chain_trace_and_grad(sts, params, x, y, A)
    >>> def reference(A_):  # eq. 12 and its gradient in one program
    ...     loss = lambda p: ntk.cross_entropy(jnp.tanh(A_[0, 0] * x @ p["w"]) @ p["out"], y)
    ...     return ntk.tree_sq_norm(jax.grad(loss)(params))
    >>> bool(jnp.allclose(s, reference(A))), bool(jnp.allclose(ds_dA, jax.grad(reference)(A), rtol=1e-4))
    (True, True)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.spaces import get_space
from nasi_jax.spaces.base import Space, Stage

__all__ = ["Stage", "stages", "trace_and_grad", "chain_trace_and_grad"]


def stages(net, space: str | Space = "darts") -> list[Stage]:
    """The supernet ``net`` of ``space`` as a chain of :class:`Stage` (train-mode BatchNorm, mean
    cross-entropy at the end): ``get_space(space).stages(net)``. For DARTS the same list (so
    the same compiled programs) for every net of one configuration."""
    return get_space(space).stages(net)


def _sub(params, keys):
    return {k: params[k] for k in keys}


@functools.lru_cache(maxsize=None)
def _compiled(stage_apply):
    """The four jitted programs of one stage (cached per stage function)."""
    f = stage_apply

    def fwd(p, c, A, y):
        return f(p, c, A, y)

    def bwd(p, c, A, y, cbar):  # (pbar, cbar_in)
        _, vjp = jax.vjp(lambda p_, c_: f(p_, c_, A, y), p, c)
        return vjp(cbar)

    def tangent(p, v, c, cdot, A, y):
        return jax.jvp(lambda p_, c_: f(p_, c_, A, y), (p, c), (v, cdot))[1]

    def hbwd(p, v, c, cdot, A, y, cbar, cdotbar):  # (Abar, cbar_in, cdotbar_in)
        def h(A_, c_, cdot_):
            return jax.jvp(lambda p_, cc: f(p_, cc, A_, y), (p, c_), (v, cdot_))
        _, vjp = jax.vjp(h, A, c, cdot)
        return vjp((cbar, cdotbar))

    return jax.jit(fwd), jax.jit(bwd), jax.jit(tangent), jax.jit(hbwd)


def trace_and_grad(net, params: Any, x: jax.Array, y: jax.Array, A: jax.Array,
                   space: str | Space = "darts") -> tuple[jax.Array, jax.Array]:
    """``(s, grad_A s)`` with ``s = ||grad_theta CE(net(x, A), y)||^2`` (eq. 12), stage by stage.

    ``net``: the supernet of ``space`` (default DARTS); ``params``: its parameters;
    ``x [B, H, W, 3]``, ``y [B]``; ``A`` of the space's ``alpha_shape`` (DARTS ``[2, 14, 8]``:
    normal, reduce). Each stage's programs are compiled once per shape and reused.
    """
    return chain_trace_and_grad(stages(net, space), params, x, y, A)


def chain_trace_and_grad(sts: list[Stage], params: Any, x: jax.Array, y: jax.Array,
                         A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`trace_and_grad` for any chain of stages (the last one returns the scalar loss);
    ``params`` holds every stage's ``keys``."""
    fns = [_compiled(st.apply) for st in sts]
    ps = [_sub(params, st.keys) for st in sts]
    carries = [x]
    for (fwd, *_), p in zip(fns[:-1], ps[:-1]):
        carries.append(fwd(p, carries[-1], A, y))
    # 1. v = grad_theta L, reverse through the stages
    cbar = jnp.ones((), jnp.float32)
    vs = [None] * len(sts)
    for i in reversed(range(len(sts))):
        vs[i], cbar = fns[i][1](ps[i], carries[i], A, y, cbar)
    s = sum(ntk.tree_sq_norm(v) for v in vs)
    # 2. tangents of the stage outputs along v (the input x has none)
    cdots = [jnp.zeros_like(x)]
    for i in range(len(sts) - 1):
        cdots.append(fns[i][2](ps[i], vs[i], carries[i], cdots[i], A, y))
    # 3. grad_A D through the JVP'd stages, from (cbar, cdotbar) = (0, 1) at the loss
    cbar, cdotbar = jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32)
    total = jnp.zeros_like(A)
    for i in reversed(range(len(sts))):
        Abar, cbar, cdotbar = fns[i][3](ps[i], vs[i], carries[i], cdots[i], A, y, cbar, cdotbar)
        total = total + Abar
    return s, 2.0 * total
