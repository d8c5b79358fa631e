"""The persistent XLA compilation cache: compile once per machine, not once per run.

``nasi search``, ``nasi score`` and ``nasi train`` turn it on by default (``nasi bench`` does
not, so that its compile figures stay true): a compiled program is stored on disk under a key
of its HLO, jax/XLA versions and flags, and a later process that builds the same program loads
it instead of compiling it. The results are the same; only the compile time goes.

* :func:`resolve_dir`: which folder, in this order: none when switched off
  (``--no-compilation-cache``; :func:`disable`); an explicit path (``--compilation-cache DIR``);
  ``$JAX_COMPILATION_CACHE_DIR`` when the user set jax's own variable; else :func:`default_dir`
  (``$NASI_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nasi-jax``, else ``~/.cache/nasi-jax``).
* :func:`enable`: points jax at the folder, with a size cap (:data:`DEFAULT_MAX_BYTES`, or
  ``$JAX_COMPILATION_CACHE_MAX_SIZE``): jax
  then evicts least-recently-used programs and takes a file lock (``filelock``) around every
  read and write, so several processes can share one folder.
* :func:`stats`: this process's cache hits and misses (jax's monitoring events), which
  ``nasi search`` prints and records beside its compile time.
* :func:`usage` and :func:`clear` (``nasi cache``, ``nasi cache --clear``): the folder's
  size, and removing the programs jax stored there (nothing else is touched).

Only programs that took at least ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` (default
here 1 s) to compile are stored.

Example:
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> resolve_dir(d, enabled=True) == d, resolve_dir(d, enabled=False)
    (True, None)
    >>> usage(d)
    (0, 0)
    >>> open(os.path.join(d, "abc-cache"), "wb").write(b"xyz")
    3
    >>> usage(d), clear(d), usage(d)
    ((1, 3), 1, (0, 0))
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_MAX_BYTES", "default_dir", "resolve_dir", "enable", "disable", "usage", "clear", "stats",
           "current_dir"]

DEFAULT_MAX_BYTES = 4 * 1024 ** 3
"""The cache's size cap (4 GiB; least-recently-used programs are evicted beyond it)."""

_SUFFIXES = ("-cache", "-atime")  # what jax's LRU cache writes: programs and access times
_EVENTS = {"/jax/compilation_cache/cache_hits": "hits", "/jax/compilation_cache/cache_misses": "misses"}
_counts = {"hits": 0, "misses": 0}   # this process's, counted by one listener (jax's events are global)
_listening = []


def _listen(event: str, **kwargs) -> None:
    if event in _EVENTS:
        _counts[_EVENTS[event]] += 1


def stats() -> dict:
    """``{"hits": h, "misses": m}``: programs this process loaded from the cache and compiled
    and stored, since the first :func:`enable` (zeros before it)."""
    return dict(_counts)


def default_dir() -> str:
    """``$NASI_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nasi-jax``, else ``~/.cache/nasi-jax``."""
    if os.environ.get("NASI_JAX_CACHE_DIR"):
        return os.environ["NASI_JAX_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nasi-jax")


def resolve_dir(path: str | None = None, enabled: bool = True) -> str | None:
    """The cache folder to use (module docstring), or None when ``enabled`` is false."""
    if not enabled:
        return None
    if path:
        return path
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_dir()


def enable(path: str, max_bytes: int | None = None) -> str:
    """Point jax's persistent compilation cache at ``path`` (created if missing); returns it.

    ``max_bytes``: the size cap (default ``$JAX_COMPILATION_CACHE_MAX_SIZE``, else
    :data:`DEFAULT_MAX_BYTES`). Call it before the first compilation of the process; a later
    call with another folder resets jax's cache so that the new folder is the one used.
    ``OSError`` (one line) when the folder cannot be created or written."""
    import jax
    path = os.path.abspath(os.path.expanduser(path))
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OSError(f"compilation cache folder {path!r} is not writable ({e.strerror}); give "
                      f"another with --compilation-cache DIR or switch it off with "
                      f"--no-compilation-cache") from None
    if not _listening:
        jax.monitoring.register_event_listener(_listen)
        _listening.append(True)
    previous = current_dir()
    if max_bytes is None:
        max_bytes = int(os.environ.get("JAX_COMPILATION_CACHE_MAX_SIZE", DEFAULT_MAX_BYTES))
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if previous and os.path.abspath(previous) != path:
        _reset()
    return path


def disable() -> None:
    """Switch the persistent cache off for this process (nothing is read or written), even
    when ``$JAX_COMPILATION_CACHE_DIR`` switched it on."""
    import jax
    jax.config.update("jax_enable_compilation_cache", False)
    _reset()


def _reset() -> None:
    """Make jax re-read the cache settings at its next compilation (jax fixes them at the
    first one; ``reset_cache`` is not public API, hence the guard)."""
    try:
        from jax._src import compilation_cache as _jcc
        _jcc.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - other jax versions
        pass


def current_dir() -> str | None:
    """The folder jax's persistent cache uses in this process (None: off)."""
    import jax
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir or None


def _entries(path: str) -> list[str]:
    if not os.path.isdir(path):
        return []
    return [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(_SUFFIXES)]


def usage(path: str) -> tuple[int, int]:
    """``(programs, bytes)`` stored in the cache folder ``path`` ((0, 0) if it does not exist)."""
    files = _entries(path)
    programs = sum(f.endswith("-cache") for f in files)
    return programs, sum(os.path.getsize(f) for f in files)


def clear(path: str) -> int:
    """Remove the programs jax stored in ``path`` (and their access times); returns how many
    programs were removed. Other files in the folder are left alone."""
    n = 0
    for f in _entries(path):
        n += f.endswith("-cache")
        try:
            os.remove(f)
        except FileNotFoundError:  # another process evicted it meanwhile
            pass
    return n
