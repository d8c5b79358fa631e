"""``nasi presets``: the named search presets, their values and where they came from."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(sub):
    r = sub.add_parser("presets", help="list the named search presets (every search value and "
                       "where it came from)")
    r.add_argument("name", nargs="?", help="one preset (default: all)")
    r.add_argument("--markdown", action="store_true", help="all presets as a Markdown table "
                   "(docs/presets.md is this output)")
    return r


def run(args, argv) -> int:
    from nasi_jax import presets
    if args.markdown:
        print(presets.markdown_table())
        return 0
    names = [args.name] if args.name else list(presets.PRESETS)
    for n in names:
        presets.get_preset(n)
    print("\n\n".join(presets.describe(n) for n in names))
    return 0
