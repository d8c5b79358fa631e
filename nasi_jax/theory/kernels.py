"""Finite vs infinite width: the empirical NTK of a stax network against its analytic limit.

For a network ``f(theta, x) -> [N, K]`` in the NTK parameterisation, the empirical NTK at
initialisation, ``Theta_0 = J J^T`` (``J = df(X)/dtheta``), converges as the width ``w``
grows to a deterministic kernel ``Theta_inf (x) I_K`` (Jacot et al. 2018), with fluctuations
of order ``1/sqrt(w)``. This module measures that convergence:

* :func:`empirical_ntk` — ``[N, N]``: the empirical NTK averaged over the ``K`` outputs'
  diagonal blocks (neural-tangents' ``trace_axes=(-1,)`` *mean*, see DESIGN.md);
* :func:`analytic_ntk` — ``[N, N]``: ``Theta_inf`` from the stax ``kernel_fn``;
* :func:`relative_error` — ``||A - B||_F / ||B||_F``;
* :func:`full_trace` — ``tr`` of the full ``[N K, N K]`` kernel, ``K * tr(k)``, which is
  what :func:`nasi_jax.core.ntk.exact_trace` returns for the empirical one;
* :func:`width_sweep` — errors of the kernel and of its trace over widths, seeds and
  architectures, and :func:`loglog_slope` the fitted rate (theory: about ``-1/2``).

Example:
    >>> import jax
    >>> from nasi_jax.theory import kernels, spaces
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
    >>> net = spaces.build("mlp", "relu-relu-relu", width=2048)
    >>> _, params = net.init_fn(jax.random.PRNGKey(1), x.shape)
    >>> err = kernels.relative_error(kernels.empirical_ntk(net.apply_fn, params, x),
    ...                              kernels.analytic_ntk(net.kernel_fn, x))
    >>> bool(err < 0.2)
    True
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.theory import spaces

__all__ = ["analytic_ntk", "empirical_ntk", "full_trace", "loglog_slope", "relative_error",
           "width_sweep"]


@functools.lru_cache(maxsize=256)
def _empirical_fn(apply_fn: Callable, implementation: int, trace_axes: tuple = (-1,)) -> Callable:
    from nasi_jax.nt_compat import SUPPORTED_IMPLEMENTATIONS, import_neural_tangents
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {SUPPORTED_IMPLEMENTATIONS} on this "
                         f"jax, got {implementation!r}")
    nt = import_neural_tangents()
    # vmap_axes=0: the stax spaces have no batch statistics, examples are independent.
    return jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0,
                                       implementation=implementation))


def empirical_ntk(apply_fn: Callable, params: Any, x: jax.Array, *, implementation: int = 1,
                  full: bool = False) -> jax.Array:
    """Empirical NTK at ``params`` (jit-compiled once per ``apply_fn``).

    ``full=False``: ``[N, N]``, ``(1/K) sum_k J_k J_k^T``, the mean of the ``K`` outputs'
    diagonal blocks (comparable with the analytic kernel). ``full=True``: ``[N, N, K, K]``,
    every block, cross-output terms included (the exact linearisation of a finite net).
    """
    return _empirical_fn(apply_fn, implementation, () if full else (-1,))(x, None, params)


@functools.lru_cache(maxsize=256)
def _analytic_fn(kernel_fn: Callable) -> Callable:
    return jax.jit(lambda x: kernel_fn(x, None, "ntk"))


def analytic_ntk(kernel_fn: Callable, x: jax.Array) -> jax.Array:
    """Infinite-width NTK ``[N, N]`` of one output (``kernel_fn(x, None, 'ntk')``, jitted: eager
    stax kernels crashed XLA:CPU on jax 0.10.2 in our runs)."""
    return _analytic_fn(kernel_fn)(x)


def full_trace(k: jax.Array, num_outputs: int) -> jax.Array:
    """``tr(k (x) I_K) = K tr(k)``: the trace of the full ``[N K, N K]`` NTK."""
    return num_outputs * jnp.trace(k)


def relative_error(a: jax.Array, ref: jax.Array) -> jax.Array:
    """``||a - ref||_F / ||ref||_F`` (for scalars, ``|a - ref| / |ref|``)."""
    return jnp.linalg.norm(jnp.ravel(a - ref)) / jnp.linalg.norm(jnp.ravel(ref))


def loglog_slope(widths: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(width)`` (theory: ``-1/2``)."""
    w, e = np.asarray(widths, float), np.asarray(errors, float)
    if w.shape != e.shape or w.size < 2 or np.any(w <= 0) or np.any(e <= 0):
        raise ValueError(f"need >= 2 positive widths and errors of the same length, got "
                         f"widths {w.tolist()}, errors {e.tolist()}")
    return float(np.polyfit(np.log(w), np.log(e), 1)[0])


def width_sweep(space: str, archs: Sequence[str], widths: Sequence[int], x: jax.Array,
                seeds: Sequence[int], *, num_classes: int = spaces.NUM_CLASSES,
                progress: bool = True) -> dict[str, Any]:
    """Empirical vs analytic NTK for every ``(arch, width, seed)``.

    Returns a dict of numpy arrays: ``kernel_error`` and ``trace_error`` ``[A, W, S]``
    (relative errors of the ``[N, N]`` kernel and of its trace), ``empirical_trace``
    ``[A, W, S]`` and ``analytic_trace`` ``[A]`` (full traces, ``K tr(k)``), and ``seconds``.
    Weights for seed ``s`` come from ``PRNGKey(s)``.
    """
    t0 = time.perf_counter()
    A, W, S = len(archs), len(widths), len(seeds)
    kerr, terr, emp = (np.zeros((A, W, S)) for _ in range(3))
    ana = np.zeros(A)
    for a, arch in enumerate(archs):
        k_inf = analytic_ntk(spaces.build(space, arch, 1, num_classes).kernel_fn, x)
        ana[a] = float(full_trace(k_inf, num_classes))
        for w, width in enumerate(widths):
            net = spaces.build(space, arch, width, num_classes)
            fn = _empirical_fn(net.apply_fn, 1)
            for s, seed in enumerate(seeds):
                _, params = net.init_fn(jax.random.PRNGKey(seed), x.shape)
                k = fn(x, None, params)
                kerr[a, w, s] = float(relative_error(k, k_inf))
                emp[a, w, s] = float(full_trace(k, num_classes))
                terr[a, w, s] = abs(emp[a, w, s] - ana[a]) / ana[a]
            _empirical_fn.cache_clear()  # one compiled function per (arch, width): free it
        if progress:
            print(f"[theory] {space} {a + 1}/{A} {arch}: kernel error "
                  + " ".join(f"{e:.3f}" for e in kerr[a].mean(-1)), flush=True)
    return {"kernel_error": kerr, "trace_error": terr, "empirical_trace": emp,
            "analytic_trace": ana, "seconds": time.perf_counter() - t0}
