"""The NB201 supernet as a graph of :class:`~nasi_jax.spaces.base.Stage`, for the staged step.

:func:`stages` writes ``loss = CE(NB201Network(x, A), y)`` (train-mode BatchNorm: batch
statistics, as the search scores) as a chain of small stages ``c_i = f_i(theta_i, c_{i-1}, A)``:

* ``stem``: ``x [B, 32, 32, 3] -> BN(conv3x3(x)) [B, 32, 32, C]`` (parameters ``stem_conv``,
  ``BatchNorm_0``);
* ``cell_s_n`` (stage ``s`` = 0, 1, 2, cell ``n`` < N): one cell, all six mixed edges weighted
  by all of ``A [6, 5]``, ``[B, H, W, C_s] -> [B, H, W, C_s]`` (parameters: the subtree
  ``cell_s_n``);
* ``reduce_1``, ``reduce_2``: the residual reduction blocks, halving H and W and doubling C;
* ``head``: ``mean cross-entropy`` of ``linear(mean_{H, W} relu(BN(c)))`` (``BatchNorm_1``,
  ``classifier``), a scalar.

The N cells of one stage are one function of the same shapes, so
:func:`nasi_jax.search.staged.chain_trace_and_grad` compiles their programs once: seven small
programs of each kind (stem, three cell widths, two reductions, head) instead of one program
with 3 N cells unrolled. That is what makes compiling, and loading from the compilation cache,
fast (docs/performance.md, "Loading the compiled step from the cache"), at a slower step.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.search import staged
    >>> from nasi_jax.spaces.nb201.networks import NB201Network
    >>> net = NB201Network(channels=2, cells_per_stage=2)
    >>> sts = stages(net)
    >>> [st.name for st in sts]
    ['stem', 'cell_0_0', 'cell_0_1', 'reduce_1', 'cell_1_0', 'cell_1_1', 'reduce_2', 'cell_2_0', 'cell_2_1', 'head']
    >>> x, y, A = jnp.ones((2, 8, 8, 3)), jnp.array([0, 1]), jnp.full((6, 5), 0.2)
    >>> params = net.init(jax.random.PRNGKey(0), x, A, train=False)["params"]
    >>> loss = staged.forward(sts, params, x, y, A)
    >>> bool(jnp.allclose(loss, __import__("nasi_jax").core.ntk.cross_entropy(
    ...     net.apply({"params": params}, x, A, train=True, mutable=["batch_stats"])[0], y)))
    True
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.spaces.base import Stage
from nasi_jax.spaces.nb201.networks import Cell, NB201Network, ResBlock, head, stem

__all__ = ["stages", "clear_cache"]


class _Stem(nn.Module):
    channels: int
    init_scheme: str
    dtype: Any
    conv_impl: str

    @nn.compact
    def __call__(self, x):
        return stem(x, self.channels, True, self.init_scheme, self.dtype, self.conv_impl)


class _Head(nn.Module):
    num_classes: int
    init_scheme: str
    dtype: Any

    @nn.compact
    def __call__(self, x):
        return head(self, x, self.num_classes, True, self.init_scheme, self.dtype)


def _stem_apply(module, params, x, a, y):
    out, _ = module.apply({"params": params}, x, mutable=["batch_stats"])
    return out


def _cell_apply(module, params, x, a, y):
    out, _ = module.apply({"params": params}, x, a, True, mutable=["batch_stats"])
    return out


def _reduce_apply(module, params, x, a, y):  # A is not read
    out, _ = module.apply({"params": params}, x, True, mutable=["batch_stats"])
    return out


def _head_apply(module, params, x, a, y):
    # the supernet's second top-level BatchNorm is the head module's first
    variables = {"params": {"BatchNorm_0": params["BatchNorm_1"], "classifier": params["classifier"]}}
    logits, _ = module.apply(variables, x, mutable=["batch_stats"])
    return ntk.cross_entropy(logits, y)


def stages(net: NB201Network) -> list[Stage]:
    """The stages of ``net`` (see the module docstring); ``apply(params_i, carry, a, y) -> value``.
    The same list (so the same compiled programs) for every net of one configuration.
    TypeError unless ``net`` is an :class:`NB201Network` supernet (``fixed=None``)."""
    if not isinstance(net, NB201Network) or net.fixed is not None:
        raise TypeError("stages() takes the NB201 supernet (NB201Network with fixed=None)")
    return _stages(net.channels, net.cells_per_stage, net.num_classes, net.init_scheme, jnp.dtype(net.dtype),
                   net.conv_impl)


@functools.lru_cache(maxsize=None)
def _stages(channels, cells_per_stage, num_classes, init_scheme, dtype, conv_impl) -> list[Stage]:
    out = [Stage("stem", ("stem_conv", "BatchNorm_0"),
                 functools.partial(_stem_apply, _Stem(channels, init_scheme, dtype, conv_impl)))]
    for s, width in enumerate((channels, 2 * channels, 4 * channels)):
        if s > 0:
            out.append(Stage(f"reduce_{s}", (), functools.partial(
                _reduce_apply, ResBlock(width, init_scheme, dtype, conv_impl)), path=(f"reduce_{s}",)))
        cell = functools.partial(_cell_apply, Cell(width, None, init_scheme, dtype, conv_impl))
        out.extend(Stage(f"cell_{s}_{n}", (), cell, path=(f"cell_{s}_{n}",)) for n in range(cells_per_stage))
    out.append(Stage("head", ("BatchNorm_1", "classifier"),
                     functools.partial(_head_apply, _Head(num_classes, init_scheme, dtype))))
    return out


def clear_cache() -> None:
    """Forget the stage lists kept by :func:`stages` (one per supernet configuration)."""
    _stages.cache_clear()
