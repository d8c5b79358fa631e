"""NASI's search step on a supernet written as a graph of stages, compiled stage by stage.

The search step (:func:`nasi_jax.search.objective_and_grad`) is one program: a forward
pass, ``v = grad_theta L``, and ``grad_A <grad_theta L(theta, A), v>`` through a forward-mode
pass and its reverse. For DARTS' supernet (8 cells x 14 edges x 7 ops) that program is so
large that XLA:CPU runs out of memory compiling it (docs/darts.md). This module computes the
same ``(s, grad_A s)`` with small programs, four per stage, so that nothing larger than
one stage (for DARTS, one mixed edge) is ever compiled. A space supplies its graph by
:meth:`nasi_jax.spaces.base.Space.stages` (DARTS: :mod:`nasi_jax.spaces.darts.stages`).

The network is a graph of stages ``c_i = f_i(theta_i, c_{in(i)}, A)`` (:class:`Stage`; a chain
when each reads the one before). For DARTS: the stem, then per cell its two preprocessing
convolutions, its 14 mixed edges (each reading one earlier node and its own row of ``A``),
the four node sums and the concatenation; the head (global pool, linear, mean cross-entropy
``L``) last. With the stage inputs kept from the forward pass:

1. ``v = grad_theta L``: reverse through the stages, each stage's VJP recomputing its
   forward pass (``(v_i, cbar_in(i)) = vjp f_i (cbar_i)``, the cotangents of a value summed
   over the stages that read it); ``s = ||v||^2`` (eq. 12).
2. ``D(A) = <grad_theta L(theta, A), v> = d/de L(theta + e v, A)``: tangents forward,
   ``cdot_i = jvp f_i ((theta_i, c_in(i)), (v_i, cdot_in(i)))``, ``D = cdot_n``.
3. ``grad_A D``: reverse through the JVP'd stages, from ``(cbar_n, cdotbar_n) = (0, 1)``;
   ``grad_A D = sum_i Abar_i``, and ``grad_A s = 2 grad_A D`` (``v`` held fixed), as in
   ``grad_mode='fwd-rev'``.

Stages of one function and one shape share their four compiled programs (jax caches them
per shape): the 14 edges' ``sep_conv_3x3`` in a DARTS normal cell are one program, not fourteen.

A stage ``linear_in_a`` (``c_i = a g_i(theta_i, c_in(i))`` with the scalar ``a = A[a_index]``:
one op of a DARTS edge) whose ``a`` is exactly 0, as the unchosen ops of a hard sample
(``one_hot + soft - stop_gradient(soft)``: exactly 0 off the chosen op), has
``c_i = 0``, ``v_i = 0``, ``cdot_i = 0`` and sends zero cotangents back, whatever
``g_i``; only ``d/da = <cbar_i, g_i> + <cdotbar_i, jvp g_i . cdot_in(i)>`` is needed. The
step skips such a stage's four programs and runs that one (forward mode, no transposition):
for DARTS, six of an edge's seven ops (``skip=False`` runs everything; the same values to
float rounding, tested).

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
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.core import ntk
from nasi_jax.records import usable_cores
from nasi_jax.spaces import get_space
from nasi_jax.spaces.base import Space, Stage

__all__ = ["Stage", "stages", "trace_and_grad", "chain_trace", "chain_trace_and_grad", "forward", "default_workers"]


def stages(net, space: str | Space = "darts") -> list[Stage]:
    """The supernet ``net`` of ``space`` as a graph of :class:`Stage` (train-mode BatchNorm, mean
    cross-entropy at the end): ``get_space(space).stages(net)``. For DARTS the same list (so
    the same compiled programs) for every net of one configuration."""
    return get_space(space).stages(net)


def _sub(params, st: Stage):
    if st.path is not None:
        for k in st.path:
            params = params[k]
        return params
    return {k: params[k] for k in st.keys}


def _inputs(sts: list[Stage]) -> tuple[tuple[int, ...], ...]:
    """Each stage's input indices, the graph checked (cached per stage list: the staged step
    calls it every step)."""
    try:
        return _checked_inputs(tuple(sts))
    except TypeError:  # a stage with an unhashable field (e.g. inputs given as a list)
        return _checked_inputs.__wrapped__(tuple(sts))


@functools.lru_cache(maxsize=64)
def _checked_inputs(sts: tuple[Stage, ...]) -> tuple[tuple[int, ...], ...]:
    ins = []
    for i, st in enumerate(sts):
        src = (i - 1,) if st.inputs is None else tuple(st.inputs)
        if not src or any(j < -1 or j >= i for j in src):
            raise ValueError(f"stage {i} ({st.name!r}) takes inputs {src}: each must be -1 (the "
                             f"input x) or an earlier stage")
        ins.append(src)
    owned = [("/".join(st.path),) if st.path is not None else tuple(st.keys) for st in sts]
    flat = sorted((name, st.name) for st, names in zip(sts, owned) for name in names)
    for (a, sa), (b, sb) in zip(flat, flat[1:]):
        if b == a or b.startswith(a + "/"):
            raise ValueError(f"stages {sa!r} and {sb!r} both own parameters {b!r}: every parameter "
                             f"must belong to exactly one stage")
    unread = set(range(len(sts) - 1)) - {j for src in ins for j in src}
    if unread:
        raise ValueError(f"stages {sorted(unread)} feed no later stage: every stage but the last "
                         f"(the loss) must be an input of another")
    return tuple(ins)


def _carry(get, src):
    """The carry of a stage reading the values ``src`` (indices; ``-1`` the input x), each
    fetched by ``get``."""
    return get(src[0]) if len(src) == 1 else tuple(get(j) for j in src)


def _feeds(ins) -> dict[int, list[tuple[int, int]]]:
    """Per value ``j``: the ``(stage k, position p)`` reading it, ``k`` descending (the order the
    reverse passes sum its cotangent in, whatever order the stages finish in)."""
    feeds: dict[int, list[tuple[int, int]]] = {}
    for k in reversed(range(len(ins))):
        for pos, j in enumerate(ins[k]):
            feeds.setdefault(j, []).append((k, pos))
    return feeds


def _keep(parts: dict, k: int, src, outs) -> None:
    """Keep stage ``k``'s input cotangents ``outs`` (one per reverse quantity: ``cbar`` and, in
    the reverse pass over the tangents, ``cdotbar``) in ``parts``, keyed ``(k, position,
    which)``, until the stage that made that input takes them (:func:`_cotangent`); the input
    x's are dropped."""
    for which, out in enumerate(outs):
        for pos, j in enumerate(src):
            if j >= 0:
                parts[(k, pos, which)] = out if len(src) == 1 else out[pos]


