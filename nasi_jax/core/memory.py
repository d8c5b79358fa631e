"""Memory budgets: parse a budget, estimate a compiled function's peak, refuse before running.

The check is done on the *compiled* executable, after XLA's buffer assignment and before
anything runs, so a request that cannot fit fails with one clear line instead of an
out-of-memory error (or swapping) halfway through::

    compiled = jax.jit(fn).lower(*args).compile()          # nothing has run yet
    check_fits(compiled, "2GiB", "exact_trace", "use a smaller chunk_size")
    out = compiled(*args)

The estimate (:func:`compiled_peak_bytes`) is XLA's own accounting of the executable's
device buffers:

    peak ~= argument bytes + output bytes + temp bytes - aliased bytes

``temp`` is the size of the scratch arena XLA allocates for the intermediates (already
packed by liveness, so buffers that are never alive together share space); ``aliased``
are outputs written in place of donated arguments, which would otherwise be counted
twice. Not included: the executable's code, runtime/allocator overhead and anything else
already resident on the device, so keep some headroom in the budget.

:func:`measure_peak` measures what a call actually used, for benchmarks.

Example:
    >>> import jax, jax.numpy as jnp
    >>> parse_bytes("1.5GiB"), parse_bytes("800MB"), parse_bytes("64k")
    (1610612736, 800000000, 65536)
    >>> f = lambda a, b: jnp.tanh(a @ b).sum()
    >>> a = b = jnp.ones((256, 256), jnp.float32)
    >>> compiled = jax.jit(f).lower(a, b).compile()
    >>> compiled_peak_bytes(compiled) >= 2 * 256 * 256 * 4   # at least its two arguments
    True
    >>> check_fits(compiled, "1GiB", "toy", "use smaller matrices") == compiled_peak_bytes(compiled)
    True
    >>> check_fits(compiled, "256KiB", "toy", "use smaller matrices")
    Traceback (most recent call last):
    ...
    nasi_jax.core.memory.MemoryBudgetError: toy needs an estimated ... MiB of device memory, over the budget of 0.25 MiB; ...
"""

from __future__ import annotations

import math
import re
import resource
import sys
import warnings
from typing import Any, Callable

import jax

__all__ = ["MemoryBudgetError", "parse_bytes", "compiled_peak_bytes", "check_fits", "measure_peak",
           "format_mib"]

MiB = 2 ** 20

_UNITS = {
    "": 1, "B": 1,
    "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40,          # bare letters: binary
    "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40,  # IEC: binary
    "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,      # SI: decimal
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


class MemoryBudgetError(ValueError):
    """A computation's estimated peak memory is over the budget (raised before it runs)."""


def parse_bytes(size: int | str) -> int:
    """A positive byte count from an int or a string such as ``"512MB"`` or ``"2GiB"``.

    Units (case-insensitive, optional space): none or ``B`` bytes; ``K M G T`` and
    ``KiB MiB GiB TiB`` binary (powers of 1024); ``KB MB GB TB`` decimal (powers of 1000).
    Fractions are allowed and rounded down to whole bytes: ``"1.5G"`` is 1 610 612 736.

    Raises:
        TypeError: not an int or str (bool and float included: write ``"1.5G"``).
        ValueError: malformed string, unknown unit, or not positive.

    Example:
        >>> parse_bytes(4096), parse_bytes("2GiB"), parse_bytes("1.5G"), parse_bytes("512 MB")
        (4096, 2147483648, 1610612736, 512000000)
        >>> parse_bytes("12 parsecs")
        Traceback (most recent call last):
        ...
        ValueError: memory size '12 parsecs': unknown unit 'parsecs' (use B, K/M/G/T or ...)
    """
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise TypeError(f"memory size must be an int (bytes) or a string like '2GiB', got {size!r}")
    if isinstance(size, int):
        n = size
    else:
        m = _SIZE.match(size)
        if m is None:
            raise ValueError(f"memory size {size!r} is not a number with an optional unit, e.g. '512MB' or '2GiB'")
        unit = m.group(2).upper()
        if unit not in _UNITS:
            raise ValueError(f"memory size {size!r}: unknown unit {m.group(2)!r} (use B, K/M/G/T or "
                             "KiB/MiB/GiB/TiB (binary), KB/MB/GB/TB (decimal))")
        n = math.floor(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"memory size must be positive, got {size!r}")
    return n


def format_mib(n: int | None) -> str:
    """``n`` bytes as ``'12.34 MiB'``; below 10 KiB ``'0.00 MiB (512 bytes)'``; None: ``'unknown'``."""
    if n is None:
        return "unknown"
    return f"{n / MiB:.2f} MiB" + (f" ({n} bytes)" if n < 10 * 1024 else "")


def compiled_peak_bytes(compiled: Any) -> int | None:
    """Estimated peak device memory of a compiled executable, in bytes (None if unknown).

    ``compiled`` is a ``jax.stages.Compiled`` (``jax.jit(f).lower(*args).compile()``). From
    XLA's ``compiled.memory_analysis()``:

        argument_size_in_bytes + output_size_in_bytes + temp_size_in_bytes
        - alias_size_in_bytes

    i.e. the inputs, the results and the scratch arena for intermediates, with outputs that
    reuse donated inputs counted once. Code size, allocator overhead and host-offloaded
    buffers (``host_*`` fields) are not counted. (The analysis also has a
    ``peak_memory_in_bytes`` field, but on XLA:CPU in jax 0.10 it leaves out the temp
    arena, e.g. ~7 KB for a function with a 450 KB arena, so it is not used.)

    Returns None when the backend gives no analysis.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> c = jax.jit(lambda x: 2 * x).lower(jnp.ones(1000, jnp.float32)).compile()
        >>> compiled_peak_bytes(c)    # 4000 bytes in, 4000 out
        8000
    """
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError, AttributeError):
        return None
    if isinstance(stats, (list, tuple)):  # some versions: one per device; budget the largest
        peaks = [_peak(s) for s in stats if s is not None]
        peaks = [p for p in peaks if p is not None]
        return max(peaks) if peaks else None
    return None if stats is None else _peak(stats)


