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
``GLIBC_TUNABLES``. ``nasi`` (run as a program) and the experiments and benchmarks call it
before anything else; it does nothing where it cannot help (:func:`unavailable` says why),
when the tunable is already set, or with ``NASI_JAX_HUGEPAGES=0`` in the environment.

Example:
    >>> environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) is None  # already on
    True
    >>> environment({"NASI_JAX_HUGEPAGES": "0"}) is None  # opted out
    True
    >>> env = environment({"GLIBC_TUNABLES": "glibc.cpu.x86_shstk=on"})
    >>> env is None or env["GLIBC_TUNABLES"] == "glibc.cpu.x86_shstk=on:glibc.malloc.hugetlb=1"
    True
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["TUNABLE", "OPT_OUT", "unavailable", "enabled", "environment", "rerun_with_hugepages"]

TUNABLE = "glibc.malloc.hugetlb=1"
"""The glibc tunable that makes malloc ask for transparent huge pages."""

OPT_OUT = "NASI_JAX_HUGEPAGES"
"""``NASI_JAX_HUGEPAGES=0`` in the environment: never rerun a process for huge pages."""

_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def unavailable() -> str | None:
    """Why this system cannot use the tunable (not Linux, not glibc >= 2.35, transparent huge
    pages off in the kernel), or ``None`` when it can."""
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


def enabled(environ=None) -> bool:
    """Whether ``environ`` (default: this process's) sets the tunable."""
    environ = os.environ if environ is None else environ
    return TUNABLE in environ.get("GLIBC_TUNABLES", "").split(":")


def environment(environ=None) -> dict | None:
    """``environ`` (default: this process's environment) with :data:`TUNABLE` appended to
    ``GLIBC_TUNABLES``, or ``None`` when a process should not be rerun: the tunable (any value
    of ``glibc.malloc.hugetlb``) is already there, ``NASI_JAX_HUGEPAGES=0``, or
    :func:`unavailable`."""
    environ = dict(os.environ if environ is None else environ)
    have = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    if environ.get(OPT_OUT) == "0" or any(t.startswith("glibc.malloc.hugetlb=") for t in have):
        return None
    if unavailable() is not None:
        return None
    environ["GLIBC_TUNABLES"] = ":".join([*have, TUNABLE])
    return environ


def rerun_with_hugepages() -> None:
    """Replace this process with itself under :func:`environment` (``os.execve``: the same pid,
    interpreter, options and arguments, :data:`sys.orig_argv`); return at once when there is
    nothing to do, and with a warning on stderr when the rerun fails (the process then goes
    on without huge pages). Call it first thing in a program's ``__main__`` (work done before
    it is done twice), never from library code or under a test runner."""
    env = environment()
    if env is None:
        return
    if not sys.executable:  # an embedded interpreter: nothing to rerun
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as e:  # the process goes on as it is: slower, never wrong
        print(f"nasi_jax: could not rerun with huge pages ({e}); going on without them "
              f"(set {OPT_OUT}=0 to skip the attempt)", file=sys.stderr)