def _cotangent(get, parts: dict, feeds_j, which: int, like):
    """The cotangent of one value: the sum, in ``feeds_j``'s order, of the ``which``-th input
    cotangent of every stage reading it, each taken out of ``parts`` (freed) once ``get`` has
    seen that stage finish. A reader switched off (:func:`_switched_off`) passes back exact
    zeros and keeps none; zeros like ``like`` when no reader kept one."""
    total = None
    for k, pos in feeds_j:
        get(k)  # waits for stage k
        c = parts.pop((k, pos, which), None)
        if c is not None:
            total = c if total is None else jax.tree_util.tree_map(jnp.add, total, c)
    return jax.tree_util.tree_map(jnp.zeros_like, like) if total is None else total


def _drop(get, parts: dict, feeds_j) -> None:
    """Free, once they have run, what the readers ``feeds_j`` of a switched-off stage kept for
    it: it takes nothing."""
    for k, pos in feeds_j:
        get(k)
        for which in (0, 1):
            parts.pop((k, pos, which), None)


def _switched_off(sts: list[Stage], A) -> frozenset:
    """The stages whose value is exactly zero at this ``A``: ``linear_in_a`` ones whose entry
    ``A[a_index]`` is 0 (a hard sample's unchosen ops). Empty when ``A`` is being traced (its
    values are unknown) or no stage is ``linear_in_a``. ValueError when such a stage's
    ``a_index`` does not pick one entry of ``A``."""
    if not any(st.linear_in_a for st in sts):
        return frozenset()
    try:
        a = np.asarray(A)
    except jax.errors.TracerArrayConversionError:
        return frozenset()
    off = set()
    for i, st in enumerate(sts):
        if st.linear_in_a:
            if st.a_index is None or np.ndim(a[st.a_index]) != 0:
                raise ValueError(f"stage {st.name!r} is linear_in_a, so its a_index must pick one entry of "
                                 f"A (shape {a.shape}), got {st.a_index}")
            if a[st.a_index] == 0:
                off.add(i)
    return frozenset(off)


