"""A third search space from outside the package, for the tests: two edges in a chain, each
``none``, ``skip`` or a 3x3 convolution, after a convolution stem with BatchNorm.

It is cheap to compile (about a second for a search step, against ~10 s for the smallest NB201
supernet), so the tests of what the search does whatever the space (seed batching, the loops,
the second-order gradient, replay, the data path, non-finite scores, the staged step through
the runner) run on it; NB201's own tests keep the supernet's. :func:`registered` registers it
with its preset ``toy-test``.
"""

from __future__ import annotations

import contextlib
import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import ntk, presets, spaces
from nasi_jax.spaces.base import Stage

OPS = ("none", "skip", "conv")


class _Edge(nn.Module):
    """One edge: ``weights`` [3] floats (a mixture) or an int op index (``lax.switch``)."""

    @nn.compact
    def __call__(self, x, w):
        conv = nn.Conv(x.shape[-1], (3, 3), padding="SAME", use_bias=False, name="conv")
        branches = [lambda m, x: jnp.zeros_like(x), lambda m, x: x, lambda m, x: conv(jax.nn.relu(x))]
        if jnp.issubdtype(jnp.asarray(w).dtype, jnp.integer):
            return nn.switch(w, branches, self, x)
        return sum(w[k] * branches[k](self, x) for k in range(len(OPS)))


def _stem(x, channels, train):
    """The stem, inside a parent's compact method: parameters ``stem`` and ``bn``."""
    x = nn.Conv(channels, (3, 3), padding="SAME", name="stem")(x)
    return nn.BatchNorm(use_running_average=not train, name="bn")(x)


class ToyNet(nn.Module):
    channels: int = 4
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, arch_weights, train: bool = True):
        x = _stem(x, self.channels, train)
        for e in range(2):  # two edges in a chain
            x = x + _Edge(name=f"edge_{e}")(x, arch_weights[e])
        return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


class _Stem(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        return _stem(x, self.channels, True)


def _stem_stage(channels, params, x, a, y):
    return _Stem(channels).apply({"params": params}, x, mutable=["batch_stats"])[0]


def _edge_stage(e, params, x, a, y):  # x + edge_e(x, A[e])
    return x + _Edge().apply({"params": params}, x, a[e])


def _head_stage(num_classes, params, x, a, y):
    logits = nn.Dense(num_classes).apply({"params": params["head"]}, jnp.mean(x, axis=(1, 2)))
    return ntk.cross_entropy(logits, y)


class ToySpace(spaces.Space):
    name = "toy"
    alpha_shape = (2, len(OPS))
    example = "skip-conv"
    scorable = True

    def supernet(self, *, channels, cells_per_stage, num_classes, init_scheme, conv_impl, dtype=jnp.float32):
        return ToyNet(channels, num_classes)

    def stages(self, net):
        """The toy supernet as four stages (train-mode BatchNorm): stem, edge_0, edge_1, head."""
        return [Stage("stem", ("stem", "bn"), functools.partial(_stem_stage, net.channels)),
                *(Stage(f"edge_{e}", (), functools.partial(_edge_stage, e), path=(f"edge_{e}",)) for e in range(2)),
                Stage("head", ("head",), functools.partial(_head_stage, net.num_classes))]

    def step_impls(self):
        return ("one-program", "staged")

    def to_text(self, ops):
        return "-".join(OPS[int(o)] for o in np.asarray(ops).reshape(-1))

    def parse(self, text):
        try:
            return tuple(OPS.index(t) for t in text.split("-"))
        except ValueError:
            raise spaces.ArchitectureError(f"toy cells look like {self.example!r}, got {text!r}") from None

    def describe(self, ops):
        return {"convs": int(sum(int(o) == 2 for o in np.asarray(ops).reshape(-1)))}

    def cost(self, kind, *, channels, cells_per_stage, num_classes, image_size):
        per_conv = channels * channels * 9 * (1 if kind == "params" else image_size * image_size)
        return lambda ops: jnp.sum(jnp.asarray(ops) == 2) * per_conv


@contextlib.contextmanager
def registered():
    """Register :class:`ToySpace` (``space="toy"``) and its default preset ``toy-test`` for
    the ``with`` block; yields the space."""
    space = spaces.register(ToySpace())
    preset = presets.register(presets.Preset(
        "toy-test", 1, "the toy space's test values",
        types.MappingProxyType({"steps": 3, "batch_size": 4, "tau": 1.0, "mu": 0.0, "nu": 1.0,
                                "nu_mode": "fixed", "hard": True, "xi": 1.0, "init_scheme": "pytorch",
                                "bn_mode": "train", "objective": "nasi", "num_classes": 10, "image_size": 8,
                                "channels": 4}),
        types.MappingProxyType({"toy": {"cells_per_stage": 1, "readout": "argmax"}}),
        types.MappingProxyType({"command": "-", "output": "-", "note": "test"})), default_for="toy")
    try:
        yield space
    finally:
        presets.unregister(preset.name)
        spaces.unregister("toy")
