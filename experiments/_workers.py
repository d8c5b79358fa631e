"""Several processes sharing one experiment's runs: claims, a lock, pinned workers.

* :func:`claim_file`: an exclusive, non-blocking claim on a run (a lock file), released by
  the system when its process ends, however it ends.
* :func:`locked`: hold a lock file for a ``with`` block (a results file's read-merge-write).
* :func:`spawn_workers`: start N copies of a script, the usable cores dealt out among them
  (:func:`pin_cores` in each, before jax starts), and wait for them.

XLA:CPU sizes its thread pool by the cores a process may use and splits its work by them, so
a program's floats depend on that count (docs/darts.md measures it): a worker records it
(:func:`nasi_jax.records.usable_cores`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys

from nasi_jax.records import usable_core_ids  # also importable from here, its old path

__all__ = ["claim_file", "locked", "usable_core_ids", "pin_cores", "spawn_workers"]


def claim_file(path: str):
    """An exclusive, non-blocking lock on the file ``path`` (created if need be): the open file,
    to be held while this process works on what it stands for and closed after, or ``None``
    when another process holds it. The system releases it when the process ends, however it
    ends, so a stopped worker leaves nothing to clean up.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "seed0.claim")
        >>> held = claim_file(path)
        >>> claim_file(path) is None  # a second claim (even from this process) is refused
        True
        >>> held.close(); again = claim_file(path); again is not None
        True
        >>> again.close()
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def locked(path: str):
    """Hold an exclusive lock on the file ``path`` (created if need be; waiting for it) for
    the ``with`` block."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def pin_cores(cores) -> None:
    """Run this process on ``cores`` only; call it before jax's CPU client exists (the first
    computation), which sizes its threads by them. ``ValueError`` with the reason otherwise."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--cores: this system cannot pin a process to cores; leave it out")
    try:
        os.sched_setaffinity(0, cores)
    except (OSError, ValueError) as e:
        raise ValueError(f"--cores {','.join(map(str, cores))}: {e}") from None


def spawn_workers(script: str, argv: list[str], jobs: int) -> list[int]:
    """Run ``jobs`` copies of ``python script *argv``, the usable cores (sorted) dealt out among
    them (worker i gets the i-th, (i+jobs)-th, ... of them, as ``--cores LIST``, where the
    system can pin), and wait for all; their exit codes. Ctrl-C reaches the workers too
    (each may save its work), and this process waits up to 5 minutes for them before
    stopping them; a SIGTERM sent to this process is passed on to them.
    ``SystemExit`` when ``jobs`` exceeds the usable cores."""
    cores = usable_core_ids()
    if jobs > len(cores):
        raise SystemExit(f"--jobs {jobs}: this process may use {len(cores)} core(s); give at most --jobs {len(cores)}")
    pin = hasattr(os, "sched_setaffinity")
    procs = [subprocess.Popen([sys.executable, os.path.abspath(script), *argv,
                               *(["--cores", ",".join(map(str, cores[i::jobs]))] if pin else [])])
             for i in range(jobs)]

    def pass_on(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    before = signal.signal(signal.SIGTERM, pass_on)
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:  # the workers got it too: let them save their work
        for p in procs:
            try:
                p.wait(timeout=300)
            except subprocess.TimeoutExpired:
                p.terminate()
        raise
    finally:
        signal.signal(signal.SIGTERM, before)
