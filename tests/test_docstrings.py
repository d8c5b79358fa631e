"""The examples in the docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = ["nasi_jax.relax", "nasi_jax.objective", "nasi_jax.ntk", "nasi_jax.spaces.nb201",
           "nasi_jax.search", "nasi_jax.conv", "nasi_jax.score", "nasi_jax.memory",
           "nasi_jax.proxies", "nasi_jax.theory.spaces", "nasi_jax.theory.kernels",
           "nasi_jax.theory.training", "nasi_jax.theory.agnostic", "nasi_jax.theory.inputs", "nasi_jax.train",
           "nasi_jax.staged"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