@functools.lru_cache(maxsize=256)
def _zeros(shapes) -> Any:
    """One shared (immutable) zero value per ``(treedef, ((shape, dtype), ...))``."""
    treedef, leaves = shapes
    return jax.tree_util.tree_unflatten(treedef, [jnp.zeros(sh, dt) for sh, dt in leaves])


def _zero_value(prog, *args):
    """Zeros of ``prog(*args)``'s shape and dtype, without running it (jax caches the
    abstract evaluation of a jitted program; the zeros are shared per shape)."""
    out = jax.eval_shape(prog, *args)
    return _zeros((jax.tree_util.tree_structure(out),
                   tuple((o.shape, np.dtype(o.dtype)) for o in jax.tree_util.tree_leaves(out))))


def default_workers() -> int:
    """Threads a staged step runs its stages on by default: 2 where this process may use two
    cores or more on a CPU backend, else 1. XLA:CPU already spreads most programs over the
    cores, so a third thread gained 1-3 % more in ``benchmarks/darts_step_workers.py``
    (docs/darts.md), within the machine's drift, while every thread holds more values alive
    at once."""
    return 2 if usable_cores() >= 2 and jax.default_backend() == "cpu" else 1


def _run_stages(order, run: Callable, workers: int, seed: dict) -> dict:
    """``{**seed, i: run(i, get)}`` for the stages ``order``, ``get(j)`` the value of ``seed``
    or of a stage listed before (it waits for that stage to finish).

    With ``workers`` > 1 the stages are queued in ``order`` on that many threads, so a stage
    starts as soon as a thread is free, and waits there for its inputs: independent stages
    run side by side (jax releases the GIL while a program runs). No deadlock: a thread waits
    only on stages queued before its own, which have started (first in, first out). The
    results are the same bits as one by one: every stage runs the same program on the same
    inputs, and :func:`_cotangent` sums in a fixed order. jax's thread-local settings
    (``jax.default_device``, ``jax.default_matmul_precision`` and other context managers)
    do not reach the worker threads: set them globally, or use one worker. An exception in a
    stage reaches the caller; the stages not yet started are cancelled.

    Example (two stages that read only the input, then one that reads both):
        >>> out = _run_stages([0, 1, 2], lambda i, get: get(-1) + i if i < 2 else get(0) * get(1), 2, {-1: 1})
        >>> out
        {-1: 1, 0: 1, 1: 2, 2: 2}
    """
    if workers < 1:
        raise ValueError(f"workers={workers}: give 1 (stages one by one) or more threads")
    if workers == 1:
        out = dict(seed)
        for i in order:
            out[i] = run(i, out.__getitem__)
        return out
    futs: dict = {}

    def get(j):
        return seed[j] if j in seed else futs[j].result()

    pool = ThreadPoolExecutor(workers, thread_name_prefix="nasi-stage")
    try:
        for i in order:
            futs[i] = pool.submit(lambda i=i: jax.block_until_ready(run(i, get)))
        out = {i: f.result() for i, f in futs.items()}
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return {**seed, **out}


def _programs(st: Stage):
    return _compiled(st.apply, st.vjp_apply or st.apply)


@functools.lru_cache(maxsize=None)
def _compiled(stage_apply, vjp_apply):
    """The jitted programs of one stage function (cached per function; jax caches each
    program per input shape, so stages of one shape share them): the four of the module
    docstring, ``bwd`` differentiating ``vjp_apply`` (the same function in its reverse-mode
    form, :class:`Stage`), and ``dzero``: ``d/da (<cbar, f> + <cdotbar, fdot>)`` of a stage
    linear in its scalar ``a`` where ``a = 0`` (so ``v = 0``): ``<cbar, f(a=1)> + <cdotbar,
    jvp_c f(a=1) . cdot>``, forward mode alone."""
    f = stage_apply

    def fwd(p, c, A, y):
        return f(p, c, A, y)

    def bwd(p, c, A, y, cbar):  # (pbar, cbar_in)
        _, vjp = jax.vjp(lambda p_, c_: vjp_apply(p_, c_, A, y), p, c)
        return vjp(cbar)

    def tangent(p, v, c, cdot, A, y):
        return jax.jvp(lambda p_, c_: f(p_, c_, A, y), (p, c), (v, cdot))[1]

    def hbwd(p, v, c, cdot, A, y, cbar, cdotbar):  # (Abar, cbar_in, cdotbar_in)
        def h(A_, c_, cdot_):
            return jax.jvp(lambda p_, cc: f(p_, cc, A_, y), (p, c_), (v, cdot_))
        _, vjp = jax.vjp(h, A, c, cdot)
        return vjp((cbar, cdotbar))

    def dzero(p, c, cdot, a, y, cbar, cdotbar):
        one = jnp.ones_like(a)
        val, tan = jax.jvp(lambda c_: f(p, c_, one, y), (c,), (cdot,))
        dots = jax.tree_util.tree_map(lambda u, w: jnp.vdot(u, w), (cbar, cdotbar), (val, tan))
        return sum(jax.tree_util.tree_leaves(dots)).astype(a.dtype)

    return jax.jit(fwd), jax.jit(bwd), jax.jit(tangent), jax.jit(hbwd), jax.jit(dzero)


