"""The ``nasi`` command: one module per subcommand, argparse and printing only.

    nasi search --space nb201 --seeds 5 --output result.json       (cli/search.py)
    nasi search --data real --data-dir DATA/cifar10_jpeg --benchmark DATA/nb201/nb201_accuracies.csv
    nasi score --space nb201 --proxy nasi --cells all --seed 0 --output scores.csv   (cli/score.py)
    nasi bench --quick                                              (cli/bench.py)
    nasi info --space nb201 --arch "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    nasi info --space darts --genotype DARTS_V2 --channels 36 --layers 20   (cli/info.py)
    nasi presets                                                    (cli/presets.py)
    nasi train --genotype DARTS_V2 --dataset cifar10 --epochs 600 --data-dir DATA --workdir runs/darts_v2
    nasi train --genotype DARTS_V2 --dataset cifar100 --data-dir DIR --workdir runs/darts_v2_c100
    nasi cache [--clear]                                            (cli/cache.py)

Defaults come from the library (the presets, :class:`nasi_jax.scoring.ScoreConfig`, the
training recipes), never from a second copy here. Only the chosen subcommand's module is
imported, so ``nasi --help`` does not import jax. Every input is checked before the (long)
work starts; errors print one line that says what is wrong and how to fix it, and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["main", "run", "build_parser", "COMMANDS"]

COMMANDS = {
    "search": "run NASI (Algorithm 1) for one or more seeds",
    "score": "score the cells of a space with a training-free proxy (one compilation)",
    "bench": "measure the speed and memory figures on this backend",
    "info": "parameter count and FLOPs (darts: --flops) of one architecture",
    "presets": "list the named search presets (every search value and where it came from)",
    "train": "train an architecture from scratch (DARTS or NB201 recipe; CIFAR-10 or CIFAR-100)",
    "cache": "the persistent compilation cache: its folder and size, or --clear it",
}
"""Subcommand -> one line of help; each lives in ``nasi_jax.cli.<name>``."""


def _module(name: str):
    return importlib.import_module(f"nasi_jax.cli.{name}")



def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``nasi`` parser. ``only``: build just that subcommand's options (``''``: none, as
    for ``nasi --help``); ``None``: all of them."""
    p = argparse.ArgumentParser(prog="nasi", description="NASI: neural architecture search at "
                                "initialisation (JAX/Flax).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, text in COMMANDS.items():
        if only is None or only == name:
            _module(name).add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nasi`` on ``argv`` (default: the command line); the exit code. No side effect on
    the process beyond the command's own (:func:`run` is the program)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    try:
        return _module(args.command).run(args, argv)
    except (ValueError, OSError, FloatingPointError) as e:
        # our errors (ArchitectureError, DataError, BenchmarkError, PresetError,
        # NonFiniteScoreError, bad settings) subclass ValueError / FloatingPointError
        print(f"nasi {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # XLA failures (e.g. out of memory) as one line, not a traceback
        import jax
        if not isinstance(e, jax.errors.JaxRuntimeError):
            raise
        print(f"nasi {args.command}: error: XLA failed ({str(e).splitlines()[0]}); if memory ran "
              f"out, lower --batch-size or --channels", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasi: interrupted; nothing was written", file=sys.stderr)
        return 130


def run() -> None:
    """The ``nasi`` program (its console script, and ``python -m nasi_jax.cli``): rerun this
    process with transparent huge pages for XLA:CPU's buffers where the system has them
    (:func:`nasi_jax.hugepages.rerun_with_hugepages`; ``NASI_JAX_HUGEPAGES=0`` keeps it from
    doing so), then :func:`main` on the command line, and exit with its code."""
    from nasi_jax import hugepages
    hugepages.rerun_with_hugepages()
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
