"""DARTS' ops as Flax modules, and the convolution helpers they share.

The 8 ops of :data:`~nasi_jax.spaces.darts.genotype.OPS` on ``C`` channels (:class:`Op`),
NHWC: ``none`` (zeros, subsampled at stride 2), 3x3 max / average pooling (padding 1; the
average does not count the padding), ``skip_connect`` (identity, or
:class:`FactorizedReduce` at stride 2), ``sep_conv_kxk`` (:class:`SepConv`) and
``dil_conv_kxk`` (:class:`DilConv`). All convolutions are bias-free. :class:`Cfg` carries the
init scheme, dtype and convolution implementation (:func:`resolve_conv_impl`) to every module.

Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> op = Op("sep_conv_3x3", 4, stride=2)          # x [B, H, W, C] -> [B, H/2, W/2, C]
    >>> variables = op.init(jax.random.PRNGKey(0), x, train=False)
    >>> op.apply(variables, x, train=False).shape
    (2, 4, 4, 4)
    >>> max_pool_3x3(jnp.arange(16.0).reshape(1, 4, 4, 1), 2, "xla-dense")[0, :, :, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces import _init
from nasi_jax.spaces.darts import taps
from nasi_jax.spaces.darts.genotype import OPS, GenotypeError

__all__ = [
    "Cfg", "CONV_IMPLS", "resolve_conv_impl", "batch_norm", "batch_norm_module", "conv", "dense",
    "DepthwiseConv", "ReLUConvBN", "DilConv", "SepConv", "FactorizedReduce", "avg_pool_3x3",
    "max_pool_3x3", "Op",
]


def batch_norm_module(train: bool, dtype, affine: bool = True, name: str | None = None) -> nn.BatchNorm:
    """PyTorch's ``BatchNorm2d`` in Flax: eps 1e-5, momentum 0.1 (Flax's 0.9), affine weight 1
    and bias 0 when ``affine``; batch statistics when ``train`` (the running averages are then
    the mutable collection ``batch_stats``)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_scale=affine, use_bias=affine, use_fast_variance=False,
                        dtype=dtype, param_dtype=dtype, name=name)


def batch_norm(x, train: bool, dtype, affine: bool = True, name: str | None = None):
    """:func:`batch_norm_module` applied to ``x`` (inside a compact module)."""
    return batch_norm_module(train, dtype, affine, name)(x)


class Cfg(NamedTuple):
    """What every DARTS module is built with: the init scheme (``'pytorch'`` or ``'flax'``), the
    parameter and computation dtype, the convolution implementation (:func:`resolve_conv_impl`),
    and whether the supernet's cells have affine BatchNorms (``cell_affine``; DARTS' supernet:
    no, the default; read only by the supernet's cells)."""

    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"
    cell_affine: bool = False


CONV_IMPLS = ("auto", "xla", "xla-dense", "xla-taps", "xla-taps-jvp", "xla-shift", "loop-safe")
_SEPARABLE_MAX_POOL = ("xla-dense", "xla-taps", "xla-taps-jvp")  # max pooling as separable maxima