def trace_and_grad(net, params: Any, x: jax.Array, y: jax.Array, A: jax.Array,
                   space: str | Space = "darts") -> tuple[jax.Array, jax.Array]:
    """``(s, grad_A s)`` with ``s = ||grad_theta CE(net(x, A), y)||^2`` (eq. 12), stage by stage.

    ``net``: the supernet of ``space`` (default DARTS); ``params``: its parameters;
    ``x [B, H, W, 3]``, ``y [B]``; ``A`` of the space's ``alpha_shape`` (DARTS ``[2, 14, 8]``:
    normal, reduce). Each stage's programs are compiled once per shape and reused.
    """
    return chain_trace_and_grad(stages(net, space), params, x, y, A)


def forward(sts: list[Stage], params: Any, x: jax.Array, y: jax.Array, A: jax.Array) -> jax.Array:
    """The last stage's value (the loss) of the graph ``sts`` at ``(params, x, y, A)``, traceable
    (no program is compiled here): the function :func:`chain_trace_and_grad` differentiates.
    It runs each stage's ``apply`` (the forward-mode form where a stage has two, as DARTS'
    edges with ``conv_impl='xla-taps'``: ``jax.jvp`` of it works, a plain ``jax.grad`` does not)."""
    ins, vals = _inputs(sts), {-1: x}
    for i, st in enumerate(sts):
        a = A if st.a_index is None else A[st.a_index]
        vals[i] = st.apply(_sub(params, st), _carry(vals.__getitem__, ins[i]), a, y)
    return vals[len(sts) - 1]


def _forward_and_v(sts, params, x, y, A, workers, skip):
    """The forward pass (stage values kept) and 1. ``v = grad_theta L`` (per stage), reverse
    through the stages, each stage's VJP recomputing its forward pass. A stage switched off
    (``skip``, :func:`_switched_off`) has the value zero and ``v`` None (zero), and runs nothing."""
    n, ins = len(sts), _inputs(sts)
    feeds, parts = _feeds(ins), {}
    fns = [_programs(st) for st in sts]
    ps = [_sub(params, st) for st in sts]
    As = [A if st.a_index is None else A[st.a_index] for st in sts]
    off = _switched_off(sts, A) if skip else frozenset()

    def fwd(i, get):
        args = (ps[i], _carry(get, ins[i]), As[i], y)
        return _zero_value(fns[i][0], *args) if i in off else fns[i][0](*args)

    vals = _run_stages(range(n - 1), fwd, workers, {-1: x})
    dt = jax.eval_shape(sts[-1].apply, ps[-1], _carry(vals.__getitem__, ins[-1]), As[-1], y).dtype  # the loss's
    ones = jnp.ones((), dt)

    def bwd(i, get):  # v_i, once every stage reading c_i has run (cbar_in(i) kept in parts)
        if i in off:
            _drop(get, parts, feeds[i])
            return None
        cbar = ones if i == n - 1 else _cotangent(get, parts, feeds[i], 0, vals[i])
        v, cin = fns[i][1](ps[i], _carry(vals.__getitem__, ins[i]), As[i], y, cbar)
        _keep(parts, i, ins[i], (cin,))
        return v

    back = _run_stages(reversed(range(n)), bwd, workers, {})
    vs = [back[i] for i in range(n)]
    return fns, ps, As, vals, vs, dt, feeds, off


