"""The DARTS supernet as a graph of :class:`~nasi_jax.spaces.base.Stage`, for the staged step.

:func:`stages` writes ``loss = CE(DartsSupernet(x, A), y)`` (train-mode BatchNorm: batch
statistics, as the search scores) as small stages ``c_i = f_i(theta_i, c_in(i), a_i)``:

* ``stem``: ``x [B, H, W, 3] -> s = BN(conv3x3(x)) [B, H, W, 3C]`` (read as both inputs of
  the first cell);
* per cell ``i``: ``cell_i/pre0`` and ``cell_i/pre1`` (the preprocessing of the cell's two
  inputs); per mixed edge ``j -> k`` its seven ops ``cell_i/edge_j_k/<op>`` (``none`` adds
  nothing), each ``a * op(c_j)`` with ``a = A[r, e, m]`` (edge ``e``, op ``m``; ``r = 1`` in
  the reduction cells (:func:`~nasi_jax.spaces.darts.networks.reduction_cells`), 0
  otherwise), so ``linear_in_a``; the node sums ``cell_i/node_k`` (``k = 2..5``, the ops'
  outputs added edge by edge as :class:`~nasi_jax.spaces.darts.networks.MixedEdge` adds
  them) and ``cell_i/out`` (their concatenation);
* ``head``: ``mean cross-entropy`` of ``linear(mean_{H, W} s)`` of the last cell
  (:func:`nasi_jax.core.ntk.cross_entropy`), a scalar.

Each stage owns the supernet's parameters of the same name (``stem_conv`` and ``stem_bn``;
the subtrees ``cell_i/preprocess0``, ``cell_i/edge_j_k/sep_conv_3x3``, ...; ``classifier``;
ops without parameters own none), and the graph computes the supernet's own loss. The ops
of one kind, stride and size are one function of the same shapes, so
:func:`nasi_jax.search.staged.chain_trace_and_grad` compiles their programs once: no program
larger than one op is compiled. One stage per op, not per edge, lets the staged step skip
the ops a hard sample leaves out (weight exactly 0): per edge one op runs its four programs
and six run one forward-mode program (docs/darts.md has the timings).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.search import staged
    >>> from nasi_jax.spaces.darts.networks import DartsSupernet
    >>> net = DartsSupernet(channels=2, layers=3)
    >>> sts = stages(net)
    >>> [st.name for st in sts[2:5]], len(sts)     # 3 cells of 2 + 14 x 7 + 4 + 1 stages, stem, head
    (['cell_0/pre1', 'cell_0/edge_0_2/max_pool_3x3', 'cell_0/edge_0_2/avg_pool_3x3'], 317)
    >>> sts[3].a_index, sts[3].linear_in_a          # normal cell, edge 0, op 1
    ((0, 0, 1), True)
    >>> x, y, A = jnp.ones((2, 8, 8, 3)), jnp.array([0, 1]), jnp.full((2, 14, 8), 1 / 8)
    >>> params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    >>> loss = staged.forward(sts, params, x, y, A)
    >>> loss.shape, loss.dtype
    ((), dtype('float32'))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.spaces.base import Stage
from nasi_jax.spaces.darts.genotype import NUM_NODES, NUM_OPS, OPS
from nasi_jax.spaces.darts.networks import DartsSupernet, reduction_cells
from nasi_jax.spaces.darts.ops import (Cfg, FactorizedReduce, Op, ReLUConvBN, batch_norm_module, conv, dense,
                                       resolve_conv_impl)

__all__ = ["stages"]


# BatchNorm: ``train`` uses batch statistics; otherwise the running averages at their initial
# values (mean 0, variance 1), as a freshly initialised network in eval mode. Either way the
# running averages are created here (the collection is mutable) and discarded.

def _stem_apply(cfg, C, train, params, x, a, y):
    out = conv(cfg, 3 * C, 3, 1, 1).apply({"params": params["stem_conv"]}, x.astype(cfg.dtype))
    out, _ = batch_norm_module(train, cfg.dtype).apply({"params": params["stem_bn"]}, out,
                                                      mutable=["batch_stats"])
    return out


def _module_apply(module, train, params, x, a, y):  # a preprocessing stage (a is not read)
    out, _ = module.apply({"params": params}, x, train, mutable=["batch_stats"])
    return out


def _op_apply(op, train, params, x, a, y):  # one op of a mixed edge, times its weight a (a scalar)
    out, _ = op.apply({"params": params}, x, train, mutable=["batch_stats"])
    return a.astype(out.dtype) * out


def _sum(params, xs, a, y):
    out = xs[0]
    for t in xs[1:]:
        out = out + t
    return out


def _node_sum(sizes, params, xs, a, y):
    """A node: the sum of its edges, each the sum of its ops' weighted outputs (``xs``, edge by
    edge, ``sizes`` ops each), added in :class:`MixedEdge`'s order."""
    edges, i = [], 0
    for n in sizes:
        edges.append(_sum(params, xs[i:i + n], a, y))
        i += n
    return _sum(params, edges, a, y)


def _concat(params, xs, a, y):
    return jnp.concatenate(xs, axis=-1)


def _head_apply(cfg, num_classes, params, s1, a, y):
    z = jnp.mean(s1, axis=(1, 2))
    logits = dense(cfg, num_classes, z.shape[-1], "classifier").apply({"params": params["classifier"]}, z)
    return ntk.cross_entropy(logits, y)


