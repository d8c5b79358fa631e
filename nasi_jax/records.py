"""What every result file carries, how it is written, and the one progress line.

* :func:`versions`: python and the numerical stack, recorded in every result file.
* :func:`command_line`: the command that produced a result (``nasi search ...``).
* :func:`write_text_atomic`, :func:`write_json_atomic`, :func:`save_npz_atomic`: write through
  a temporary file in the same folder and ``os.replace``, so a reader never sees half a file
  and an interrupted run leaves the old file (or none) behind.
* :class:`Progress`: one redrawn line on stderr, ``label done/total unit, rate, elapsed,
  ETA`` plus a caller's note; the search (steps), the scorer (cells) and training (steps,
  with epoch, loss and accuracy in the note) share it.

This module sits at the bottom of the package: it imports nothing from nasi_jax at module
level (:mod:`nasi_jax.hugepages`, also at the bottom, inside :func:`versions`), and jax only
inside :func:`versions`.

Example:
    >>> import io, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> write_json_atomic(path, {"a": 1})
    >>> open(path).read()
    '{\\n  "a": 1\\n}\\n'
    >>> out = io.StringIO()
    >>> p = Progress(4, unit="steps", label="[demo]", stream=out, interval=0)
    >>> p.update(2); p.close()
    >>> "[demo] 2/4 steps" in out.getvalue()
    True
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from typing import Any, Sequence

__all__ = ["versions", "usable_cores", "usable_core_ids", "command_line", "now_utc", "write_text_atomic", "write_json_atomic", "write_record",
           "save_npz_atomic", "Progress", "format_duration"]


def usable_core_ids() -> list[int]:
    """The CPU cores this process may run on, sorted: its affinity mask where the system has one,
    else all of them (macOS has no affinity masks)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """How many CPU cores this process may run on (:func:`usable_core_ids`). XLA:CPU sizes its
    thread pool by it, and partitions its reductions so: the same program rounds differently on
    1 core and on 2 (``docs/darts.md``)."""
    return len(usable_core_ids())


def versions() -> dict[str, str]:
    """Versions of python and the numerical stack, the backend and the machine (``cpu_count``:
    the machine's cores; ``cpu_cores``: those this process may use, :func:`usable_cores`;
    ``malloc_hugetlb``: whether glibc's malloc gives this process huge pages,
    :func:`nasi_jax.hugepages.enabled`, which changes the speed, not the numbers)."""
    import flax
    import jax
    import jaxlib
    import numpy
    import optax

    import nasi_jax
    from nasi_jax import hugepages
    return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
            "nasi_jax": nasi_jax.__version__, "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "cpu_cores": usable_cores(), "malloc_hugetlb": hugepages.enabled()}


def command_line(prog: str, argv: Sequence[str]) -> str:
    """``prog`` and its arguments as one shell-quoted line."""
    return " ".join([prog, *(shlex.quote(a) for a in argv)])


def now_utc() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _atomic(path: str, write, suffix: str, mode: str = "w") -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 -> the usual permissions
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder + ``os.replace``."""
    _atomic(path, lambda fh: fh.write(text), os.path.splitext(path)[1])


def write_json_atomic(path: str, obj: Any) -> None:
    """Write JSON (indented) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_record(path: str, prog: str, argv: Sequence[str], result: dict[str, Any]) -> None:
    """Write a benchmark's or experiment's ``result`` to ``path`` (JSON, atomically) as a record:
    ``command`` (``prog`` and ``argv``, :func:`command_line`), ``created`` (:func:`now_utc`),
    ``result``'s fields in their order, then ``versions`` (:func:`versions`)."""
    write_json_atomic(path, {"command": command_line(prog, argv), "created": now_utc(), **result,
                             "versions": versions()})


def save_npz_atomic(path: str, **arrays) -> None:
    """``numpy.savez`` to ``path`` atomically."""
    import numpy as np
    _atomic(path, lambda fh: np.savez(fh, **arrays), ".npz", mode="wb")


def save_figure_atomic(fig, path: str, **kwargs) -> None:
    """``fig.savefig`` to ``path`` atomically (the format from the file name)."""
    ext = os.path.splitext(path)[1].lstrip(".") or "png"
    _atomic(path, lambda fh: fig.savefig(fh, format=ext, **kwargs), "." + ext, mode="wb")


def format_duration(s: float) -> str:
    """``[Dd ]hh:mm:ss``, or ``?`` for a non-finite duration."""
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


class Progress:
    """One line on ``stream`` (stderr), redrawn at most every ``interval`` seconds:
    ``label done/total unit, R unit/s, elapsed E, ETA hh:mm:ss  note``.

    ``initial`` counts work already done (a resumed run); the rate counts from the first
    :meth:`update` call (after the first, compiling, unit of work) unless ``start`` is
    called. Thread-safe: several workers may update it.
    """

    def __init__(self, total: int, *, unit: str = "steps", label: str = "[nasi]", initial: int = 0,
                 enabled: bool = True, stream=None, interval: float = 1.0):
        self.total, self.unit, self.label, self.enabled = total, unit, label, enabled
        self.stream, self.interval = stream or sys.stderr, interval
        self.done = initial
        self._t0, self._d0, self._last, self._len = None, initial, -math.inf, 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Count the rate from now (e.g. after compiling)."""
        self._t0, self._d0 = time.perf_counter(), self.done

    def due(self) -> bool:
        """Whether :meth:`update` would draw now (so a caller can skip fetching values)."""
        return self.enabled and time.perf_counter() - self._last >= self.interval

    def update(self, n: int = 1, note: str = "", *, force: bool = False) -> None:
        with self._lock:
            self.done += n
            if not self.enabled:
                return
            now = time.perf_counter()
            if self._t0 is None:
                self._t0, self._d0 = now, self.done - n
            if not (force or self.done >= self.total or now - self._last >= self.interval):
                return
            self._last = now
            el = now - self._t0
            rate = (self.done - self._d0) / el if el > 0 else float("nan")
            eta = (self.total - self.done) / rate if rate == rate and rate > 0 else float("nan")
            rate_s = f"{rate:.2f} {self.unit}/s" if rate == rate else f"-- {self.unit}/s"
            line = (f"{self.label} {self.done}/{self.total} {self.unit}, {rate_s}, elapsed {el:.0f}s, "
                    f"ETA {format_duration(eta)}" + (f"  {note}" if note else ""))
            self.stream.write("\r" + line + " " * max(0, self._len - len(line)))
            self.stream.flush()
            self._len = len(line)

    def close(self) -> None:
        """End the line (once anything was drawn)."""
        with self._lock:
            if self.enabled and self._len:
                self.stream.write("\n")
                self.stream.flush()
                self._len = 0
