"""NB201's cost: parameters and multiply-accumulates of the discrete network, and their
per-op lookup tables (jit-able in the op indices) for the scorer."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces.nb201.codec import NUM_EDGES, NUM_OPS, OPS, _check_ops
from nasi_jax.spaces.nb201.networks import NB201Network

def count_params(ops: Sequence[int], *, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = 10, image_size: int = 32) -> int:
    """Trainable parameters of the discrete network (BN affine included, running stats not).

    Computed from the Flax module's own parameter shapes (``jax.eval_shape``, no compute).
    """
    net = NB201Network(channels, cells_per_stage, num_classes, fixed=_check_ops(ops))
    shapes = jax.eval_shape(lambda k: net.init(k, jnp.zeros((1, image_size, image_size, 3)),
                                                None, train=False), jax.random.PRNGKey(0))
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes["params"])))


def count_flops(ops: Sequence[int], *, channels: int = 16, cells_per_stage: int = 5,
                num_classes: int = 10, image_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass of the discrete network, for one image.

    Counted: per convolution ``H_out*W_out*C_out*C_in*k*k``, and the classifier's
    ``in*out + out``. Not counted: BatchNorm, ReLU, pooling and additions. The NB201 API's
    ``flops`` (e.g. NAS-Bench-Suite-Zero's column) also count those element-wise ops; over
    400 cells its value minus ours was ``0.1608 + 0.4301 * n_conv + 1.2902 * n_pool`` MFLOPs
    (``n_conv``/``n_pool``: conv / avg-pool edges of the cell; residual < 1e-6), e.g. the
    ResNet-like cell: 78.562 here, 79.583 there.
    """
    ops = _check_ops(ops)
    C, hw = channels, image_size
    macs = hw * hw * C * 3 * 9  # stem
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage > 0:
            cin = width // 2
            hw //= 2
            macs += hw * hw * width * cin * 9 + hw * hw * width * width * 9 + hw * hw * width * cin
        per_cell = sum(hw * hw * width * width * (1 if OPS[o] == "nor_conv_1x1" else 9)
                       for o in ops if OPS[o] in ("nor_conv_1x1", "nor_conv_3x3"))
        macs += cells_per_stage * per_cell
    macs += 4 * C * num_classes + num_classes
    return int(macs)


@functools.lru_cache(maxsize=32)
def cost_table(kind: str, channels: int, cells_per_stage: int, num_classes: int,
               image_size: int) -> tuple[int, tuple[int, ...]]:
    """``(base, per_op)``: the count is ``base + sum_e per_op[ops[e]]`` (each edge's op has
    its own parameters and convolutions, and every edge of a cell has the same width, so
    counts add over edges with one table for all edges)."""
    fn = count_params if kind == "params" else count_flops
    kw = dict(channels=channels, cells_per_stage=cells_per_stage, num_classes=num_classes,
              image_size=image_size)
    base = fn((0,) * NUM_EDGES, **kw)
    per_op = tuple(fn((k,) + (0,) * (NUM_EDGES - 1), **kw) - base for k in range(NUM_OPS))
    return base, per_op


def count_jit(kind: str, ops, *, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
              image_size: int = 32) -> jax.Array:
    """:func:`count_params` (``kind='params'``) or :func:`count_flops` (``'flops'``) as a
    lookup jit-able in ``ops`` (int ``[6]``, possibly traced): int32, or int64 with
    ``jax_enable_x64``.

    Example:
        >>> ops = (3, 0, 3, 1, 0, 1)
        >>> int(count_jit("params", ops)) == count_params(ops) == 559386
        True
        >>> int(count_jit("flops", ops)) == count_flops(ops) == 78561930
        True
    """
    base, per_op = cost_table(kind, int(channels), int(cells_per_stage), int(num_classes), int(image_size))
    top = base + NUM_EDGES * max(per_op)
    dt = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
    if top > np.iinfo(dt).max:
        raise ValueError(f"{kind} counts up to {top} overflow {np.dtype(dt).name}; enable jax_enable_x64")
    if not isinstance(ops, jax.Array):
        ops = jnp.asarray(_check_ops(ops))
    return jnp.asarray(base, dt) + jnp.sum(jnp.asarray(per_op, dt)[ops])
