"""Convolutions that stay fast inside XLA:CPU loops and conditionals.

XLA:CPU runs a convolution through its fast library path only when the convolution is
in canonical form (input NHWC, kernel HWIO). In the entry computation XLA rewrites the
two convolutions of the backward pass (``dL/dx``: a flipped kernel with swapped
features; ``dL/dw``: the batch as the contracted dimension) into that form, but inside
the body of a ``while`` loop (``lax.scan``, ``lax.map``) or a conditional
(``lax.switch``) it does not, and they run far slower (jax issue #12868; the measurements
are in docs/performance.md).

:func:`conv` computes the same convolution but defines its own derivative with ops that
XLA:CPU runs fast anywhere::

    y  = x * w                                  (stride 1, 'SAME'-style padding p)
    dx = g * flip(w)^T                          (a canonical convolution: conv() again)
    dw[i, j] = sum_{b,h,w} xpad[b, h+i, w+j]^T g[b, h, w]   (k*k matrix products)

Stride ``s`` is computed as the stride-1 convolution subsampled by ``s``
(``y_s[i] = y_1[s i]``, exact; it costs ``s^2`` more on those layers, which in NB201 are
the two reduction blocks). The derivative rule is itself built from :func:`conv`, pads,
slices and matrix products, so second derivatives (NASI's search step in reverse-over-
reverse mode) stay fast too. Forward-mode differentiation is not defined for a
``custom_vjp`` function: use ``grad_mode='rev-rev'`` with it.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.core import conv as cv
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    >>> w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
    >>> ref = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
    ...                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> bool(jnp.allclose(cv.conv(x, w, 1, 1), ref, atol=1e-5))
    True
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["CONV_IMPLS", "conv", "conv_general_dilated", "resolve_conv_impl"]

CONV_IMPLS = ("xla", "loop-safe")
_DN = ("NHWC", "HWIO", "NHWC")


def _plain(x, w, pad: int):
    return lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv1(x, w, pad: int):
    """Stride-1 convolution, symmetric zero padding ``pad``; x ``[B,H,W,Ci]``, w ``[k,k,Ci,Co]``."""
    return _plain(x, w, pad)


def _conv1_fwd(x, w, pad):
    return _plain(x, w, pad), (x, w)


def _conv1_bwd(pad, res, g):
    x, w = res
    k = w.shape[0]
    # dx: correlate g with the flipped kernel, features swapped; padding k-1-pad restores H.
    dx = _conv1(g, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2), k - 1 - pad)
    # dw[i, j] = xpad[:, i:i+Ho, j:j+Wo]^T g  (contract batch and space)
    ho, wo = g.shape[1], g.shape[2]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dw = jnp.stack([
        jnp.stack([jnp.einsum("bhwi,bhwo->io", xp[:, i:i + ho, j:j + wo], g) for j in range(k)])
        for i in range(k)])
    return dx, dw.astype(w.dtype)


_conv1.defvjp(_conv1_fwd, _conv1_bwd)


def conv(x: jax.Array, w: jax.Array, stride: int = 1, padding: int = 0) -> jax.Array:
    """2-D convolution, NHWC input ``[B,H,W,Ci]``, HWIO kernel ``[k,k,Ci,Co]``, square kernel.

    Same values as ``lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)))`` with a
    derivative that XLA:CPU runs fast inside loops and conditionals (module docstring).
    ``padding`` must lie in ``[0, k-1]``; odd ``k`` with ``padding = (k-1)//2`` keeps the
    spatial size at stride 1.
    """
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"conv: square kernels only, got {w.shape[:2]}")
    if not 0 <= padding <= w.shape[0] - 1:
        raise ValueError(f"conv: padding must be in [0, k-1] = [0, {w.shape[0] - 1}], got {padding}")
    y = _conv1(x, w, padding)
    if stride > 1:
        y = y[:, ::stride, ::stride, :]
    return y


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding: Any,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, precision=None, **kwargs):
    """Drop-in for ``lax.conv_general_dilated`` in ``flax.linen.Conv(conv_general_dilated=...)``.

    Supports what NB201 and DARTS-style cells use: NHWC/HWIO, square kernels, equal
    strides, symmetric explicit padding, no dilation and no groups; anything else raises.
    """
    dn = dimension_numbers
    names = getattr(dn, "lhs_spec", None)
    if not (dn is None or tuple(dn) == _DN or (names is not None and tuple(dn) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2)))):
        raise ValueError(f"loop-safe conv: only NHWC/HWIO/NHWC layouts are supported, got {dn}")
    if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(d != 1 for d in (rhs_dilation or (1, 1))):
        raise ValueError("loop-safe conv: dilation is not supported; use conv_impl='xla'")
    if feature_group_count != 1:
        raise ValueError("loop-safe conv: grouped convolutions are not supported; use conv_impl='xla'")
    s = tuple(window_strides)
    k = rhs.shape[0]
    if len(set(s)) != 1:
        raise ValueError(f"loop-safe conv: needs equal strides, got {s}")
    if padding == "VALID":
        padding = ((0, 0), (0, 0))
    elif padding == "SAME" and k % 2 == 1 and s[0] == 1:
        padding = (((k - 1) // 2,) * 2,) * 2
    elif isinstance(padding, str):
        raise ValueError(f"loop-safe conv: padding {padding!r} with kernel {k} and stride {s[0]} "
                         "is asymmetric; pass explicit symmetric padding")
    pads = {p for pair in padding for p in pair}
    if len(pads) != 1:
        raise ValueError(f"loop-safe conv: needs symmetric padding, got {padding}")
    return conv(lhs, rhs, s[0], pads.pop())


def resolve_conv_impl(impl: str, *, nested: bool) -> str:
    """``'auto'`` -> ``'loop-safe'`` on CPU when the convolutions run inside a loop or
    conditional (``nested``), else ``'xla'``; other values are checked and returned."""
    if impl == "auto":
        return "loop-safe" if (nested and jax.default_backend() == "cpu") else "xla"
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}; choose one of {('auto',) + CONV_IMPLS}")
    return impl
