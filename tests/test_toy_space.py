"""A third space from outside the package: two edges, registered in the test, searched and scored.

Adding a space means implementing :class:`nasi_jax.spaces.Space` and registering it (with a
preset for its defaults); the search, replay, the scorer and its proxies then work unchanged.
"""

from __future__ import annotations

import dataclasses
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasi_jax import presets, scoring, search, spaces

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


class ToyNet(nn.Module):
    channels: int = 4
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, arch_weights, train: bool = True):
        x = nn.Conv(self.channels, (3, 3), padding="SAME", name="stem")(x)
        x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
        for e in range(2):  # two edges in a chain
            x = x + _Edge(name=f"edge_{e}")(x, arch_weights[e])
        return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


class ToySpace(spaces.Space):
    name = "toy"
    alpha_shape = (2, len(OPS))
    example = "skip-conv"
    scorable = True

    def supernet(self, *, channels, cells_per_stage, num_classes, init_scheme, conv_impl, dtype=jnp.float32):
        return ToyNet(channels, num_classes)

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


@pytest.fixture(scope="module")
def toy():
    space = spaces.register(ToySpace())
    preset = presets.register(presets.Preset(
        "toy-test", 1, "the toy space's test values",
        types.MappingProxyType({"steps": 3, "batch_size": 4, "tau": 1.0, "mu": 0.0, "nu": 1.0,
                                "nu_mode": "fixed", "hard": True, "xi": 1.0, "init_scheme": "pytorch",
                                "bn_mode": "train", "objective": "nasi", "num_classes": 10, "image_size": 8,
                                "channels": 4}),
        types.MappingProxyType({"toy": {"cells_per_stage": 1, "readout": "argmax"}}),
        types.MappingProxyType({"command": "-", "output": "-", "note": "test"})), default_for="toy")
    yield space
    presets.unregister(preset.name)
    spaces.unregister("toy")


def test_a_registered_space_is_searched_and_replayed(toy):
    cfg = search.SearchConfig(space="toy")
    assert cfg.preset == "toy-test" and cfg.alpha_shape == (2, 3)
    res = search.run_search(cfg, seeds=[0, 1])
    assert res.ops.shape == (2, 2) and res.history["G"].shape == (2, 3, 2, 3)
    assert all(toy.parse(a) == tuple(o) for a, o in zip(res.arch_strs, res.ops))
    alpha, ops = search.replay(res, mu=0.0, nu=1.0)
    np.testing.assert_array_equal(ops, res.ops)
    scan = search.run_search(cfg, seeds=[0, 1], execution=search.Execution(loop="scan"))
    assert scan.arch_strs == res.arch_strs


def test_a_registered_space_is_scored(toy):
    cfg = scoring.ScoreConfig(space="toy", batch_size=4, channels=4, cells_per_stage=1, image_size=8)
    cells, index, kind = scoring.parse_cells("all", space="toy")
    assert len(cells) == 9 and kind == "code"
    s = scoring.score_cells(cfg, cells, seed=0, progress=False)
    assert np.isfinite(s).all() and len(set(s.tolist())) > 1  # the cell changes the score
    params = scoring.score_cells(dataclasses.replace(cfg, proxy="params"), cells, seed=0, progress=False)
    assert params.tolist() == [144.0 * sum(o == 2 for o in c) for c in cells]
    with pytest.raises(spaces.ArchitectureError, match="toy cells look like"):
        scoring.parse_cells(["conv-pool"], space="toy")
