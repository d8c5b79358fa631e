"""What the subcommands share: argument types, the scale options, output checks (private)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

__all__ = ["positive_int", "DefaultsFormatter", "add_scale_args", "add_cache_args", "setup_cache", "setup_scale",
           "check_writable"]


def positive_int(name):
    """An argparse type: an integer > 0, with a one-line error naming the flag."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {value}")
        return value
    return parse


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where a flag has a default of its own (not the preset's)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_scale_args(p, what: str) -> None:
    p.add_argument("--devices", default="1", help=f"shard the {what} over this many local devices "
                   "('all' for every device; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                   "makes N)")
    p.add_argument("--distributed", action="store_true", help="multi-host: call "
                   "jax.distributed.initialize() first (see README, several hosts) and use every "
                   "process's devices")
    p.add_argument("--memory-budget", metavar="SIZE", help="device memory the compiled program may "
                   "use, e.g. 2GiB or 800MB (XLA's estimate, checked before running)")
    add_cache_args(p)


def add_cache_args(p) -> None:
    """``--compilation-cache DIR`` / ``--no-compilation-cache`` (:mod:`nasi_jax.compilation_cache`)."""
    p.add_argument("--compilation-cache", metavar="DIR", help="persistent XLA compilation cache "
                   "folder: a later run of the same program loads it instead of compiling (default: "
                   "$JAX_COMPILATION_CACHE_DIR, else $NASI_JAX_CACHE_DIR, else $XDG_CACHE_HOME/nasi-jax, "
                   "else ~/.cache/nasi-jax; `nasi cache` shows its size and clears it)")
    p.add_argument("--no-compilation-cache", dest="use_compilation_cache", action="store_false",
                   help="compile every program afresh, without reading or writing the cache")


def setup_cache(args) -> str | None:
    """Set up the compilation cache the flags ask for (before any compile); its folder or None.

    ``--no-compilation-cache`` switches it off; a default folder that cannot be written is a
    warning (the run goes on without the cache), an explicit ``--compilation-cache DIR`` an error."""
    from nasi_jax import compilation_cache as cc
    if not getattr(args, "use_compilation_cache", True):
        if args.compilation_cache:
            raise ValueError("--compilation-cache DIR and --no-compilation-cache contradict each other; "
                             "give one of them")
        cc.disable()
        return None
    try:
        return cc.enable(cc.resolve_dir(args.compilation_cache))
    except OSError as e:
        if args.compilation_cache:
            raise
        print(f"[nasi] warning: {e}; running without it", file=sys.stderr)
        cc.disable()
        return None


def setup_scale(args):
    """Initialise the compilation cache / multi-host; return the devices to use (or None)."""
    import jax
    if args.memory_budget is not None:
        from nasi_jax.core import memory
        memory.parse_bytes(args.memory_budget)  # a malformed size fails before compiling
    setup_cache(args)
    if args.distributed:
        jax.distributed.initialize()
        return jax.devices()
    if args.devices == "all":
        return jax.local_devices()
    try:
        n = int(args.devices)
    except ValueError:
        raise ValueError(f"--devices must be a number or 'all', got {args.devices!r}") from None
    local = jax.local_devices()
    if not 1 <= n <= len(local):
        raise ValueError(f"--devices {n}: this process sees {len(local)} device(s) "
                         f"({local[0].platform}); on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={n}")
    return local[:n] if n > 1 else None


def check_writable(path: str) -> None:
    """Create the output folder and prove it is writable, before any long computation."""
    if os.path.isdir(path):
        raise ValueError(f"--output {path!r} is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-"):
            pass
    except OSError as e:
        raise ValueError(f"cannot write --output {path!r}: {e.strerror or e}") from None