def resolve_conv_impl(conv_impl: str, backend: str | None = None, *, reverse_only: bool = False) -> str:
    """``auto`` -> ``xla-dense`` on backend ``cpu`` (``xla-taps`` when ``reverse_only``: the
    caller differentiates in reverse mode only, as training does), ``xla`` elsewhere; other
    names are checked and returned. ``backend``: the jax backend (default:
    :func:`jax.default_backend`).

    * ``xla``: every convolution by ``lax.conv_general_dilated``, depthwise ones with
      ``feature_group_count=C``, max pooling by ``lax.reduce_window``;
    * ``xla-dense``: the same, except depthwise convolutions, computed as dense ``C -> C``
      convolutions whose kernel is zero off the diagonal (C times the multiply-adds), and 3x3
      max pooling, computed as separable maxima (:func:`max_pool_3x3`): forms that XLA:CPU
      runs fast, where it runs grouped convolutions and ``reduce_window``'s gradient slowly
      (docs/darts.md has the measurements);
    * ``xla-taps``: as ``xla-dense``, except depthwise convolutions, computed as sums of
      shifted taps with hand-written reverse-mode derivatives (:mod:`nasi_jax.spaces.darts.taps`,
      ``H W C k^2`` multiply-adds): ``jax.grad`` and reverse over it, not ``jax.jvp``;
      ``xla-taps-jvp``, the same function for forward mode (``jax.jvp`` and reverse over it,
      not a plain ``jax.grad``). The staged search step on CPU runs each of its programs
      with the form it needs;
    * ``xla-shift``: as ``xla``, except depthwise convolutions, computed as sums of shifted
      products (:class:`DepthwiseConv`): fast forward, slow derivatives for 5x5 kernels;
    * ``loop-safe``: as ``xla-shift`` and the other convolutions by :mod:`nasi_jax.core.conv`
      (fast inside XLA:CPU loops; reverse-mode derivatives only).

    All compute the same function (``tests/test_darts.py::test_conv_impls_match_xla``).

    Example:
        >>> resolve_conv_impl("auto", "cpu"), resolve_conv_impl("auto", "gpu"), resolve_conv_impl("xla-shift")
        ('xla-dense', 'xla', 'xla-shift')
        >>> resolve_conv_impl("auto", "cpu", reverse_only=True)
        'xla-taps'
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {conv_impl!r}; choose one of {CONV_IMPLS}")
    if conv_impl == "auto":
        if (backend or jax.default_backend()) != "cpu":
            return "xla"
        return "xla-taps" if reverse_only else "xla-dense"
    return conv_impl


def conv(cfg: Cfg, features: int, kernel: int, stride: int = 1, padding: int = 0, name=None) -> nn.Conv:
    """Bias-free Conv(k x k, stride, symmetric padding), NHWC, initialised by ``cfg.init_scheme``;
    computed by :mod:`nasi_jax.core.conv` when ``cfg.conv_impl`` is ``loop-safe``, else by
    ``lax.conv_general_dilated``."""
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((padding, padding),) * 2,
                   use_bias=False, kernel_init=_init.kernel_init(cfg.init_scheme), dtype=cfg.dtype,
                   param_dtype=cfg.dtype, name=name,
                   conv_general_dilated=_init.conv_fn("loop-safe" if cfg.conv_impl == "loop-safe" else "xla"))


def dense(cfg: Cfg, features: int, fan_in: int, name: str) -> nn.Dense:
    """Linear layer with bias. ``pytorch`` init: kernel and bias ``U(+-1/sqrt(fan_in))``, as
    PyTorch's ``nn.Linear``; ``flax``: lecun normal kernel, zero bias."""
    if cfg.init_scheme == "pytorch":
        k_init, b_init = _init.torch_uniform(fan_in), _init.torch_uniform(fan_in)
    else:
        k_init, b_init = _init.kernel_init(cfg.init_scheme), nn.initializers.zeros
    return nn.Dense(features, kernel_init=k_init, bias_init=b_init, dtype=cfg.dtype,
                    param_dtype=cfg.dtype, name=name)


