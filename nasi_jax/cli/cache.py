"""``nasi cache``: where the persistent compilation cache is, how large it is, and clearing it."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(sub):
    c = sub.add_parser("cache", help="the persistent compilation cache: its folder and size, or "
                       "--clear it")
    c.add_argument("--compilation-cache", metavar="DIR", help="the cache folder (default: the one "
                   "search, score and train use: $JAX_COMPILATION_CACHE_DIR, else $NASI_JAX_CACHE_DIR, "
                   "else $XDG_CACHE_HOME/nasi-jax, else ~/.cache/nasi-jax)")
    c.add_argument("--clear", action="store_true", help="remove every stored program (the next run "
                   "of each compiles again)")
    return c


def run(args, argv) -> int:
    from nasi_jax import compilation_cache as cc
    path = cc.resolve_dir(args.compilation_cache)
    if args.clear:
        n = cc.clear(path)
        print(f"removed {n} compiled program(s) from {path}")
        return 0
    programs, size = cc.usage(path)
    print(f"{path}: {programs} compiled program(s), {size / 2 ** 20:.1f} MiB "
          f"(cap {cc.DEFAULT_MAX_BYTES / 2 ** 30:.0f} GiB; `nasi cache --clear` empties it)")
    return 0
