"""``nasi train``: its arguments (:func:`add_parser`) and the run (:func:`run`), over
:mod:`nasi_jax.train`; argparse and printing only."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from nasi_jax import data as _data
from nasi_jax import train
from nasi_jax.cli._common import add_cache_args, setup_cache
from nasi_jax.records import command_line, format_duration
from nasi_jax.spaces import nb201

__all__ = ["add_parser", "config_from_args", "run"]

# every dataset's data sources, in order (TrainConfig's dataset says which of them it accepts)
_SOURCES = tuple(dict.fromkeys(s for ds in train.TRAIN_DATASETS.values() for s in ds.sources))


def _int_arg(name, lo=1):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{name} must be >= {lo}, got {v}")
        return v
    return parse


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``sub`` (argparse subparsers); returns it."""
    t = sub.add_parser("train", help="train a selected architecture from scratch on CIFAR-10 or CIFAR-100",
                       description="Train a DARTS genotype (--genotype; recipe darts: NetworkCIFAR C=36, "
                       "20 cells, 600 epochs) or an NB201 cell (--arch; recipe nb201: C=16, N=5, 200 "
                       "epochs) from scratch on CIFAR-10 or, with --dataset cifar100, on CIFAR-100 (100 "
                       "classes; same recipes), with orbax checkpoints in WORKDIR/checkpoints; rerunning "
                       "the same command continues from the latest one. Writes WORKDIR/metrics.jsonl "
                       "(per epoch) and WORKDIR/result.json. Unset options take the recipe's value.")
    _add_architecture(t)
    _add_data(t)
    _add_recipe(t)
    _add_run(t)
    return t


def _add_architecture(t) -> None:
    t.add_argument("--genotype", help="DARTS genotype: the text Genotype(normal=[...], normal_concat=[...], "
                   "reduce=[...], reduce_concat=[...]), a published name (DARTS_V1, DARTS_V2), a file "
                   "holding the text, or the JSON of `nasi search --space darts --output FILE` "
                   "(FILE: its first seed; FILE#SEED: that seed)")
    t.add_argument("--arch", help="NB201 cell string, e.g. \"" + nb201.EXAMPLE_ARCH + "\"")
    t.add_argument("--recipe", choices=train.RECIPES, help="training recipe (default: darts for --genotype, "
                   "nb201 for --arch)")


def _add_data(t) -> None:
    t.add_argument("--dataset", choices=train.DATASETS, default="cifar10",
                   help="cifar10, or cifar100 (its 100 fine labels; trained on its 50 000 training images, "
                   "evaluated on its 10 000 test images)")
    t.add_argument("--data-dir", help="cifar10: folder holding cifar10_jpeg/ and nb201/cifar-split.txt (or "
                   "cifar-10-batches-bin/, or a tensorflow-datasets data_dir with --data-source tfds); "
                   "cifar100: folder holding cifar-100-python/ (train, test) or cifar-100-binary/ (train.bin, "
                   "test.bin), as unpacked from https://www.cs.toronto.edu/~kriz/cifar.html. Nothing is "
                   "downloaded")
    t.add_argument("--data-source", choices=_SOURCES, default="auto",
                   help="cifar10: " + ", ".join(_data.DATA_SOURCES) + "; cifar100: "
                   + ", ".join(_data.CIFAR100_SOURCES) + " (python: cifar-100-python/, binary: cifar-100-binary/)")
    t.add_argument("--split-file", help="cifar10: NB201 cifar-split.txt (default: looked up beside the data)")
    t.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, result)")
    t.add_argument("--seed", type=_int_arg("--seed", 0), default=0)


def _add_recipe(t) -> None:
    t.add_argument("--epochs", type=_int_arg("--epochs"))
    t.add_argument("--batch-size", type=_int_arg("--batch-size"))
    t.add_argument("--lr", type=float, help="initial learning rate of the cosine schedule")
    t.add_argument("--lr-min", type=float, help="final learning rate")
    t.add_argument("--lr-schedule", choices=train.LR_SCHEDULES, help="cosine annealed per epoch or per step")
    t.add_argument("--momentum", type=float)
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    t.add_argument("--weight-decay", type=float, help="L2 coefficient (added to the gradient)")
    t.add_argument("--grad-clip", type=float, help="global-norm clip (0: none)")
    t.add_argument("--aux-weight", type=float, help="auxiliary loss weight (0: no auxiliary head)")
    t.add_argument("--drop-path", type=float, help="final drop-path probability (0: none)")
    t.add_argument("--cutout", type=_int_arg("--cutout", 0), help="cutout hole size (0: none)")
    t.add_argument("--crop-padding", type=_int_arg("--crop-padding", 0), help="random-crop padding (0: none)")
    t.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="horizontal flips")
    t.add_argument("--channels", type=_int_arg("--channels"), help="initial channels C")
    t.add_argument("--layers", type=_int_arg("--layers"), help="DARTS: cells in total (default 20)")
    t.add_argument("--cells", type=_int_arg("--cells"), help="NB201: cells per stage N (default 5)")
    t.add_argument("--train-split", choices=train.TRAIN_SPLITS, help="all: the 50 000 training images; train: "
                   "NB201's 25 000-image half (cifar10 only)")
    t.add_argument("--eval-split", choices=train.EVAL_SPLITS, help="test (default) or NB201's valid half "
                   "(cifar10 only)")
    t.add_argument("--train-size", type=_int_arg("--train-size"), help="use the first N training images")
    t.add_argument("--test-size", type=_int_arg("--test-size"), help="use the first N evaluation images")
    t.add_argument("--eval-batch-size", type=_int_arg("--eval-batch-size"))


