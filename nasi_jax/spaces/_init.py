"""Weight initialisers and convolution functions shared by the spaces' networks (private).

``pytorch``: PyTorch's default for Conv/Linear, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
(``kaiming_uniform(a=sqrt(5))``), the scale the paper's ceilings nu assume; ``flax``:
lecun normal; ``kaiming``: He et al.'s normal ``N(0, 2/fan_in)`` with zero biases (PyTorch's
``kaiming_normal_(mode='fan_in', nonlinearity='relu')``, the re-initialisation of AZ-NAS and
VKDNW's scoring).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nasi_jax.core import conv as _conv

INIT_SCHEMES = ("pytorch", "flax", "kaiming")


def torch_uniform(fan_in: int):
    """PyTorch's default Conv/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def kernel_init(init: str):
    """The convolution kernel initialiser of an init scheme."""
    if init == "pytorch":  # kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    if init == "flax":
        return nn.initializers.lecun_normal()
    if init == "kaiming":  # untruncated, as torch.nn.init.kaiming_normal_
        return nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    raise ValueError(f"unknown init {init!r}; choose one of {INIT_SCHEMES} "
                     "('pytorch' is the paper's scale)")


def conv_fn(conv_impl: str):
    """``lax.conv_general_dilated`` (``xla``) or the loop-safe convolution with its values."""
    if conv_impl == "xla":
        return jax.lax.conv_general_dilated
    if conv_impl == "loop-safe":
        return _conv.conv_general_dilated
    raise ValueError(f"unknown conv_impl {conv_impl!r}; choose one of {_conv.CONV_IMPLS}")