@functools.lru_cache(maxsize=None)
def _fn(kind: str, train: bool, *args):
    """One function object per kind, BatchNorm mode and module configuration, so that stages of
    one shape share their compiled programs."""
    if kind == "op":  # args: op name, C, stride, cfg
        return functools.partial(_op_apply, _op(*args), train)
    cfg = args[1]
    module = FactorizedReduce(args[0], cfg.cell_affine, cfg) if kind == "reduce" else \
        ReLUConvBN(args[0], 1, 1, 0, cfg.cell_affine, cfg)
    return functools.partial(_module_apply, module, train)


def stages(net: DartsSupernet, train: bool = True) -> list[Stage]:
    """The stages of ``net``, see the module docstring; ``apply(params_i, carry, a, y) -> value``.
    ``train``: BatchNorm with batch statistics (default, as the search scores), else with the
    initial running averages (``net.apply(..., train=False)`` of a fresh network). The same
    list (so the same compiled programs) for every net of the same configuration. TypeError
    unless ``net`` is a :class:`DartsSupernet` with ``fixed=None``."""
    if not isinstance(net, DartsSupernet) or net.fixed is not None:
        raise TypeError("stages() takes the DARTS supernet (DartsSupernet with fixed=None)")
    return _stages(net.channels, net.layers, net.num_classes, net.init_scheme, jnp.dtype(net.dtype),
                   resolve_conv_impl(net.conv_impl), net.cell_affine, bool(train))


@functools.lru_cache(maxsize=None)
def _stages(channels, layers, num_classes, init_scheme, dtype, conv_impl, cell_affine=False,
            train=True) -> list[Stage]:
    # xla-taps: the edges' depthwise convolutions in their forward-mode form for the programs
    # that take a jvp, and in their reverse-mode form for the first VJP (nasi_jax.spaces.darts.taps)
    taps = conv_impl == "xla-taps"
    cfg = Cfg(init_scheme, dtype, "xla-taps-jvp" if taps else conv_impl, cell_affine)
    rev_cfg = Cfg(init_scheme, dtype, conv_impl, cell_affine)
    out = [Stage("stem", ("stem_conv", "stem_bn"), functools.partial(_stem_apply, cfg, channels, train))]

    def add(name, apply, inputs, **kw):
        out.append(Stage(name, (), apply, tuple(inputs), **kw))
        return len(out) - 1

    C, reduction_prev, prev_prev, prev = channels, False, 0, 0
    for i in range(layers):
        reduction = i in reduction_cells(layers)
        C = 2 * C if reduction else C
        r, cell = (1 if reduction else 0), f"cell_{i}"
        states = [add(f"{cell}/pre0", _fn("reduce" if reduction_prev else "relu_conv_bn", train, C, cfg), [prev_prev],
                      path=(cell, "preprocess0")),
                  add(f"{cell}/pre1", _fn("relu_conv_bn", train, C, cfg), [prev], path=(cell, "preprocess1"))]
        e = 0
        for k in range(2, 2 + NUM_NODES):
            terms = []
            for j in range(k):
                stride = 2 if reduction and j < 2 else 1
                for m in range(1, NUM_OPS):  # `none` (m = 0) adds nothing
                    owns = _has_params(OPS[m], C, stride, cfg)
                    terms.append(add(f"{cell}/edge_{j}_{k}/{OPS[m]}", _fn("op", train, OPS[m], C, stride, cfg),
                                     [states[j]], a_index=(r, e, m),
                                     path=(cell, f"edge_{j}_{k}", OPS[m]) if owns else None,
                                     vjp_apply=_fn("op", train, OPS[m], C, stride, rev_cfg) if taps else None,
                                     linear_in_a=True))
                e += 1
            states.append(add(f"{cell}/node_{k}", _node_fn((NUM_OPS - 1,) * k), terms))
        prev_prev, prev = prev, add(f"{cell}/out", _concat, states[2:])
        reduction_prev = reduction
    out.append(Stage("head", ("classifier",), functools.partial(_head_apply, cfg, num_classes), (prev,)))
    return out


def _op(name: str, C: int, stride: int, cfg: Cfg) -> Op:
    """The op as a mixed edge builds it (:class:`~nasi_jax.spaces.darts.networks.MixedEdge`)."""
    return Op(name, C, stride, affine=cfg.cell_affine, search=True, cfg=cfg)


@functools.lru_cache(maxsize=None)
def _node_fn(sizes: tuple[int, ...]):
    """One node-sum function per edge sizes (BatchNorm plays no part: one for both modes)."""
    return functools.partial(_node_sum, sizes)


@functools.lru_cache(maxsize=None)
def _has_params(op: str, C: int, stride: int, cfg: Cfg) -> bool:
    """Whether the op (as a mixed edge builds it) has parameters: pools only with affine
    BatchNorms, ``skip_connect`` only at stride 2."""
    module = _op(op, C, stride, cfg)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, C), cfg.dtype), False))
    return bool(jax.tree_util.tree_leaves(shapes.get("params", {})))


def clear_cache() -> None:
    """Forget the stage lists kept by :func:`stages` (one per supernet configuration) and the
    stage functions they share."""
    _stages.cache_clear()
    _fn.cache_clear()
    _has_params.cache_clear()
    _node_fn.cache_clear()
