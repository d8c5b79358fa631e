"""The DARTS supernet as a graph of :class:`~nasi_jax.spaces.base.Stage`, for the staged step.

:func:`stages` writes ``loss = CE(DartsSupernet(x, A), y)`` (train-mode BatchNorm: batch
statistics, as the search scores) as small stages ``c_i = f_i(theta_i, c_in(i), a_i)``:

* ``stem``: ``x [B, H, W, 3] -> s = BN(conv3x3(x)) [B, H, W, 3C]`` (read as both inputs of
  the first cell);
* per cell ``i``: ``cell_i/pre0`` and ``cell_i/pre1`` (the preprocessing of the cell's two
  inputs), the 14 mixed edges ``cell_i/edge_j_k`` (node ``j`` -> node ``k``, weighted by
  ``a = A[r, e]``, ``r = 1`` in the reduction cells
  (:func:`~nasi_jax.spaces.darts.networks.reduction_cells`), 0 otherwise), the node sums
  ``cell_i/node_k`` (``k = 2..5``) and ``cell_i/out`` (their concatenation);
* ``head``: ``mean cross-entropy`` of ``linear(mean_{H, W} s)`` of the last cell
  (:func:`nasi_jax.core.ntk.cross_entropy`), a scalar.

Each stage owns the supernet's parameters of the same name (``stem_conv`` and ``stem_bn``;
the subtrees ``cell_i/preprocess0``, ``cell_i/edge_j_k``, ...; ``classifier``), and the graph
computes the supernet's own loss. The edges of one cell type and size are one function of
the same shapes, so :func:`nasi_jax.search.staged.chain_trace_and_grad` compiles their
programs once: no program larger than one mixed edge is compiled.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.search import staged
    >>> from nasi_jax.spaces.darts.networks import DartsSupernet
    >>> net = DartsSupernet(channels=2, layers=3)
    >>> sts = stages(net)
    >>> [st.name for st in sts[:5]], len(sts)      # 3 cells of 21 stages, stem and head
    (['stem', 'cell_0/pre0', 'cell_0/pre1', 'cell_0/edge_0_2', 'cell_0/edge_1_2'], 65)
    >>> x, y, A = jnp.ones((2, 8, 8, 3)), jnp.array([0, 1]), jnp.full((2, 14, 8), 1 / 8)
    >>> params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    >>> loss = staged.forward(sts, params, x, y, A)
    >>> loss.shape, loss.dtype
    ((), dtype('float32'))
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.spaces.base import Stage
from nasi_jax.spaces.darts.genotype import NUM_NODES
from nasi_jax.spaces.darts.networks import DartsSupernet, MixedEdge, reduction_cells
from nasi_jax.spaces.darts.ops import (Cfg, FactorizedReduce, ReLUConvBN, batch_norm_module, conv, dense,
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


def _edge_apply(edge, train, params, x, a, y):
    out, _ = edge.apply({"params": params}, x, a, train, mutable=["batch_stats"])
    return out


def _sum(params, xs, a, y):
    out = xs[0]
    for t in xs[1:]:
        out = out + t
    return out


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
    if kind == "edge":
        return functools.partial(_edge_apply, MixedEdge(*args), train)
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
            edges = []
            for j in range(k):
                stride = 2 if reduction and j < 2 else 1
                edges.append(add(f"{cell}/edge_{j}_{k}", _fn("edge", train, C, stride, None, cfg), [states[j]],
                                 a_index=(r, e), path=(cell, f"edge_{j}_{k}"),
                                 vjp_apply=_fn("edge", train, C, stride, None, rev_cfg) if taps else None))
                e += 1
            states.append(add(f"{cell}/node_{k}", _sum, edges))
        prev_prev, prev = prev, add(f"{cell}/out", _concat, states[2:])
        reduction_prev = reduction
    out.append(Stage("head", ("classifier",), functools.partial(_head_apply, cfg, num_classes), (prev,)))
    return out


def clear_cache() -> None:
    """Forget the stage lists kept by :func:`stages` (one per supernet configuration) and the
    stage functions they share."""
    _stages.cache_clear()
    _fn.cache_clear()
