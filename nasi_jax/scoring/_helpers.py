"""Helpers shared by the proxies' modules (private): which leaves are weights, sums in the
input's dtype, and the toy network of the examples."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def _is_kernel(path) -> bool:
    return bool(path) and getattr(path[-1], "key", None) == "kernel"


def weight_mask(params: PyTree) -> PyTree:
    """A pytree of bools like ``params``: True at the leaves named ``kernel`` (the weights).

    Example:
        >>> weight_mask({"conv": {"kernel": 1.0}, "bn": {"scale": 1.0, "bias": 0.0}})
        {'bn': {'bias': False, 'scale': False}, 'conv': {'kernel': True}}
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_kernel(path), params)


def _kernel_pairs(params: PyTree, other: PyTree) -> list[tuple[jax.Array, jax.Array]]:
    """``[(W, other_W)]`` for the kernel leaves of two pytrees of the same structure."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    leaves = jax.tree_util.tree_leaves(other)
    return [(w, o) for (path, w), o in zip(flat, leaves) if _is_kernel(path)]


def _sum(terms, like: jax.Array) -> jax.Array:
    return sum(terms, jnp.zeros((), jnp.result_type(like)))


def _float_dtype(params: PyTree):
    for leaf in jax.tree_util.tree_leaves(params):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            return jnp.result_type(leaf)
    return jnp.result_type(float)


def toy_mlp(seed: int = 0):
    """``(f, params, x, y)``: a two-layer ReLU network ``[5, 3] -> [5, 2]`` for the examples.

    ``f(p, x) = relu(x W1) W2 + b2`` with ``W1`` ``[3, 4]``, ``W2`` ``[4, 2]`` (leaves named
    ``kernel``) and the bias ``b2`` (named ``bias``); ``y`` are integer labels.
    """
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = {"l1": {"kernel": jax.random.normal(k[0], (3, 4))},
              "l2": {"kernel": jax.random.normal(k[1], (4, 2)), "bias": jnp.full((2,), 0.1)}}

    def f(p, x):
        return jax.nn.relu(x @ p["l1"]["kernel"]) @ p["l2"]["kernel"] + p["l2"]["bias"]

    x = jax.random.normal(k[2], (5, 3))
    y = jax.random.randint(k[3], (5,), 0, 2)
    return f, params, x, y