def chain_trace(sts: list[Stage], params: Any, x: jax.Array, y: jax.Array, A: jax.Array,
                workers: int | None = None, skip: bool = True) -> jax.Array:
    """``s = ||grad_theta L||^2`` (eq. 12) alone, stage by stage: the forward pass and one
    reverse pass, about a third of :func:`chain_trace_and_grad`'s work (no ``grad_A``). The
    same value as :func:`chain_trace_and_grad`'s ``s`` (the same programs). Arguments
    (``skip`` too) as :func:`chain_trace_and_grad`'s; returns a scalar of the loss's dtype.

    Example (the toy chain of the module docstring):
        >>> import jax.numpy as jnp
        >>> from nasi_jax.core import ntk
        >>> sts = [Stage("lin", ("w",), lambda p, x, A, y: jnp.tanh(A[0, 0] * x @ p["w"])),
        ...        Stage("head", ("out",), lambda p, h, A, y: ntk.cross_entropy(h @ p["out"], y))]
        >>> params = {"w": jnp.ones((3, 4)) / 3, "out": jnp.eye(4)[:, :2]}
        >>> x, y, A = jnp.ones((2, 3)), jnp.array([0, 1]), jnp.ones((1, 1))
        >>> bool(chain_trace(sts, params, x, y, A) == chain_trace_and_grad(sts, params, x, y, A)[0])
        True
    """
    vs = _forward_and_v(sts, params, x, y, A, default_workers() if workers is None else workers, skip)[4]
    return sum(ntk.tree_sq_norm(v) for v in vs if v is not None)


def chain_trace_and_grad(sts: list[Stage], params: Any, x: jax.Array, y: jax.Array,
                         A: jax.Array, workers: int | None = None, skip: bool = True
                         ) -> tuple[jax.Array, jax.Array]:
    """:func:`trace_and_grad` for any graph of stages (:class:`Stage`; a chain when no stage
    names its ``inputs``; the last one returns the scalar loss); ``params`` holds every stage's
    parameters. The reverse passes run a stage once every stage reading its value has run, and
    sum that value's cotangent in a fixed order (the readers' indices, descending).

    ``workers``: threads the stages run on, independent stages side by side (default
    :func:`default_workers`); any number gives the same bits (tested; :func:`_run_stages`
    says what does not reach the threads).

    ``skip`` (default True): a stage ``linear_in_a`` whose entry of ``A`` is exactly 0 (with
    hard samples, the unchosen ops of every DARTS edge) runs none of its four programs: its
    value, ``v``, tangent and input cotangents are exact zeros; its ``d/da`` comes from its
    ``dzero`` program (forward mode). The same ``s`` and ``grad_A s`` to float rounding as
    ``skip=False`` (tested), in a fraction of the time. Only where ``A`` is concrete (the host
    loop), not while it is being traced."""
    n, ins = len(sts), _inputs(sts)
    workers = default_workers() if workers is None else workers
    fns, ps, As, vals, vs, dt, feeds, off = _forward_and_v(sts, params, x, y, A, workers, skip)
    s = sum(ntk.tree_sq_norm(v) for v in vs if v is not None)

    # 2. tangents of the stage outputs along v (the input x has none)
    def tangent(i, get):
        if i in off:
            return vals[i]  # the shared zeros
        return fns[i][2](ps[i], vs[i], _carry(vals.__getitem__, ins[i]), _carry(get, ins[i]), As[i], y)

    cdots = _run_stages(range(n - 1), tangent, workers, {-1: jnp.zeros_like(x)})
    # 3. grad_A D through the JVP'd stages, from (cbar, cdotbar) = (0, 1) at the loss
    zero, one = jnp.zeros((), dt), jnp.ones((), dt)

    parts: dict = {}

    def hbwd(i, get):  # Abar_i (cbar_in(i), cdotbar_in(i) kept in parts)
        cbar, cdotbar = (zero, one) if i == n - 1 else (_cotangent(get, parts, feeds[i], k, vals[i]) for k in (0, 1))
        c, cdot = _carry(vals.__getitem__, ins[i]), _carry(cdots.__getitem__, ins[i])
        if i in off:
            return fns[i][4](ps[i], c, cdot, As[i], y, cbar, cdotbar)
        Abar, cin, cdotin = fns[i][3](ps[i], vs[i], c, cdot, As[i], y, cbar, cdotbar)
        _keep(parts, i, ins[i], (cin, cdotin))
        return Abar

    back = _run_stages(reversed(range(n)), hbwd, workers, {})
    total = jnp.zeros_like(A)
    for i in reversed(range(n)):
        Abar = back[i]
        total = total + Abar if sts[i].a_index is None else total.at[sts[i].a_index].add(Abar)
    return s, 2.0 * total