def _peak(stats: Any) -> int | None:
    try:
        total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                 + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
    except AttributeError:
        return None
    return int(max(total, 0))


def check_fits(compiled: Any, budget_bytes: int | str, what: str,
               hint: str = "use a smaller chunk_size or batch") -> int | None:
    """Raise :class:`MemoryBudgetError` if ``compiled``'s estimated peak is over the budget.

    Call it after compiling and before running. ``what`` names the computation and ``hint``
    says what to change; both go into the one-line message together with the estimate
    (:func:`compiled_peak_bytes`) and the budget, in MiB.

    Returns:
        the estimate in bytes, or None (with a warning) when the backend gives no memory
        analysis, in which case nothing can be checked.
    """
    budget = parse_bytes(budget_bytes)
    est = compiled_peak_bytes(compiled)
    if est is None:
        warnings.warn(f"{what}: this backend gives no memory analysis; the memory budget of "
                      f"{format_mib(budget)} is not checked", RuntimeWarning, stacklevel=2)
        return None
    if est > budget:
        raise MemoryBudgetError(f"{what} needs an estimated {format_mib(est)} of device memory, "
                                f"over the budget of {format_mib(budget)}; {hint}")
    return est


def _rss_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process in KiB from /proc/self/status (Linux), else None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_rss_high_water() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure_peak(fn: Callable, *args: Any, device: Any = None) -> dict:
    """Run ``fn(*args)`` (waiting for its results) and report the memory it used at peak.

    Returns ``{"bytes", "source", "exact", "result"}``: ``bytes`` is the peak memory in use
    during the call *above what was in use just before it* (so arguments already resident
    are not counted), ``source`` says where it came from, ``exact`` is False when it is
    only a bound left by an earlier, higher peak that could not be reset, and ``result``
    is what ``fn`` returned.

    * ``"device_peak"`` (GPU/TPU, where ``device.memory_stats()`` exists):
      ``peak_bytes_in_use`` after the call minus ``bytes_in_use`` before. The peak counter
      cannot be reset, so if an earlier call peaked higher this is only an upper bound
      (``exact`` False); it is exact when the call set a new record.
    * ``"rss_high_water"`` (CPU, where ``memory_stats()`` is None): growth of the *process*
      resident-set high-water mark, which counts every allocation of the process (XLA
      buffers, compilation, Python) and only memory newly touched, not reused, so read it
      as an approximation. On Linux the mark is first reset to the current RSS
      (``/proc/self/clear_refs``) and ``bytes = VmHWM after - VmRSS before``. Otherwise
      the growth of ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux, bytes on macOS)
      is reported, which is 0 when the process had already peaked higher (a lower
      bound, ``exact`` False).
    * ``None`` when nothing is available (``bytes`` None).

    Compile ``fn`` first (e.g. call it once) if compilation should not be counted.

    Example:
        >>> import jax.numpy as jnp
        >>> r = measure_peak(lambda n: jnp.ones((n, 1024), jnp.float32).sum(), 256)
        >>> r["source"] in ("device_peak", "rss_high_water"), isinstance(r["bytes"], int)
        (True, True)
    """
    dev = device if device is not None else jax.devices()[0]
    try:
        stats = dev.memory_stats()
    except (NotImplementedError, RuntimeError, AttributeError):
        stats = None
    if stats and "peak_bytes_in_use" in stats and "bytes_in_use" in stats:
        before_in_use, before_peak = stats["bytes_in_use"], stats["peak_bytes_in_use"]
        result = jax.block_until_ready(fn(*args))
        after_peak = dev.memory_stats()["peak_bytes_in_use"]
        return {"bytes": int(after_peak - before_in_use), "source": "device_peak",
                "exact": bool(after_peak > before_peak), "result": result}

    # CPU: the process's resident-set high-water mark.
    rss_before = _rss_kib("VmRSS") if _reset_rss_high_water() else None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    try:
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        maxrss_before = None
    result = jax.block_until_ready(fn(*args))
    hwm_after = _rss_kib("VmHWM") if rss_before is not None else None
    if hwm_after is not None:
        return {"bytes": max(hwm_after - rss_before, 0) * 1024, "source": "rss_high_water",
                "exact": True, "result": result}
    if maxrss_before is not None:
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
        return {"bytes": int(max(growth, 0) * scale), "source": "rss_high_water",
                "exact": False, "result": result}
    return {"bytes": None, "source": None, "exact": False, "result": result}
