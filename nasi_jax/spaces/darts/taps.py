"""Depthwise convolutions as sums of shifted taps, with hand-written derivatives
(``conv_impl='xla-taps'`` and ``'xla-taps-jvp'``; :mod:`nasi_jax.spaces.darts.ops`).

A depthwise ``k x k`` convolution (stride ``s``, dilation ``d``, zero padding ``p``, kernel
``w [k, k, 1, C]``) is

    y[b, h, w, c] = sum_{i, j} xpad[b, s h + d i, s w + d j, c] * w[i, j, 0, c],

``k^2`` shifted slices times a per-channel scalar: ``H W C k^2`` multiply-adds that XLA:CPU
fuses into one loop, where its grouped convolution is slow and the dense form with a diagonal
kernel (``xla-dense``) does ``C`` times the work. jax's own derivatives of the slices (pads
and per-tap reductions) run slowly on XLA:CPU, so the derivatives are written by hand:

* in ``x``: the transposed convolution, again a sum of taps: the cotangent, spread on the
  stride-1 grid (zeros between, ``s > 1``), correlated with the flipped kernel at padding
  ``d (k - 1) - p``;
* in ``w``: ``sum_{b, h, w} xpad[b, s h + d i, s w + d j, c] g[b, h, w, c]`` per tap, as
  ``k^2`` reductions while they read at most :data:`TAPS_WGRAD_MAX` products in all, else as
  the weight gradient of the dense ``C -> C`` convolution, whose diagonal it is (XLA:CPU runs
  many large reductions slowly; at b = 64 the taps win at 32 channels and 3x3, and at 64
  channels; docs/darts.md has the timings).

jax allows a hand-written rule for reverse mode (``custom_vjp``) or forward mode
(``custom_jvp``), not both, so there are two forms of the same function:

* :func:`depthwise_conv` (``xla-taps``): a ``custom_vjp``: ``jax.grad`` / ``jax.vjp`` (and
  reverse over them); ``jax.jvp`` raises.
* :func:`depthwise_conv_jvp` (``xla-taps-jvp``): a ``custom_jvp`` whose tangent
  ``conv(dx, w) + conv(x, dw)`` is computed by :func:`depthwise_conv`: ``jax.jvp``, and
  reverse mode over a ``jax.jvp`` (the staged search step's second-order programs); a plain
  ``jax.grad`` of it raises (jax cannot transpose the ``custom_vjp`` inside the rule).

The staged DARTS step (:mod:`nasi_jax.spaces.darts.stages`) runs each program with the form
it needs. Equal to ``lax.conv_general_dilated(..., feature_group_count=C)`` to float rounding,
derivatives included (``tests/test_darts.py``).

Example:
    >>> import jax, jax.numpy as jnp
    >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 1, 2))
    >>> y = depthwise_conv(x, w, 3, 1, 1, 1)            # k 3, stride 1, dilation 1, padding 1
    >>> y.shape, float(y[0, 0, 0, 0]), float(y[0, 1, 1, 0])   # 4 taps at a corner, 9 inside
    ((1, 4, 4, 2), 4.0, 9.0)
    >>> ref = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
    ...     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)
    >>> bool(jnp.allclose(y, ref))
    True
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["depthwise_conv", "depthwise_conv_jvp", "TAPS_WGRAD_MAX"]

TAPS_WGRAD_MAX = 8_000_000  # products (B Ho Wo C k^2) above which the kernel's gradient is a dense one


def _out(n: int, k: int, s: int, d: int, p: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pad_hw(x, lo_hi_h, lo_hi_w, interior=(0, 0)):
    """Zero-pad (or crop, when negative) the spatial axes of NHWC ``x``."""
    z = jnp.zeros((), x.dtype)
    return lax.pad(x, z, ((0, 0, 0), (*lo_hi_h, interior[0]), (*lo_hi_w, interior[1]), (0, 0, 0)))


def _taps(x, k: int, s: int, d: int, p: int, ho: int, wo: int):
    """The ``k^2`` shifted (strided) slices of the padded ``x``, each ``[B, ho, wo, C]``."""
    xp = _pad_hw(x, (p, p), (p, p))
    return [[xp[:, d * i: d * i + s * (ho - 1) + 1: s, d * j: d * j + s * (wo - 1) + 1: s, :]
             for j in range(k)] for i in range(k)]


def _conv(x, w, k, s, d, p):
    ho, wo = _out(x.shape[1], k, s, d, p), _out(x.shape[2], k, s, d, p)
    out = None
    for i, row in enumerate(_taps(x, k, s, d, p, ho, wo)):
        for j, t in enumerate(row):
            y = t * w[i, j, 0]
            out = y if out is None else out + y
    return out


def _grad_x(g, w, shape, k, s, d, p):
    """Cotangent of ``x`` (of ``shape``) from the output's ``g``: the transposed convolution."""
    H, W = shape[1], shape[2]
    h1, w1 = H + 2 * p - d * (k - 1), W + 2 * p - d * (k - 1)  # the stride-1 output grid
    ho, wo = g.shape[1], g.shape[2]
    if s > 1:  # g at every s-th point of the stride-1 grid, zeros between
        g = _pad_hw(g, (0, h1 - s * (ho - 1) - 1), (0, w1 - s * (wo - 1) - 1), (s - 1, s - 1))
    return _conv(g, w[::-1, ::-1], k, 1, d, d * (k - 1) - p)


def _grad_w(x, g, k, s, d, p):
    """Cotangent of the kernel ``[k, k, 1, C]``."""
    C = x.shape[-1]
    if g.size * k * k > TAPS_WGRAD_MAX:  # the diagonal of the dense convolution's kernel gradient
        def dense(kern):
            return lax.conv_general_dilated(x, kern, (s, s), ((p, p), (p, p)), rhs_dilation=(d, d),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        kbar = jax.vjp(dense, jnp.zeros((k, k, C, C), x.dtype))[1](g)[0]
        return jnp.diagonal(kbar, axis1=2, axis2=3)[:, :, None, :]
    taps = _taps(x, k, s, d, p, g.shape[1], g.shape[2])
    rows = [jnp.stack([jnp.sum(t * g, axis=(0, 1, 2)) for t in row]) for row in taps]
    return jnp.stack(rows)[:, :, None, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def depthwise_conv(x, w, k: int, s: int, d: int, p: int):
    """``x [B, H, W, C]``, ``w [k, k, 1, C]`` -> ``[B, Ho, Wo, C]``, ``Ho = (H + 2p - d(k-1) - 1) // s + 1``
    (module docstring); reverse-mode derivatives by hand."""
    return _conv(x, w, k, s, d, p)


def _dw_fwd(x, w, k, s, d, p):
    return _conv(x, w, k, s, d, p), (x, w)


def _dw_bwd(k, s, d, p, res, g):
    x, w = res
    return _grad_x(g, w, x.shape, k, s, d, p), _grad_w(x, g, k, s, d, p)


depthwise_conv.defvjp(_dw_fwd, _dw_bwd)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def depthwise_conv_jvp(x, w, k: int, s: int, d: int, p: int):
    """:func:`depthwise_conv` for forward mode (module docstring): the same values."""
    return depthwise_conv(x, w, k, s, d, p)


@depthwise_conv_jvp.defjvp
def _dw_jvp(k, s, d, p, primals, tangents):
    (x, w), (dx, dw) = primals, tangents
    return depthwise_conv(x, w, k, s, d, p), depthwise_conv(dx, w, k, s, d, p) + depthwise_conv(x, dw, k, s, d, p)
