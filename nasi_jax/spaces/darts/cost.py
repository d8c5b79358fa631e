"""The size of DARTS' evaluation network (:class:`~nasi_jax.spaces.darts.networks.NetworkCIFAR`):
trainable parameters and FLOPs of a genotype, as the literature reports them (without the
auxiliary head unless asked).

Example:
    >>> from nasi_jax.spaces.darts.genotype import DARTS_V2
    >>> count_params(DARTS_V2, channels=2, layers=3), count_params(DARTS_V2, channels=2, layers=3, auxiliary=True)
    (1118, 407912)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from nasi_jax.spaces.darts.genotype import Genotype, parse_genotype
from nasi_jax.spaces.darts.networks import AuxiliaryHeadCIFAR, NetworkCIFAR

__all__ = ["count_params", "count_flops"]


def count_params(genotype: Genotype | str, *, channels: int = 36, layers: int = 20,
                 num_classes: int = 10, auxiliary: bool = False, image_size: int = 32) -> int:
    """Trainable parameters of :class:`NetworkCIFAR` (convolutions, BN scale and bias,
    linear layers; not the BN running statistics), without the auxiliary head unless
    ``auxiliary``. Computed from the modules' own parameter shapes under
    :func:`jax.eval_shape` (nothing is computed); the head is counted on its own input
    shape (``[1, 8, 8, 4 * len(reduce_concat) * channels]``), which equals counting the
    network built with ``auxiliary=True``. Results are cached per argument set.

    Example:
        >>> from nasi_jax.spaces.darts.genotype import DARTS_V2
        >>> count_params(DARTS_V2, channels=2, layers=3)
        1118
    """
    g = parse_genotype(genotype)
    n = _count_network(g, channels, layers, num_classes, image_size)
    if auxiliary:
        n += _count_aux_head(4 * len(g.reduce_concat) * channels, num_classes)
    return n


def count_flops(genotype: Genotype | str, *, channels: int = 36, layers: int = 20,
                num_classes: int = 10, image_size: int = 32) -> float:
    """FLOPs of one :class:`NetworkCIFAR` forward pass for one image (inference mode, without
    the auxiliary head), as XLA's cost analysis counts them: a multiply-add is 2 FLOPs, and
    BatchNorm, ReLU and pooling count too. The convolutions run as ``conv_impl='xla'``
    whatever the backend, so a depthwise convolution counts its ``k^2 C H W`` multiply-adds
    (grouped), not the C-times larger count of ``xla-dense``. Compiles the forward pass once
    per argument set (cached).

    Example:
        >>> from nasi_jax.spaces.darts.genotype import DARTS_V2
        >>> pools = Genotype([("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5],
        ...                  [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5])
        >>> count_flops(DARTS_V2, channels=2, layers=3, image_size=8) > count_flops(
        ...     pools, channels=2, layers=3, image_size=8)
        True
    """
    return _count_flops(parse_genotype(genotype), channels, layers, num_classes, image_size)


@functools.lru_cache(maxsize=64)
def _count_flops(g: Genotype, channels: int, layers: int, num_classes: int, image_size: int) -> float:
    net = NetworkCIFAR(g, channels, layers, num_classes, auxiliary=False, conv_impl="xla")
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    variables = jax.eval_shape(lambda k: net.init(k, jnp.zeros(x.shape), train=False), jax.random.PRNGKey(0))
    cost = jax.jit(lambda v, x_: net.apply(v, x_, train=False)).lower(variables, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost or "flops" not in cost:
        raise RuntimeError(f"XLA's cost analysis gave no FLOP count on backend {jax.default_backend()!r}")
    return float(cost["flops"])


def _n_params(tree) -> int:
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(tree)))


@functools.lru_cache(maxsize=64)
def _count_network(g: Genotype, channels: int, layers: int, num_classes: int, image_size: int) -> int:
    net = NetworkCIFAR(g, channels, layers, num_classes, auxiliary=False)
    x = jnp.zeros((1, image_size, image_size, 3))
    shapes = jax.eval_shape(lambda k: net.init(k, x, train=False), jax.random.PRNGKey(0))
    return _n_params(shapes["params"])


@functools.lru_cache(maxsize=64)
def _count_aux_head(c_in: int, num_classes: int) -> int:
    head = AuxiliaryHeadCIFAR(num_classes)
    x = jnp.zeros((1, 8, 8, c_in))
    shapes = jax.eval_shape(lambda k: head.init(k, x, train=False), jax.random.PRNGKey(0))
    return _n_params(shapes["params"])