def _add_run(t) -> None:
    t.add_argument("--checkpoint-every-steps", type=_int_arg("--checkpoint-every-steps"),
                   help="also save a checkpoint every N steps (always: every epoch)")
    t.add_argument("--keep-checkpoints", type=_int_arg("--keep-checkpoints"), default=3)
    t.add_argument("--no-resume", dest="resume", action="store_false",
                   help="refuse to continue an existing run in WORKDIR (default: continue it)")
    t.add_argument("--stop-after-steps", type=_int_arg("--stop-after-steps"),
                   help="stop (with a checkpoint) once the global step reaches N; rerun to continue")
    add_cache_args(t)  # a resumed run loads the same compiled step instead of compiling it again
    t.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def _layers(args, space: train.TrainSpace) -> int | None:
    """The network depth given on the command line, under the flag of ``space``
    (``--layers`` or ``--cells``); the other space's flag is an error."""
    given = {"--layers": args.layers, "--cells": args.cells}
    for flag, value in given.items():
        if value is not None and flag != space.layers_flag:
            owner = next(s for s in train.TRAIN_SPACES.values() if s.layers_flag == flag)
            raise train.TrainError(f"{flag} is {owner.layers_owner}; for {space.arch_noun} use "
                                   f"{space.layers_flag} ({space.layers_meaning})")
    return given[space.layers_flag]


def config_from_args(args, arch: train.Architecture) -> train.TrainConfig:
    """The :class:`~nasi_jax.train.TrainConfig` of parsed ``nasi train`` arguments for ``arch``."""
    layers = _layers(args, train.TRAIN_SPACES[arch.space])
    recipe = args.recipe or arch.space
    fields = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                  lr_schedule=args.lr_schedule, momentum=args.momentum, nesterov=args.nesterov,
                  weight_decay=args.weight_decay, grad_clip=args.grad_clip, aux_weight=args.aux_weight,
                  drop_path=args.drop_path, cutout=args.cutout, crop_padding=args.crop_padding,
                  flip=args.flip, channels=args.channels, layers=layers,
                  dataset=args.dataset, train_split=args.train_split, eval_split=args.eval_split,
                  eval_batch_size=args.eval_batch_size)
    fields = {k: v for k, v in fields.items() if v is not None}
    return train.TrainConfig.recipe(recipe, space=arch.space, train_size=args.train_size,
                                    test_size=args.test_size, **fields)


def _print_plan(args, cfg: train.TrainConfig, arch: train.Architecture) -> None:
    n, n_aux = train.param_counts(cfg, arch)
    net = train.TRAIN_SPACES[arch.space].describe(cfg)
    print(f"[nasi train] {arch.space} architecture {arch.text}")
    print(f"[nasi train] {net}, {cfg.num_classes} classes ({cfg.dataset}): {n:,} parameters ({n / 1e6:.3f} M, "
          f"without the auxiliary head" + (f"; {n_aux:,} with it" if n_aux != n else "") + ")")
    print(f"[nasi train] recipe {cfg.recipe_name}: {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr} cosine "
          f"-> {cfg.lr_min} per {cfg.lr_schedule}, momentum {cfg.momentum}{' nesterov' if cfg.nesterov else ''}, "
          f"weight decay {cfg.weight_decay}, grad clip {cfg.grad_clip or 'none'}, aux {cfg.aux_weight}, "
          f"drop-path {cfg.drop_path}, cutout {cfg.cutout}; seed {args.seed}; workdir {args.workdir}")
    sys.stdout.flush()


def _print_done(res: train.TrainResult, cfg: train.TrainConfig) -> None:
    if not res.completed:
        print(f"[nasi train] stopped at step {int(res.state.step)} after {len(res.history)} complete epoch(s); "
              f"rerun the same command without --stop-after-steps to continue")
        return
    r = res.result
    e = cfg.eval_split
    print(f"[nasi train] done: {r['epochs']} epochs, {r['steps']} steps, final {e} acc {r[f'final_{e}_acc']:.2f}% "
          f"(best {r[f'best_{e}_acc']:.2f}% at epoch {r['best_epoch']}), train acc {r['final_train_acc']:.2f}%, "
          f"wall {format_duration(r['wall_time_s'])}; wrote {os.path.join(res.workdir, 'result.json')}")


def run(args, argv: Sequence[str] = ()) -> int:
    """Run ``nasi train`` from parsed arguments (see :func:`add_parser`); the exit status."""
    arch = train.parse_architecture(args.genotype, args.arch)
    cfg = config_from_args(args, arch)
    setup_cache(args)
    _print_plan(args, cfg, arch)
    try:
        res = train.train(cfg, arch, args.workdir, seed=args.seed, data_dir=args.data_dir,
                          data_source=args.data_source, split_file=args.split_file, resume=args.resume,
                          checkpoint_every_steps=args.checkpoint_every_steps,
                          keep_checkpoints=args.keep_checkpoints, stop_after_steps=args.stop_after_steps,
                          progress=not args.no_progress,
                          log=lambda s: print(f"[nasi train] {s}", file=sys.stderr),
                          extra={"command": command_line("nasi", argv)})
    except KeyboardInterrupt:
        print("[nasi train] stopped by Ctrl-C", file=sys.stderr)
        return 130
    _print_done(res, cfg)
    return 0
