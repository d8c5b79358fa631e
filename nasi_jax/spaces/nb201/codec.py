"""NB201's codec: the official string, op indices (edge order :data:`EDGES`) and cell codes."""

from __future__ import annotations

import re
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces.base import ArchitectureError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)
NUM_ARCHS = NUM_OPS ** NUM_EDGES
_NODES_IN = ((0,), (0, 1), (0, 1, 2))  # sources of nodes 1, 2, 3
_TOKEN = re.compile(r"^([a-z0-9_]+)~(\d+)$")
EXAMPLE_ARCH = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


class ArchError(ArchitectureError):
    """A malformed NB201 architecture (string, op indices or weights)."""



def parse_arch(arch: str) -> tuple[int, ...]:
    """NB201 string -> op indices (6 ints, edge order :data:`EDGES`).

    Raises :class:`ArchError` naming the problem and showing a valid example.
    """
    hint = f"expected 3 '+'-separated groups like {EXAMPLE_ARCH!r} with ops from {OPS}"
    if not isinstance(arch, str):
        raise ArchError(f"architecture must be a string, got {type(arch).__name__}; {hint}")
    groups = arch.strip().split("+")
    if len(groups) != 3:
        raise ArchError(f"malformed NB201 architecture {arch!r}: {len(groups)} node groups; {hint}")
    ops: list[int] = []
    for node, (group, sources) in enumerate(zip(groups, _NODES_IN), start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise ArchError(f"malformed NB201 architecture {arch!r}: group {group!r} of node {node} "
                            f"must be wrapped in '|'; {hint}")
        tokens = group[1:-1].split("|")
        if len(tokens) != len(sources):
            raise ArchError(f"malformed NB201 architecture {arch!r}: node {node} needs {len(sources)} "
                            f"incoming edges, got {len(tokens)}; {hint}")
        for src, token in zip(sources, tokens):
            m = _TOKEN.match(token)
            if not m:
                raise ArchError(f"malformed NB201 architecture {arch!r}: edge token {token!r} is not "
                                f"'op~source'; {hint}")
            name, j = m.group(1), int(m.group(2))
            if name not in OPS:
                raise ArchError(f"unknown op {name!r} in {arch!r}; NB201 ops are {OPS}")
            if j != src:
                raise ArchError(f"malformed NB201 architecture {arch!r}: node {node}'s edges must come "
                                f"from nodes {sources} in order, got '~{j}' where '~{src}' was expected")
            ops.append(OPS.index(name))
    # string order is per destination node: (0,1) | (0,2),(1,2) | (0,3),(1,3),(2,3) == EDGES
    return tuple(ops)


def _check_ops(ops: Sequence[int]) -> tuple[int, ...]:
    ops = tuple(ops)
    if any(isinstance(o, bool) or not isinstance(o, (int, np.integer)) for o in ops):
        raise ArchError(f"NB201 op indices must be integers, got {ops}")
    ops = tuple(int(o) for o in ops)
    if len(ops) != NUM_EDGES or any(not 0 <= o < NUM_OPS for o in ops):
        raise ArchError(f"NB201 op indices must be {NUM_EDGES} ints in [0, {NUM_OPS}), got {ops}")
    return ops


def arch_to_str(ops: Sequence[int]) -> str:
    """Op indices -> NB201 string (inverse of :func:`parse_arch`)."""
    ops = _check_ops(ops)
    it = iter(ops)
    groups = ["|" + "|".join(f"{OPS[next(it)]}~{j}" for j in sources) + "|" for sources in _NODES_IN]
    return "+".join(groups)


def ops_to_code(ops: Sequence[int]) -> int:
    """Op indices -> base-5 integer code (0 ... 15 624). Not the benchmark index."""
    code = 0
    for o in _check_ops(ops):
        code = code * NUM_OPS + o
    return code


def code_to_ops(code: int) -> tuple[int, ...]:
    """Base-5 code -> op indices (inverse of :func:`ops_to_code`)."""
    if isinstance(code, bool) or not isinstance(code, (int, np.integer)) or not 0 <= code < NUM_ARCHS:
        raise ArchError(f"NB201 code must be in [0, {NUM_ARCHS}), got {code}")
    digits = []
    for _ in range(NUM_EDGES):
        code, d = divmod(code, NUM_OPS)
        digits.append(d)
    return tuple(reversed(digits))


def all_arch_strs() -> Iterator[str]:
    """All 15 625 NB201 strings in base-5 code order (not the benchmark's order)."""
    for code in range(NUM_ARCHS):
        yield arch_to_str(code_to_ops(code))


def one_hot(ops: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Op indices -> architecture weights ``[6, 5]`` (one-hot rows)."""
    return jax.nn.one_hot(jnp.asarray(_check_ops(ops)), NUM_OPS, dtype=dtype)


def is_degenerate(ops: Sequence[int]) -> bool:
    """True when no path of non-``none`` edges joins node 0 to node 3 (constant output)."""
    ops = _check_ops(ops)
    reach = {0}
    for (j, i), o in zip(EDGES, ops):  # EDGES is topologically ordered by destination
        if o != 0 and j in reach:
            reach.add(i)
    return 3 not in reach


