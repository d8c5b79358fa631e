"""Transparent huge pages for XLA:CPU's buffers: glibc's ``glibc.malloc.hugetlb=1`` tunable.

XLA:CPU takes each program's buffers from ``malloc``; glibc serves large blocks with fresh
``mmap`` memory and returns it on ``free``, so every step of a CPU search touches several GB
of new 4 KiB pages, each one a page fault the kernel has to zero and map. On the DARTS
supernet that is about 9 M minor faults and a third of the CPU time of a search step
(``docs/darts.md``). With ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35) malloc
asks for transparent huge pages (``madvise(MADV_HUGEPAGE)``), 2 MiB each: a few hundred
thousand faults a step instead. The numbers do not change (only where the bytes live); the
speed does, and is measured in ``docs/darts.md``.

glibc reads its tunables once, when a process starts, so they cannot be switched on from
inside it: :func:`rerun_with_hugepages` replaces the running process with itself (the same
interpreter, options and arguments, :data:`sys.orig_argv`), the tunable added to
``GLIBC_TUNABLES``. The ``nasi`` program (its console script and ``python -m nasi_jax.cli``)
and the experiments' and benchmarks' ``__main__`` blocks call it before their work; it does
nothing where it cannot help (:func:`unavailable` says why), when ``glibc.malloc.hugetlb``
is already set, with ``NASI_JAX_HUGEPAGES=0`` (or ``false``, ``no``, ``off``), in an
interactive interpreter or a program read from stdin, and it reruns a process at most once
(``NASI_JAX_HUGEPAGES_RERUN`` marks the rerun: where glibc drops the tunable, as for
set-user-ID or file-capability binaries, the rerun warns instead of looping).

Example:
    >>> environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) is None  # already on
    True
    >>> environment({"NASI_JAX_HUGEPAGES": "off"}) is None  # opted out
    True
    >>> environment({"NASI_JAX_HUGEPAGES_RERUN": "1"}) is None  # this process is the rerun
    True
    >>> env = environment({"GLIBC_TUNABLES": "glibc.cpu.x86_shstk=on"})
    >>> env is None or env["GLIBC_TUNABLES"] == "glibc.cpu.x86_shstk=on:glibc.malloc.hugetlb=1"
    True
"""

from __future__ import annotations

import functools
import os
import platform
import sys

__all__ = ["TUNABLE", "OPT_OUT", "RERUN", "unavailable", "enabled", "environment", "rerun_with_hugepages"]

TUNABLE = "glibc.malloc.hugetlb=1"
"""The glibc tunable that makes malloc ask for transparent huge pages."""

OPT_OUT = "NASI_JAX_HUGEPAGES"
"""``NASI_JAX_HUGEPAGES=0`` (or ``false``, ``no``, ``off``): never rerun a process for huge pages."""

RERUN = "NASI_JAX_HUGEPAGES_RERUN"
"""Set in the environment of a rerun process, so that it is never rerun again."""

_OFF = ("0", "false", "no", "off")

_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


@functools.cache
def unavailable() -> str | None:
    """Why this system cannot use the tunable (not Linux, not glibc >= 2.35, transparent huge
    pages off in the kernel), or ``None`` when it can (looked up once a process)."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    lib, version = platform.libc_ver()
    try:
        too_old = tuple(int(v) for v in version.split(".")[:2]) < (2, 35)
    except ValueError:
        too_old = True
    if lib != "glibc" or too_old:
        return f"needs glibc >= 2.35 (this C library: {lib or 'unknown'} {version})"
    try:
        with open(_THP) as f:
            mode = f.read()
    except OSError:
        return f"the kernel has no transparent huge pages ({_THP} unreadable)"
    if "[never]" in mode:
        return f"transparent huge pages are off in the kernel ({_THP}: {mode.strip()})"
    return None


def _hugetlb(environ) -> str | None:
    """The value of ``glibc.malloc.hugetlb`` in ``environ``'s ``GLIBC_TUNABLES``, if any."""
    for t in environ.get("GLIBC_TUNABLES", "").split(":"):
        if t.startswith("glibc.malloc.hugetlb="):
            return t.split("=", 1)[1]
    return None


def enabled(environ=None) -> bool:
    """Whether a process with ``environ`` (default: this process's) gets huge pages from malloc:
    ``glibc.malloc.hugetlb`` set to 1 (transparent huge pages) or 2 (reserved ones) on a
    system that has them (:func:`unavailable` is ``None``)."""
    environ = os.environ if environ is None else environ
    return _hugetlb(environ) in ("1", "2") and unavailable() is None


def environment(environ=None) -> dict | None:
    """``environ`` (default: this process's environment) with :data:`TUNABLE` appended to
    ``GLIBC_TUNABLES`` and :data:`RERUN` set, or ``None`` when a process should not be rerun:
    ``glibc.malloc.hugetlb`` (any value) is already there, it is a rerun already,
    :data:`OPT_OUT` says no, or :func:`unavailable`."""
    environ = dict(os.environ if environ is None else environ)
    if (environ.get(OPT_OUT, "").strip().lower() in _OFF or environ.get(RERUN)
            or _hugetlb(environ) is not None or unavailable() is not None):
        return None
    have = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    environ["GLIBC_TUNABLES"] = ":".join([*have, TUNABLE])
    environ[RERUN] = "1"
    return environ


def rerun_with_hugepages() -> None:
    """Replace this process with itself under :func:`environment` (``os.execve``: the same pid,
    interpreter, options and arguments, :data:`sys.orig_argv`); return at once when there is
    nothing to do, and with a warning on stderr when the rerun fails (the process then goes
    on without huge pages). Call it first thing in a program's ``__main__`` (work done before
    it is done twice), never from library code or under a test runner."""
    if os.environ.get(RERUN) and not enabled():
        print(f"nasi_jax: reran with {TUNABLE}, but glibc did not keep it (set-user-ID or "
              f"capabilities?); going on without huge pages ({OPT_OUT}=0 skips the attempt)",
              file=sys.stderr)
        return
    env = environment()
    if env is None or not sys.executable or sys.argv[0] in ("", "-"):
        return  # nothing to do; an embedded interpreter, an interactive one or a program on stdin
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as e:  # the process goes on as it is: slower, never wrong
        print(f"nasi_jax: could not rerun with huge pages ({e}); going on without them "
              f"({OPT_OUT}=0 skips the attempt)", file=sys.stderr)