class DepthwiseConv(nn.Module):
    """Depthwise conv (one k x k filter per channel, no bias), stride, dilation, padding.

    Kernel ``[k, k, 1, C]`` (PyTorch ``groups=C``: ``C k^2`` parameters).
    ``y[b,h,w,c] = sum_{i,j} xpad[b, s h + d i, s w + d j, c] * K[i, j, 0, c]``; with
    ``conv_impl`` ``'xla-taps'`` (``'xla-taps-jvp'``) by :mod:`nasi_jax.spaces.darts.taps`, with
    ``'xla-shift'`` or ``'loop-safe'`` it is computed literally so (shifted slices, products and sums,
    whose derivatives XLA:CPU runs fast inside loops), with ``'xla-dense'`` as a dense convolution
    with the kernel ``K[i, j, 0, c] [c == c']`` (``C`` times the multiply-adds, but XLA:CPU's fast
    path), else by ``lax.conv_general_dilated`` with ``feature_group_count=C``.
    """

    kernel: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x):
        C, k, s, d, p = x.shape[-1], self.kernel, self.stride, self.dilation, self.padding
        w = self.param("kernel", _init.kernel_init(self.cfg.init_scheme), (k, k, 1, C), self.cfg.dtype)
        x = x.astype(self.cfg.dtype)
        impl = resolve_conv_impl(self.cfg.conv_impl)
        if impl in ("xla-taps", "xla-taps-jvp"):
            f = taps.depthwise_conv if impl == "xla-taps" else taps.depthwise_conv_jvp
            return f(x, w, k, s, d, p)
        if impl in ("xla", "xla-dense"):
            if impl == "xla-dense":  # [k, k, 1, C] -> [k, k, C, C], zero off the diagonal
                w, groups = w[:, :, 0, :, None] * jnp.eye(C, dtype=w.dtype), 1
            else:
                groups = C
            return jax.lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)), rhs_dilation=(d, d),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=groups)
        H, W = x.shape[1], x.shape[2]
        ho, wo = (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1
        xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        out = None
        for i in range(k):
            for j in range(k):
                sl = xp[:, d * i: d * i + s * (ho - 1) + 1: s, d * j: d * j + s * (wo - 1) + 1: s, :]
                y = sl * w[i:i + 1, j:j + 1, 0:1, :]  # [1, 1, 1, C]
                out = y if out is None else out + y
        return out


class ReLUConvBN(nn.Module):
    """ReLU -> Conv(k x k, stride, padding, no bias) -> BN (affine or not)."""

    features: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    affine: bool = True
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        x = conv(self.cfg, self.features, self.kernel, self.stride, self.padding)(nn.relu(x))
        return batch_norm(x, train, self.cfg.dtype, self.affine)


class DilConv(nn.Module):
    """ReLU -> depthwise k x k (stride, dilation, padding) -> pointwise 1x1 -> BN."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    affine: bool = True
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        x = DepthwiseConv(self.kernel, self.stride, self.dilation, self.padding, self.cfg)(nn.relu(x))
        x = conv(self.cfg, self.features, 1)(x)
        return batch_norm(x, train, self.cfg.dtype, self.affine)


class SepConv(nn.Module):
    """Two DilConv blocks with dilation 1: ``DilConv(C_in, stride) -> DilConv(C_out, 1)``."""

    features: int
    kernel: int
    stride: int = 1
    affine: bool = True
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        p = (self.kernel - 1) // 2
        x = DilConv(x.shape[-1], self.kernel, self.stride, p, 1, self.affine, self.cfg, name="block_1")(x, train)
        return DilConv(self.features, self.kernel, 1, p, 1, self.affine, self.cfg, name="block_2")(x, train)


class FactorizedReduce(nn.Module):
    """ReLU -> concat(conv1x1_s2(x), conv1x1_s2(x[:, 1:, 1:])) -> BN; ``C_out`` even."""

    features: int
    affine: bool = True
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        if self.features % 2:
            raise GenotypeError(f"FactorizedReduce needs an even number of channels, got {self.features}")
        x = nn.relu(x)
        a = conv(self.cfg, self.features // 2, 1, 2, name="conv_1")(x)
        b = conv(self.cfg, self.features // 2, 1, 2, name="conv_2")(x[:, 1:, 1:, :])
        if a.shape != b.shape:
            raise GenotypeError(f"FactorizedReduce needs even spatial sizes, got {x.shape[1:3]}")
        return batch_norm(jnp.concatenate([a, b], axis=-1), train, self.cfg.dtype, self.affine)


def avg_pool_3x3(x, stride: int):
    """3x3 average, padding 1, stride s, not counting the padding (``count_include_pad=False``)."""
    h, w = x.shape[1], x.shape[2]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    rows = np.array([min(h, r * stride + 2) - max(0, r * stride - 1) for r in range(ho)], np.float32)
    cols = np.array([min(w, c * stride + 2) - max(0, c * stride - 1) for c in range(wo)], np.float32)
    summed = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, (1, 3, 3, 1),
                                   (1, stride, stride, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return summed * jnp.asarray(1.0 / np.outer(rows, cols), x.dtype)[None, :, :, None]


def _balanced(a, y, b):
    """The weight of ``a`` in the derivative of ``y = max(a, b)``, as ``jnp.maximum``'s: 1 where
    ``a`` alone is the max, 1/2 at a tie, else 0."""
    return jnp.where(a == y, jnp.where(b == y, 0.5, 1.0), 0.0).astype(a.dtype)


@jax.custom_jvp
def _max3(a, b, c):
    """``max(max(a, b), c)`` elementwise, with ``jnp.maximum``'s derivative written out."""
    return jnp.maximum(jnp.maximum(a, b), c)


@_max3.defjvp
def _max3_jvp(primals, tangents):
    # The same tangent, operation for operation, as jax's rule for the two jnp.maximum (so the
    # same floats, tested); XLA:CPU runs the reverse pass over this JVP (the staged step's
    # fourth program) about 4-5x faster at [64, 32, 32, 16] than over jax's own rule
    # (measured, benchmarks/darts_pooling.py; docs/darts.md).
    a, b, c = primals
    da, db, dc = tangents
    ab = jnp.maximum(a, b)
    y = jnp.maximum(ab, c)
    dab = da * _balanced(a, ab, b) + db * _balanced(b, ab, a)
    return y, dab * _balanced(ab, y, c) + dc * _balanced(c, y, ab)


def max_pool_3x3(x, stride: int, impl: str):
    """3x3 max, padding 1 (with -inf), stride s. ``impl`` ``'xla-dense'``, ``'xla-taps'`` or
    ``'xla-taps-jvp'``: as two 3-tap maxima,
    rows then columns (the same values; its gradient takes the same path except at ties,
    where ``jnp.maximum`` splits it; the maxima's derivative is written out, :func:`_max3`),
    else ``lax.reduce_window``, whose gradient XLA:CPU runs as a slow select-and-scatter
    (docs/darts.md).
    ``x [B, H, W, C] -> [B, (H - 1) // s + 1, (W - 1) // s + 1, C]``."""
    if impl not in _SEPARABLE_MAX_POOL:
        return nn.max_pool(x, (3, 3), (stride, stride), padding=((1, 1), (1, 1)))
    return _separable_max_pool(x, stride, _max3)


def _separable_max_pool(x, stride: int, max3):
    """3x3 max pooling (padding 1 with -inf, stride ``stride``) as ``max3`` over three row taps,
    then over three column taps. ``max3``: :func:`_max3`, or ``_max3.fun`` (the same maxima
    with jax's own ``jnp.maximum`` derivative: the reference of tests and benchmarks)."""
    s, (h, w) = stride, x.shape[1:3]
    ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    r = max3(xp[:, 0:s * (ho - 1) + 1:s], xp[:, 1:s * (ho - 1) + 2:s], xp[:, 2:s * (ho - 1) + 3:s])
    return max3(r[:, :, 0:s * (wo - 1) + 1:s], r[:, :, 1:s * (wo - 1) + 2:s], r[:, :, 2:s * (wo - 1) + 3:s])


class Op(nn.Module):
    """One DARTS op by name on ``C`` channels (module docstring); ``search=True`` follows the
    pools by a BN (affine as ``affine``; DARTS' supernet: without affine parameters)."""

    op: str
    features: int
    stride: int = 1
    affine: bool = True
    search: bool = False
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        op, C, s = self.op, self.features, self.stride
        if op == "none":
            return jnp.zeros_like(x[:, ::s, ::s, :])
        if op in ("max_pool_3x3", "avg_pool_3x3"):
            if op == "max_pool_3x3":
                y = max_pool_3x3(x, s, resolve_conv_impl(self.cfg.conv_impl))
            else:
                y = avg_pool_3x3(x, s)
            return batch_norm(y, train, self.cfg.dtype, affine=self.affine) if self.search else y
        if op == "skip_connect":
            return x if s == 1 else FactorizedReduce(C, self.affine, self.cfg)(x, train)
        k = int(op[-1])
        if op.startswith("sep_conv"):
            return SepConv(C, k, s, self.affine, self.cfg)(x, train)
        if op.startswith("dil_conv"):
            return DilConv(C, k, s, k - 1, 2, self.affine, self.cfg)(x, train)
        raise GenotypeError(f"unknown op {op!r}; DARTS ops are {OPS}")
