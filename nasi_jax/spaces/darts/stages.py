"""The DARTS supernet as a chain of :class:`~nasi_jax.spaces.base.Stage`, for the staged step.

:func:`stages` writes ``loss = CE(DartsSupernet(x, A), y)`` (train-mode BatchNorm: batch
statistics, as the search scores) as ``c_i = f_i(theta_i, c_{i-1}, A)``:

* ``stem``: ``x [B, H, W, 3] -> (s, s)`` with ``s = BN(conv3x3(x)) [B, H, W, 3C]``;
* ``cell_i``: ``(s0, s1) -> (s1, cell_i(s0, s1, A[r]))``, ``r = 1`` for the reduction cells
  (:func:`~nasi_jax.spaces.darts.networks.reduction_cells`) and 0 otherwise;
* ``head``: ``(s0, s1) -> mean cross-entropy`` of ``linear(mean_{H, W} s1)``
  (:func:`nasi_jax.core.ntk.cross_entropy`), a scalar.

Each stage owns the supernet's top-level parameter collections of the same name
(``stem_conv``, ``stem_bn``; ``cell_i``; ``classifier``), and composes with the others to
the supernet's own loss. :func:`nasi_jax.search.staged.chain_trace_and_grad` differentiates the chain
stage by stage, so no program larger than one cell is compiled.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.spaces.darts.networks import DartsSupernet
    >>> net = DartsSupernet(channels=2, layers=3)
    >>> sts = stages(net)
    >>> [st.name for st in sts], sts[0].keys
    (['stem', 'cell_0', 'cell_1', 'cell_2', 'head'], ('stem_conv', 'stem_bn'))
    >>> x, y, A = jnp.ones((2, 8, 8, 3)), jnp.array([0, 1]), jnp.full((2, 14, 8), 1 / 8)
    >>> params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    >>> c = x
    >>> for st in sts:
    ...     c = st.apply({k: params[k] for k in st.keys}, c, A, y)
    >>> c.shape, c.dtype                                   # the scalar loss
    ((), dtype('float32'))
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.spaces.base import Stage
from nasi_jax.spaces.darts.networks import DartsSupernet, SearchCell, reduction_cells
from nasi_jax.spaces.darts.ops import Cfg, batch_norm_module, conv, dense, resolve_conv_impl

__all__ = ["stages"]


def _stem_apply(cfg, C, params, x, A, y):
    out = conv(cfg, 3 * C, 3, 1, 1).apply({"params": params["stem_conv"]}, x.astype(cfg.dtype))
    # train mode: batch statistics; the running averages are created and discarded
    out, _ = batch_norm_module(True, cfg.dtype).apply({"params": params["stem_bn"]}, out,
                                                     mutable=["batch_stats"])
    return out, out


def _cell_apply(cell, name, which, params, carry, A, y):
    s0, s1 = carry
    out, _ = cell.apply({"params": params[name]}, s0, s1, A[which], True, mutable=["batch_stats"])
    return s1, out


def _head_apply(cfg, num_classes, params, carry, A, y):
    _, s1 = carry
    z = jnp.mean(s1, axis=(1, 2))
    logits = dense(cfg, num_classes, z.shape[-1], "classifier").apply({"params": params["classifier"]}, z)
    return ntk.cross_entropy(logits, y)


def stages(net: DartsSupernet) -> list[Stage]:
    """The stages of ``net`` (train-mode BatchNorm, as the search scores): stem, cells, head;
    ``apply(params_i, carry, A [2, 14, 8], y [B]) -> carry``. The same list (so the same
    compiled programs) for every net of the same configuration. TypeError unless ``net`` is a
    :class:`DartsSupernet` with ``fixed=None``."""
    if not isinstance(net, DartsSupernet) or net.fixed is not None:
        raise TypeError("stages() takes the DARTS supernet (DartsSupernet with fixed=None)")
    return _stages(net.channels, net.layers, net.num_classes, net.init_scheme, jnp.dtype(net.dtype),
                   resolve_conv_impl(net.conv_impl))


@functools.lru_cache(maxsize=None)
def _stages(channels, layers, num_classes, init_scheme, dtype, conv_impl) -> list[Stage]:
    cfg = Cfg(init_scheme, dtype, conv_impl)
    out = [Stage("stem", ("stem_conv", "stem_bn"), functools.partial(_stem_apply, cfg, channels))]
    C, reduction_prev = channels, False
    for i in range(layers):
        reduction = i in reduction_cells(layers)
        C = 2 * C if reduction else C
        cell = SearchCell(C, reduction, reduction_prev, None, cfg)
        out.append(Stage(f"cell_{i}", (f"cell_{i}",),
                         functools.partial(_cell_apply, cell, f"cell_{i}", 1 if reduction else 0)))
        reduction_prev = reduction
    out.append(Stage("head", ("classifier",), functools.partial(_head_apply, cfg, num_classes)))
    return out


def clear_cache() -> None:
    """Forget the stage lists kept by :func:`stages` (one per supernet configuration)."""
    _stages.cache_clear()
