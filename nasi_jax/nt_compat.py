"""Make ``neural-tangents`` 0.6.5 importable and usable on current JAX.

Why this exists: neural-tangents 0.6.5 (the last release) targets jax ~0.4 and
fails to import on jax >= 0.6 (e.g. ``cannot import name 'Jaxpr' from
'jax.core'``). NASI only needs its empirical NTK (implementations 1 and 2),
infinite-width ``stax`` kernels, ``monte_carlo_kernel_fn``, ``batch`` and
``predict``, all of which work once a handful of moved names are restored.

What :func:`import_neural_tangents` patches, before the first import, adding
only attributes that are missing (nothing existing is overwritten; the patches
are idempotent):

* ``jax.core``: ``Jaxpr``, ``JaxprEqn``, ``Literal``, ``Var``, ``Primitive``
  (now in ``jax.extend.core``) and ``DShapedArray`` (removed; a placeholder
  class that no value is ever an instance of).
* ``jax.util`` (removed module): ``safe_map``, ``safe_zip``.
* ``jax.interpreters.ad``: ``source_info_util``, ``config``,
  ``reducing_transposes``, ``zeros_like_p``.
* ``neural_tangents.experimental`` (the TensorFlow bridge, which needs
  TensorFlow) is replaced by a stub module.
* ``neural_tangents._src.empirical._get_flops`` accepts the ``dict`` that
  ``compiled.cost_analysis()`` returns on new jax (it used to be a list).

Empirical NTK implementation 3 (structured derivatives) and ``AUTO`` still do
not work; only :data:`SUPPORTED_IMPLEMENTATIONS` are allowed by the helper.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = [
    "SUPPORTED_IMPLEMENTATIONS",
    "empirical_ntk_trace",
    "import_neural_tangents",
]

SUPPORTED_IMPLEMENTATIONS = (1, 2)

_INSTALL_HINT = (
    "neural-tangents is not installed. Install it without its (TensorFlow) "
    "dependencies with: pip install --no-deps neural-tangents==0.6.5 frozendict"
)

_NT: types.ModuleType | None = None


def _add_missing(obj: Any, name: str, make: Callable[[], Any]) -> None:
    """Set ``obj.name = make()`` only if ``obj`` has no attribute ``name``."""
    if not hasattr(obj, name):
        setattr(obj, name, make())


def _safe_map(f, *args):
    args = [list(a) for a in args]
    n = len(args[0])
    for a in args[1:]:
        if len(a) != n:
            raise ValueError(f"length mismatch: {[len(a) for a in args]}")
    return list(map(f, *args))


def _safe_zip(*args):
    args = [list(a) for a in args]
    n = len(args[0])
    for a in args[1:]:
        if len(a) != n:
            raise ValueError(f"length mismatch: {[len(a) for a in args]}")
    return list(zip(*args))


def _patch_jax() -> None:
    import jax.core as jcore
    import jax.extend.core as ext_core
    from jax.interpreters import ad

    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        _add_missing(jcore, name, lambda name=name: getattr(ext_core, name))

    class DShapedArray:  # never instantiated: dynamic shapes are gone.
        """Placeholder for the removed ``jax.core.DShapedArray``."""

    _add_missing(jcore, "DShapedArray", lambda: DShapedArray)

    # jax.util (the public module) no longer exists.
    try:
        jutil = importlib.import_module("jax.util")
    except ImportError:
        jutil = types.ModuleType("jax.util", "nt_compat stand-in for jax.util")
        sys.modules["jax.util"] = jutil
    _add_missing(jutil, "safe_map", lambda: _safe_map)
    _add_missing(jutil, "safe_zip", lambda: _safe_zip)

    from jax._src import ad_util, source_info_util
    from jax._src.interpreters import ad as ad_impl

    _add_missing(ad, "source_info_util", lambda: source_info_util)
    _add_missing(ad, "config", lambda: jax.config)  # needs .jax_enable_checks
    _add_missing(
        ad, "reducing_transposes",
        lambda: getattr(ad_impl, "reducing_transposes", {}))
    _add_missing(
        ad, "zeros_like_p",
        lambda: getattr(ad_util, "zeros_like_p", None)
        or jcore.Primitive("zeros_like"))


def _stub_experimental() -> None:
    name = "neural_tangents.experimental"
    if name in sys.modules:
        return
    stub = types.ModuleType(
        name, "Stub inserted by nasi_jax.nt_compat: the TensorFlow bridge "
        "(neural_tangents.experimental) is not available.")

    def __getattr__(attr: str):
        raise AttributeError(
            f"neural_tangents.experimental.{attr} is unavailable: "
            "nasi_jax.nt_compat stubs the TensorFlow bridge.")

    stub.__getattr__ = __getattr__
    sys.modules[name] = stub


def _patch_get_flops(nt: types.ModuleType) -> None:
    empirical = sys.modules["neural_tangents._src.empirical"]
    original = empirical._get_flops
    if getattr(original, "_nt_compat", False):
        return

    def _get_flops(f: Callable, optimize: bool, *a, **kw) -> float:
        lowered = jax.jit(f).lower(*a, **kw)
        analysis = lowered.compile().cost_analysis() if optimize else (
            lowered.cost_analysis())
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0]
        return analysis["flops"]

    _get_flops._nt_compat = True
    empirical._get_flops = _get_flops


def import_neural_tangents() -> types.ModuleType:
    """Return the ``neural_tangents`` module, patched for current JAX (cached).

    Raises:
      ImportError: if neural-tangents is not installed (with install hint).
    """
    global _NT
    if _NT is not None:
        return _NT
    if importlib.util.find_spec("neural_tangents") is None:
        raise ImportError(_INSTALL_HINT)
    _patch_jax()
    _stub_experimental()
    nt = importlib.import_module("neural_tangents")
    _patch_get_flops(nt)
    _NT = nt
    return nt


def empirical_ntk_trace(
    f: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    *,
    implementation: int = 1,
    vmap_axes: Any = None,
) -> jax.Array:
    """Trace of the empirical NTK of ``f(params, x)``, summed over everything.

    Returns ``sum_{b,k} ||d f(params, x)[b, k] / d params||^2``, i.e. the
    trace of the full ``[B*K, B*K]`` NTK (equivalently ``||J||_F^2``).

    ``f`` maps ``(params, x)`` to outputs of shape ``[B, K]``; ``params`` may
    be any pytree (e.g. a flax variables dict). ``vmap_axes=None`` (default)
    makes no assumption that examples are independent, which is required when
    ``f`` mixes examples (e.g. batch normalisation in training mode).

    Note: ``nt.empirical_ntk_fn(..., trace_axes=(-1,))`` returns the *mean*
    over the traced logit axis, so the ``[B, B]`` kernel's trace is multiplied
    by ``K`` here to obtain the sum.

    Raises:
      ValueError: if ``implementation`` is not in ``SUPPORTED_IMPLEMENTATIONS``.
    """
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise ValueError(
            f"Unsupported NTK implementation {implementation!r}; supported on "
            f"this jax version: {SUPPORTED_IMPLEMENTATIONS}.")
    nt = import_neural_tangents()
    kernel_fn = nt.empirical_ntk_fn(
        f, trace_axes=(-1,), vmap_axes=vmap_axes,
        implementation=implementation)
    k = kernel_fn(x, None, params)  # [B, B], mean over the K logits
    num_logits = jax.eval_shape(f, params, x).shape[-1]
    return jnp.trace(k) * num_logits
