"""Search spaces behind one interface (:class:`~nasi_jax.spaces.base.Space`), and their registry.

``get_space(name)`` returns the space object; ``register(space)`` adds one from outside the
package (a test registers a toy space of two edges and runs the search and the scorer on
it). The built-in spaces, :mod:`~nasi_jax.spaces.nb201` and :mod:`~nasi_jax.spaces.darts`,
are imported when first asked for.

Example:
    >>> from nasi_jax.spaces import get_space, names
    >>> names()
    ('darts', 'nb201')
    >>> get_space("darts").alpha_shape
    (2, 14, 8)
"""

from __future__ import annotations

import importlib

from nasi_jax.spaces.base import ArchitectureError, Space

__all__ = ["Space", "ArchitectureError", "get_space", "register", "unregister", "names"]

_BUILTIN = {"nb201": "nasi_jax.spaces.nb201", "darts": "nasi_jax.spaces.darts"}
_REGISTRY: dict[str, Space] = {}


def register(space: Space) -> Space:
    """Make ``space`` available by its name (to ``get_space``, ``SearchConfig``, the scorer)."""
    if not isinstance(space, Space):
        raise TypeError(f"register() takes a nasi_jax.spaces.Space, got {type(space).__name__}")
    if space.name in _BUILTIN or (space.name in _REGISTRY and _REGISTRY[space.name] is not space):
        raise ValueError(f"a space named {space.name!r} is already registered")
    _REGISTRY[space.name] = space
    return space


def unregister(name: str) -> None:
    """Remove a space added with :func:`register`."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in space")
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Names of every available space."""
    return tuple(sorted(set(_BUILTIN) | set(_REGISTRY)))


def get_space(name: str) -> Space:
    """The space called ``name``; ValueError listing the available ones if unknown."""
    if isinstance(name, Space):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return importlib.import_module(_BUILTIN[name]).SPACE
    raise ValueError(f"unknown search space {name!r}; available: {list(names())}")


def __getattr__(name):  # `from nasi_jax.spaces import nb201, darts` without importing both eagerly
    if name in _BUILTIN:
        return importlib.import_module(_BUILTIN[name])
    raise AttributeError(f"module 'nasi_jax.spaces' has no attribute {name!r}")
