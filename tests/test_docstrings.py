"""The examples in the docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = ["nasi_jax", "nasi_jax.records", "nasi_jax.compilation_cache", "nasi_jax.hugepages", "nasi_jax.presets", "nasi_jax.core.relax",
           "nasi_jax.core.objective", "nasi_jax.core.ntk", "nasi_jax.core.conv", "nasi_jax.core.memory",
           "nasi_jax.spaces", "nasi_jax.spaces.nb201", "nasi_jax.spaces.nb201.space", "nasi_jax.spaces.nb201.cost",
           "nasi_jax.spaces.darts", "nasi_jax.spaces.darts.genotype", "nasi_jax.spaces.darts.space",
           "nasi_jax.spaces.darts.taps", "nasi_jax.spaces.darts.ops", "nasi_jax.perf", "nasi_jax.search", "nasi_jax.search.config", "nasi_jax.search.algorithm",
           "nasi_jax.search.runners", "nasi_jax.search.replay", "nasi_jax.search.staged", "nasi_jax.scoring",
           "nasi_jax.scoring.scorer", "nasi_jax.scoring.proxies", "nasi_jax.theory.spaces",
           "nasi_jax.theory.kernels", "nasi_jax.theory.training", "nasi_jax.theory.agnostic",
           "nasi_jax.theory.inputs", "nasi_jax.train"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
