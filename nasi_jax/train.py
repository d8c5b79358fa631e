r"""Train a selected architecture from scratch on CIFAR-10 (optax SGD, orbax checkpoints).

A thin CLI (``nasi train``, :func:`add_parser` / :func:`run_cli`) over this importable
library; the configuration is code (:class:`TrainConfig`, two named recipes).

**Recipes** (:meth:`TrainConfig.recipe`; every field can be overridden):

======================  ===================================  =====================================
field                   ``"darts"`` (DARTS, PAPER.md §8)     ``"nb201"`` (NAS-Bench-201)
======================  ===================================  =====================================
network                 NetworkCIFAR, C=36, 20 cells         NB201Network, C=16, N=5 per stage
batch, epochs           96, 600                              256, 200
SGD                     momentum 0.9                         Nesterov momentum 0.9
lr                      0.025, cosine to 0 per epoch         0.1, cosine to 0 per step
weight decay (L2)       3e-4                                 5e-4
gradient clip           global norm 5                        none
auxiliary head          weight 0.4                           none
drop-path               0.2 * epoch / epochs                 none
augmentation            crop 32 pad 4, flip, cutout 16       crop 32 pad 4, flip
======================  ===================================  =====================================

The network sizes come from the architecture's space, the rest from the recipe: the
``darts`` recipe on an NB201 cell trains NB201Network(C=16, N=5) with DARTS's optimiser and
cutout, but no auxiliary head and no drop-path (NB201Network has neither).

**Maths.** One step on a batch ``x [B, 32, 32, 3]`` (normalised), ``y [B]``, step ``t``
(0-based), epoch ``e = t // S`` with ``S = floor(N_train / B)`` steps per epoch (the
incomplete last batch of each epoch is dropped: one compiled shape), ``E`` epochs:

* loss  ``L = CE(logits, y) + w_aux * CE(aux_logits, y)`` (mean cross-entropies over the batch;
  ``w_aux = 0.4`` for DARTS, whose auxiliary head reads cell ``2*layers//3``; 0 for NB201);
* gradient clipping ``g <- g * min(1, c / ||g||_2)`` over all parameters (``c = 5``, DARTS);
* weight decay as L2 on the gradient, on *all* parameters (BN scales and biases included),
  before the momentum, as PyTorch's ``SGD(weight_decay=...)`` in DARTS and NB201 does:
  ``g <- g + lambda * theta`` (``optax.add_decayed_weights``);
* momentum ``m <- mu m + g``; update ``g`` (plain) or ``g + mu m`` (Nesterov)
  (``optax.trace``, PyTorch's convention: the learning rate multiplies after the momentum);
* ``theta <- theta - eta_t * update`` with the cosine schedule
  ``eta_t = eta_min + (eta_0 - eta_min) (1 + cos(pi u)) / 2``, ``u = e / E``
  (``lr_schedule="epoch"``: constant within an epoch, as DARTS's ``CosineAnnealingLR``
  stepped once per epoch with ``T_max = E``, ``eta_min = 0``) or ``u = t / (E S)``
  (``lr_schedule="step"``, the ``nb201`` recipe: NB201's training loop, AutoDL-Projects,
  updates its cosine scheduler every iteration with the fraction of the epoch done);
* drop-path probability ``p_e = p_max * e / E`` (DARTS: ``p_max = 0.2``), a traced scalar
  of the compiled step, so changing it never recompiles.

BatchNorm uses batch statistics in training (running averages, momentum 0.1 in PyTorch's
terms, updated every step) and the running averages at evaluation. After each epoch the
network is evaluated on the CIFAR-10 **test** set (as DARTS and NB201 report), or on NB201's
``valid`` half with ``train_split="train", eval_split="valid"`` (for model selection).

**Augmentation** (in the compiled step, from ``jax.random``): random crop of 32 from the
image zero-padded by 4 pixels, i.e. padded with *black* (raw pixel 0, which after
normalisation is ``-mean/std`` per channel, as torchvision's ``RandomCrop(32, padding=4)``
before ``Normalize``); horizontal flip with probability 1/2; cutout (DARTS): one hole of
16x16 centred at a uniform pixel ``(cy, cx)``, rows ``[cy-8, cy+8)`` and columns
``[cx-8, cx+8)`` clipped to the image, set to 0 *after* normalisation (i.e. to the mean
colour), as DARTS's ``Cutout`` after ``Normalize`` does.

**Determinism and exact resume.** Every random quantity is a pure function of the seed and
the global step or epoch: the weights' initialisation of ``fold_in(key(seed), 0)``; the
augmentation and drop-path masks of step ``t`` of ``fold_in(fold_in(key(seed), 1), t)``;
the order of the training images in epoch ``e`` of NumPy's ``PCG64(SeedSequence([seed, e,
tag]))``. The train state (params, batch_stats, opt_state, step and the running sums of the
epoch's train loss/accuracy) is the only thing carried from step to step and is what a
checkpoint stores, together with the per-epoch metrics so far (JSON). Resuming from any
saved step therefore replays the uninterrupted run bit for bit (tested leaf by leaf on CPU,
where XLA's programs are deterministic; a resumed process also reuses the compiled step: the
restored arrays are handed back uncommitted, like a fresh state). On GPU, XLA may autotune
convolutions differently in a new process; for bit-exact resumes there set
``XLA_FLAGS="--xla_gpu_deterministic_ops=true --xla_gpu_autotune_level=0"`` or keep a
persistent compilation cache (``--compilation-cache DIR``) so the resumed process runs the
same executable (not verified here: no GPU was available).

**Files** in ``workdir``: ``checkpoints/`` (orbax ``CheckpointManager``: one after every
epoch, optionally every N steps, on Ctrl-C, the last few kept), ``metrics.jsonl`` (one JSON
line per epoch: epoch, step, lr, drop_path, train_loss, train_acc, test_loss, test_acc,
epoch_time_s, wall_s; accuracies in percent; rewritten from the checkpoint on resume, so
no epoch appears twice), ``result.json`` (written atomically at the end) and, only when
``tensorboardX`` is importable, ``tensorboard/`` event files (``flax.metrics.tensorboard``
needs TensorFlow, which this project does not install; without a writer nothing is
written and nothing is said).

Example (the recipes, the schedule, the augmentation; no data or training needed):

    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax import train
    >>> cfg = train.TrainConfig.recipe("darts")
    >>> cfg.channels, cfg.layers, cfg.batch_size, cfg.lr, cfg.epochs, cfg.aux_weight, cfg.cutout
    (36, 20, 96, 0.025, 600, 0.4, 16)
    >>> nb = train.TrainConfig.recipe("nb201", epochs=10)
    >>> nb.space, nb.channels, nb.layers, nb.batch_size, nb.nesterov, nb.weight_decay, nb.epochs
    ('nb201', 16, 5, 256, True, 0.0005, 10)
    >>> [round(float(train.learning_rate(nb, t, steps_per_epoch=195)), 5) for t in (0, 194, 195, 975)]
    [0.1, 0.09758, 0.09755, 0.05]
    >>> round(float(train.drop_path_prob(cfg, 521 * 300, steps_per_epoch=521)), 6)   # epoch 300 of 600
    0.1
    >>> x = jnp.ones((4, 32, 32, 3))
    >>> y = train.augment(jax.random.key(0), x, crop_padding=4, flip=True, cutout=16)
    >>> y.shape, int((y == 0).all(-1).sum(axis=(1, 2)).max()) <= 256
    ((4, 32, 32, 3), True)

Training (``images``/``labels`` in memory here; the CLI reads CIFAR-10 from ``--data-dir``)::

    cfg = train.TrainConfig.recipe("darts", channels=16, layers=8, epochs=10)
    res = train.train(cfg, "DARTS_V2", "runs/darts_v2", data_dir="../shared/data")
    res.result["final_test_acc"], res.result["best_test_acc"]

Command line (same effect; rerunning it continues from the latest checkpoint)::

    nasi train --genotype DARTS_V2 --dataset cifar10 --epochs 600 \
        --data-dir ../shared/data --workdir runs/darts_v2
    nasi train --arch "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|" \
        --dataset cifar10 --data-dir ../shared/data --workdir runs/nb201_best
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import shlex
import sys
import time
from typing import Any, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nasi_jax import data as _data
from nasi_jax.cli import versions, write_json_atomic, write_text_atomic
from nasi_jax.spaces import darts, nb201

__all__ = [
    "RECIPES", "TrainError", "TrainConfig", "Architecture", "TrainState", "TrainResult",
    "parse_architecture", "learning_rate", "drop_path_prob", "make_optimizer", "random_crop",
    "random_flip", "random_cutout", "augment", "load_data", "init_state", "make_train_step",
    "make_eval_step", "epoch_permutation", "evaluate", "train", "ProgressBar", "add_parser",
    "run_cli",
]

RECIPES = ("darts", "nb201")
"""Names accepted by :meth:`TrainConfig.recipe`."""

NUM_CLASSES = _data.NUM_CLASSES
IMAGE_SIZE = _data.IMAGE_SHAPE[0]
TRAIN_SPLITS = ("all", "train")
EVAL_SPLITS = ("test", "valid")
LR_SCHEDULES = ("epoch", "step")
_FULL_HALF = 25_000  # images in each half of NB201's cifar10-valid split
_PERM_TAG = 0x5EED  # separates the data-order stream from other uses of the seed
_FORMAT = 1  # checkpoint metadata format

# per-channel value of a black pixel after normalisation (the crop's zero padding)
PAD_VALUE = tuple(-m / s for m, s in zip(_data.CIFAR10_MEAN, _data.CIFAR10_STD))


class TrainError(ValueError):
    """Impossible settings, a mismatched workdir, or a bad architecture; the message says
    what is wrong and how to fix it (a ValueError, as the CLI expects)."""


# --------------------------------------------------------------------------- configuration

_SPACE_DEFAULTS = {"darts": dict(channels=36, layers=20), "nb201": dict(channels=16, layers=5)}
_RECIPE_DEFAULTS = {
    "darts": dict(epochs=600, batch_size=96, lr=0.025, lr_min=0.0, lr_schedule="epoch", momentum=0.9,
                  nesterov=False, weight_decay=3e-4, grad_clip=5.0, aux_weight=0.4, drop_path=0.2,
                  crop_padding=4, flip=True, cutout=16),
    "nb201": dict(epochs=200, batch_size=256, lr=0.1, lr_min=0.0, lr_schedule="step", momentum=0.9,
                  nesterov=True, weight_decay=5e-4, grad_clip=0.0, aux_weight=0.0, drop_path=0.0,
                  crop_padding=4, flip=True, cutout=0),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's numbers (with the seed and architecture).

    Build one with :meth:`recipe`; the defaults here are the DARTS recipe. Fields:

    * ``recipe_name``: the recipe the defaults came from (recorded only).
    * ``space``: ``"darts"`` (NetworkCIFAR from a genotype) or ``"nb201"`` (NB201Network).
    * ``channels``: C. ``layers``: DARTS: cells in total (reductions at ``layers//3`` and
      ``2*layers//3``, >= 2); NB201: cells per stage N.
    * ``epochs`` E, ``batch_size`` B; ``lr`` eta_0 and ``lr_min`` eta_min of the cosine,
      ``lr_schedule`` ``"epoch"`` or ``"step"`` (module docstring); ``momentum``,
      ``nesterov``; ``weight_decay`` (L2 added to the gradient, all parameters);
      ``grad_clip`` (global norm; 0 = none).
    * ``aux_weight``: weight of the auxiliary head's loss (0 = no head; DARTS only).
    * ``drop_path``: final drop-path probability, reached linearly (DARTS only).
    * ``crop_padding`` (0 = no crop), ``flip``, ``cutout`` (hole size; 0 = none).
    * ``train_split``: ``"all"`` (the 50 000 CIFAR-10 training images, as DARTS and NB201's
      ``cifar10`` results) or ``"train"`` (NB201's 25 000-image half); ``eval_split``:
      ``"test"`` (10 000) or ``"valid"`` (NB201's other half; needs ``train_split="train"``).
    * ``train_size`` / ``test_size``: keep the first N images of those splits (None: all;
      for ``"all"`` the first of NB201's train half, then of its valid half); deterministic.
    * ``eval_batch_size``: batch of the evaluation (running BN statistics: does not change
      the predictions).
    """

    recipe_name: str = "darts"
    space: str = "darts"
    channels: int = 36
    layers: int = 20
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    lr_schedule: str = "epoch"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    aux_weight: float = 0.4
    drop_path: float = 0.2
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 16
    train_split: str = "all"
    eval_split: str = "test"
    train_size: int | None = None
    test_size: int | None = None
    eval_batch_size: int = 500

    @classmethod
    def recipe(cls, name: str = "darts", *, space: str | None = None, **overrides) -> "TrainConfig":
        """The named recipe (module docstring table) for ``space`` (default: the recipe's own),
        with ``overrides`` applied, validated.

        The network size (``channels``, ``layers``) defaults to the space's evaluation network
        (DARTS: 36, 20; NB201: 16, 5); on an NB201 space the auxiliary head and drop-path are
        off whatever the recipe (NB201Network has neither). An override of None keeps the
        recipe's value, except for ``train_size`` / ``test_size`` where None means all images.
        """
        if name not in RECIPES:
            raise TrainError(f"unknown recipe {name!r}: choose one of {RECIPES}")
        space = name if space is None else space
        if space not in _SPACE_DEFAULTS:
            raise TrainError(f"unknown space {space!r}: choose 'darts' (--genotype) or 'nb201' (--arch)")
        fields = dict(_RECIPE_DEFAULTS[name]) | _SPACE_DEFAULTS[space]
        if space == "nb201":
            fields.update(aux_weight=0.0, drop_path=0.0)
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TrainError(f"unknown TrainConfig field(s) {unknown}; fields are "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        fields.update({k: v for k, v in overrides.items() if v is not None or k in ("train_size", "test_size")})
        return cls(recipe_name=name, space=space, **fields).validate()

    def validate(self) -> "TrainConfig":
        """Check every field; raise :class:`TrainError` naming the field and the fix."""
        def need_int(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise TrainError(f"{name} must be an integer >= {lo}, got {v!r}")

        def need_float(name, lo, hi=math.inf, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < lo or v > hi or (hi_open and v >= hi):
                raise TrainError(f"{name} must be a number in [{lo}, {hi}{')' if hi_open else ']'}, got {v!r}")

        if self.recipe_name not in RECIPES:
            raise TrainError(f"unknown recipe {self.recipe_name!r}: choose one of {RECIPES}")
        if self.space not in _SPACE_DEFAULTS:
            raise TrainError(f"unknown space {self.space!r}: choose 'darts' or 'nb201'")
        need_int("channels", 1)
        need_int("epochs", 1)
        need_int("batch_size", 1)
        need_int("eval_batch_size", 1)
        need_int("crop_padding", 0)
        need_int("cutout", 0)
        if self.space == "darts":
            if isinstance(self.layers, bool) or not isinstance(self.layers, (int, np.integer)) or self.layers < 2:
                raise TrainError(f"layers={self.layers!r}: DARTS's NetworkCIFAR reduces at cells layers//3 and "
                                 f"2*layers//3, which coincide for layers < 2 (one reduction only, and the "
                                 f"auxiliary head would not see an 8x8 map); use layers >= 2 (DARTS: 20)")
        else:
            need_int("layers", 1)
        need_float("lr", 0.0)
        need_float("lr_min", 0.0, self.lr)
        need_float("momentum", 0.0, 1.0, hi_open=True)
        need_float("weight_decay", 0.0)
        need_float("grad_clip", 0.0)
        need_float("aux_weight", 0.0)
        need_float("drop_path", 0.0, 1.0, hi_open=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not isinstance(self.nesterov, bool) or not isinstance(self.flip, bool):
            raise TrainError("nesterov and flip must be True or False")
        if self.nesterov and self.momentum == 0:
            raise TrainError("nesterov needs momentum > 0")
        if self.space == "nb201" and (self.aux_weight or self.drop_path):
            raise TrainError(f"NB201Network has no auxiliary head and no drop-path: set aux_weight=0 and "
                             f"drop_path=0 (got {self.aux_weight}, {self.drop_path})")
        if self.crop_padding > IMAGE_SIZE or self.cutout > IMAGE_SIZE:
            raise TrainError(f"crop_padding and cutout must be at most the image size {IMAGE_SIZE}, "
                             f"got {self.crop_padding}, {self.cutout}")
        if self.train_split not in TRAIN_SPLITS:
            raise TrainError(f"train_split must be one of {TRAIN_SPLITS}, got {self.train_split!r}")
        if self.eval_split not in EVAL_SPLITS:
            raise TrainError(f"eval_split must be one of {EVAL_SPLITS}, got {self.eval_split!r}")
        if self.eval_split == "valid" and self.train_split != "train":
            raise TrainError("eval_split='valid' is NB201's valid half, which train_split='all' trains on: "
                             "use train_split='train' with it (or eval_split='test')")
        for name in ("train_size", "test_size"):
            v = getattr(self, name)
            if v is not None:
                need_int(name, 1)
        full = 2 * _FULL_HALF if self.train_split == "all" else _FULL_HALF
        if self.train_size is not None and self.train_size > full:
            raise TrainError(f"train_size {self.train_size} exceeds the {full} images of train_split "
                             f"{self.train_split!r}")
        n_train = full if self.train_size is None else self.train_size
        if self.batch_size > n_train:
            raise TrainError(f"batch size {self.batch_size} is larger than the training set ({n_train} images): "
                             f"lower --batch-size or raise --train-size")
        return self


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _config_diff(old: dict, new: dict) -> list[str]:
    keys = list(dict.fromkeys([*old, *new]))
    return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in keys
            if old.get(k, "<absent>") != new.get(k, "<absent>")]


# --------------------------------------------------------------------------- architecture

class Architecture(NamedTuple):
    """A parsed architecture: ``space`` ``"darts"`` or ``"nb201"``, ``text`` (the genotype's
    DARTS text form or the NB201 string, canonical) and ``spec`` (a :class:`darts.Genotype`
    or NB201 op indices)."""

    space: str
    text: str
    spec: Any


def parse_architecture(genotype: str | None = None, arch: str | None = None) -> Architecture:
    """Exactly one of ``genotype`` (DARTS text form, a published name such as ``DARTS_V2``, the
    path of a file holding the text, or a ``nasi search --space darts --output`` JSON file,
    ``FILE.json`` for its first seed or ``FILE.json#SEED``) and ``arch`` (an NB201 string)
    -> :class:`Architecture`.

    Raises :class:`TrainError` when both or neither are given, and the spaces' own errors
    (:class:`darts.GenotypeError`, :class:`nb201.ArchError`, both ValueErrors) for a bad one.
    """
    if (genotype is None) == (arch is None):
        raise TrainError("give exactly one architecture: --genotype (a DARTS genotype, e.g. DARTS_V2, "
                         "its text form or a file holding it) or --arch (an NB201 cell string), "
                         f"got {'both' if genotype is not None else 'neither'}")
    if arch is not None:
        ops = nb201.parse_arch(arch)
        return Architecture("nb201", nb201.arch_to_str(ops), ops)
    if isinstance(genotype, darts.Genotype):
        g = darts.parse_genotype(genotype)
    else:
        text = genotype
        path, seed = _result_path(text)
        if path is not None:
            try:
                with open(path) as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as e:
                raise TrainError(f"cannot read the genotype file {genotype!r}: {e}") from None
            if path.endswith(".json"):
                text = _genotype_from_search_result(text, path, seed)
        g = darts.parse_genotype(text)
    return Architecture("darts", darts.genotype_to_str(g), g)


def _result_path(text) -> tuple[str | None, int | None]:
    """``FILE`` or ``FILE.json#SEED`` when it names an existing file, else ``(None, None)``."""
    if not isinstance(text, (str, os.PathLike)) or str(text).strip() in darts.PUBLISHED:
        return None, None
    text = os.path.expanduser(os.fspath(text))
    if os.path.isfile(text):
        return text, None
    head, sep, tail = text.rpartition("#")
    if sep and head.endswith(".json") and os.path.isfile(head):
        if not tail.isdigit():
            raise TrainError(f"{text!r}: after '#' give the seed whose genotype to train, e.g. {head}#0")
        return head, int(tail)
    return None, None


def _genotype_from_search_result(text: str, path: str, seed: int | None) -> str:
    """The genotype of one seed (the first, or ``seed``) of a ``nasi search --space darts`` JSON."""
    try:
        result = json.loads(text)
        space = result["config"]["space"]
        rows = {int(r["seed"]): r["arch"] for r in result["seeds"]}
    except (ValueError, KeyError, TypeError) as e:
        raise TrainError(f"{path} is not a `nasi search` result file ({type(e).__name__}: {e})") from None
    if space != "darts":
        raise TrainError(f"{path} is a search on the {space!r} space; --genotype needs a DARTS search "
                         "(for an NB201 cell use --arch)")
    if seed is None:
        seed = next(iter(rows))
    if seed not in rows:
        raise TrainError(f"{path} has no seed {seed}; its seeds are {sorted(rows)}")
    return rows[seed]


def _as_architecture(arch: Architecture | str | darts.Genotype) -> Architecture:
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, darts.Genotype):
        return parse_architecture(genotype=arch)
    if isinstance(arch, str) and arch.strip().startswith("|"):
        return parse_architecture(arch=arch)
    return parse_architecture(genotype=arch)


def param_counts(cfg: TrainConfig, arch: Architecture) -> tuple[int, int]:
    """(parameters without the auxiliary head, as the literature reports; with it)."""
    if arch.space == "darts":
        n = darts.count_params(arch.spec, channels=cfg.channels, layers=cfg.layers, num_classes=NUM_CLASSES)
        aux = darts.count_params(arch.spec, channels=cfg.channels, layers=cfg.layers,
                                 num_classes=NUM_CLASSES, auxiliary=True) if cfg.aux_weight > 0 else n
        return n, aux
    n = nb201.count_params(arch.spec, channels=cfg.channels, cells_per_stage=cfg.layers, num_classes=NUM_CLASSES)
    return n, n


# --------------------------------------------------------------------------- schedules and optimiser

def learning_rate(cfg: TrainConfig, step, *, steps_per_epoch: int):
    """Cosine-annealed learning rate at global step ``step`` (0-based; traceable).

    ``eta = lr_min + (lr - lr_min) (1 + cos(pi u)) / 2`` with ``u = (step // S) / E`` for
    ``lr_schedule="epoch"`` or ``u = step / (E S)`` for ``"step"`` (``S = steps_per_epoch``).
    """
    step = jnp.asarray(step, jnp.int32)
    if cfg.lr_schedule == "epoch":
        u = (step // steps_per_epoch).astype(jnp.float32) / cfg.epochs
    else:
        u = step.astype(jnp.float32) / (cfg.epochs * steps_per_epoch)
    u = jnp.minimum(u, 1.0)
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * u))


def drop_path_prob(cfg: TrainConfig, step, *, steps_per_epoch: int):
    """``drop_path * epoch / epochs`` at global step ``step`` (DARTS's linear schedule; traceable)."""
    epoch = (jnp.asarray(step, jnp.int32) // steps_per_epoch).astype(jnp.float32)
    return jnp.float32(cfg.drop_path) * epoch / cfg.epochs


def make_optimizer(cfg: TrainConfig, *, steps_per_epoch: int) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip)`` (if > 0) -> ``add_decayed_weights(weight_decay)`` (L2 on
    the gradient, all parameters; if > 0) -> ``trace(momentum, nesterov)`` -> ``-learning_rate``.
    The schedule reads optax's update count, which equals the train state's step."""
    parts = []
    if cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    if cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(cfg.weight_decay))
    parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
    parts.append(optax.scale_by_schedule(lambda count: -learning_rate(cfg, count, steps_per_epoch=steps_per_epoch)))
    return optax.chain(*parts)


# --------------------------------------------------------------------------- augmentation

def random_crop(key: jax.Array, images: jax.Array, padding: int, pad_value=0.0) -> jax.Array:
    """Pad ``images [B, H, W, C]`` by ``padding`` pixels with ``pad_value`` (scalar or ``[C]``) and
    crop ``H x W`` at an offset uniform in ``[0, 2 padding]^2``, independently per image."""
    if padding == 0:
        return images
    B, H, W, C = images.shape
    fill = jnp.broadcast_to(jnp.asarray(pad_value, images.dtype), (C,))
    canvas = jnp.broadcast_to(fill, (B, H + 2 * padding, W + 2 * padding, C))
    canvas = jax.lax.dynamic_update_slice(canvas, images, (0, padding, padding, 0))
    off = jax.random.randint(key, (B, 2), 0, 2 * padding + 1)
    return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (H, W, C)))(canvas, off)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image of ``[B, H, W, C]`` left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def random_cutout(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
    """Zero one ``size x size`` hole per image (DARTS's cutout): centre ``(cy, cx)`` uniform over
    the pixels, rows ``[cy - size//2, cy + size//2)`` and columns likewise, clipped at the borders
    (so the hole is smaller near them)."""
    if size == 0:
        return images
    B, H, W, _ = images.shape
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (B,), 0, H)
    cx = jax.random.randint(kx, (B,), 0, W)
    h = size // 2
    rows, cols = jnp.arange(H), jnp.arange(W)
    in_r = (rows[None, :] >= cy[:, None] - h) & (rows[None, :] < cy[:, None] + h)  # [B, H]
    in_c = (cols[None, :] >= cx[:, None] - h) & (cols[None, :] < cx[:, None] + h)  # [B, W]
    hole = in_r[:, :, None] & in_c[:, None, :]
    return jnp.where(hole[..., None], jnp.zeros((), images.dtype), images)


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 4, flip: bool = True,
            cutout: int = 0, pad_value=PAD_VALUE) -> jax.Array:
    """Crop (:func:`random_crop`), flip (:func:`random_flip`), then cutout (:func:`random_cutout`), each
    from its own key split from ``key``: a pure function of ``key`` and ``images [B, H, W, C]``.
    ``pad_value`` defaults to black in normalised units (module docstring)."""
    k_crop, k_flip, k_cut = jax.random.split(key, 3)
    images = random_crop(k_crop, images, crop_padding, pad_value)
    if flip:
        images = random_flip(k_flip, images)
    return random_cutout(k_cut, images, cutout)


# --------------------------------------------------------------------------- data

def load_data(cfg: TrainConfig, data_dir=None, *, source: str = "auto", split_file=None):
    """``(x_train, y_train, x_eval, y_eval)`` as host arrays (images float32 ``[N, 32, 32, 3]``
    normalised, labels int32 ``[N]``) for ``cfg``'s splits and subset sizes, through
    :func:`nasi_jax.data.load_cifar10_split` (never downloads; a missing source raises
    :class:`nasi_jax.data.DataError` saying how to provide it)."""
    kw = dict(source=source, split_file=split_file)
    if cfg.train_split == "train":
        x, y = _data.load_cifar10_split(data_dir, split="train", limit=cfg.train_size, **kw)
    else:
        n = cfg.train_size
        x, y = _data.load_cifar10_split(data_dir, split="train", limit=None if n is None else min(n, _FULL_HALF), **kw)
        if n is None or n > _FULL_HALF:
            x2, y2 = _data.load_cifar10_split(data_dir, split="valid",
                                              limit=None if n is None else n - _FULL_HALF, **kw)
            x, y = np.concatenate([x, x2]), np.concatenate([y, y2])
    xe, ye = _data.load_cifar10_split(data_dir, split=cfg.eval_split, limit=cfg.test_size, **kw)
    return x, y, xe, ye


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """Order of the ``n`` training images in ``epoch``: a pure function of ``(seed, epoch)``."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_PERM_TAG, int(seed), int(epoch)])))
    return rng.permutation(n)


# --------------------------------------------------------------------------- model and steps

@flax.struct.dataclass
class TrainState:
    """The whole training state, a pytree: ``step`` (int32 scalar), ``params``,
    ``batch_stats``, ``opt_state`` and ``sums`` (this epoch's running sums: ``loss`` (float32,
    sum over examples of the batch's loss), ``correct`` and ``count`` (int32))."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    sums: Any


def _zero_sums():
    return {"loss": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32),
            "count": jnp.zeros((), jnp.int32)}


def _model(cfg: TrainConfig, arch: Architecture):
    """(module, apply) where ``apply(variables, x, train, drop_path, rng, mutable)`` returns
    ``(logits, aux or None)`` (and the mutated collections when ``mutable``)."""
    if arch.space == "darts":
        net = darts.NetworkCIFAR(arch.spec, channels=cfg.channels, layers=cfg.layers, num_classes=NUM_CLASSES,
                                 auxiliary=cfg.aux_weight > 0)

        def apply(variables, x, train, drop_path=None, rng=None, mutable=False):
            rngs = {"dropout": rng} if rng is not None else None
            return net.apply(variables, x, train=train, drop_path_prob=drop_path, rngs=rngs, mutable=mutable)

        def init(key, x):
            return net.init(key, x, train=False)
    else:
        net = nb201.NB201Network(cfg.channels, cfg.layers, NUM_CLASSES, fixed=tuple(arch.spec))

        def apply(variables, x, train, drop_path=None, rng=None, mutable=False):
            out = net.apply(variables, x, None, train=train, mutable=mutable)
            return ((out[0], None), out[1]) if mutable else (out, None)

        def init(key, x):
            return net.init(key, x, None, train=False)
    return net, init, apply


def _keys(seed: int):
    root = jax.random.key(seed)
    return jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)  # (init, steps)


@functools.lru_cache(maxsize=8)
def _programs(cfg: TrainConfig, arch: Architecture, steps_per_epoch: int):
    """The jitted (init_state, train_step, eval_step) of one configuration, cached so that
    several runs in one process (a resume, the tests) reuse the compiled programs."""
    _, init, apply = _model(cfg, arch)
    tx = make_optimizer(cfg, steps_per_epoch=steps_per_epoch)
    pad_value = jnp.asarray(PAD_VALUE, jnp.float32)

    def init_state(key):
        variables = init(key, jnp.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32))
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                          sums=_zero_sums())

    def train_step(state: TrainState, x, y, step_key):
        k_aug, k_drop = jax.random.split(jax.random.fold_in(step_key, state.step))
        x = augment(k_aug, x, crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout,
                    pad_value=pad_value)
        dp = drop_path_prob(cfg, state.step, steps_per_epoch=steps_per_epoch) if cfg.drop_path > 0 else None

        def loss_fn(params):
            (logits, aux), new_vars = apply({"params": params, "batch_stats": state.batch_stats}, x, True,
                                            dp, k_drop if dp is not None else None, ["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            if aux is not None and cfg.aux_weight > 0:
                loss = loss + cfg.aux_weight * optax.softmax_cross_entropy_with_integer_labels(aux, y).mean()
            return loss, (logits, new_vars["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = jnp.sum(jnp.argmax(logits, -1) == y).astype(jnp.int32)
        B = y.shape[0]
        sums = {"loss": state.sums["loss"] + loss * B, "correct": state.sums["correct"] + correct,
                "count": state.sums["count"] + B}
        return TrainState(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                          sums=sums)

    def eval_step(params, batch_stats, x, y, mask):
        logits, _ = apply({"params": params, "batch_stats": batch_stats}, x, False)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(jnp.where(mask, ce, 0.0)), jnp.sum((jnp.argmax(logits, -1) == y) & mask)

    return jax.jit(init_state), jax.jit(train_step), jax.jit(eval_step)


def init_state(cfg: TrainConfig, arch, *, seed: int, steps_per_epoch: int) -> TrainState:
    """The initial :class:`TrainState` of ``(cfg, arch, seed)`` (weights from ``fold_in(key(seed), 0)``)."""
    arch = _as_architecture(arch)
    return _programs(cfg, arch, steps_per_epoch)[0](_keys(seed)[0])


def make_train_step(cfg: TrainConfig, arch, *, steps_per_epoch: int):
    """The jitted ``train_step(state, x [B,32,32,3], y [B], step_key) -> state`` (module docstring:
    augmentation, loss, clip, L2, momentum, cosine lr, drop-path), with ``step_key`` the run's
    step key (``fold_in(key(seed), 1)``; the step's own key is ``fold_in(step_key, state.step)``)."""
    return _programs(cfg, _as_architecture(arch), steps_per_epoch)[1]


def make_eval_step(cfg: TrainConfig, arch, *, steps_per_epoch: int):
    """The jitted ``eval_step(params, batch_stats, x, y, mask) -> (sum of CE, number correct)``
    over the examples where ``mask`` is true (running BN statistics)."""
    return _programs(cfg, _as_architecture(arch), steps_per_epoch)[2]


def evaluate(eval_step, state: TrainState, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(mean CE, accuracy in percent) of ``state`` on ``x, y``; the last batch is zero-padded
    to ``min(batch_size, N)`` and masked, so one compiled shape serves the whole set."""
    n = x.shape[0]
    b = min(batch_size, n)
    loss = 0.0
    correct = 0
    for s in range(0, n, b):
        xb, yb = x[s:s + b], y[s:s + b]
        m = np.ones(b, bool)
        if xb.shape[0] < b:
            k = b - xb.shape[0]
            m[xb.shape[0]:] = False
            xb = np.concatenate([xb, np.zeros((k, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros((k,), yb.dtype)])
        l_sum, c = eval_step(state.params, state.batch_stats, xb, yb, m)
        loss += float(l_sum)
        correct += int(c)
    return loss / n, 100.0 * correct / n


# --------------------------------------------------------------------------- progress and files

def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


class ProgressBar:
    """One line on ``stream`` (stderr), redrawn at most every ``interval`` seconds:
    ``[train] epoch e/E step s/T |#####.....| loss L acc A% R it/s (I img/s) ETA hh:mm:ss``.
    The rate counts from the first update (after the first, compiling, step)."""

    def __init__(self, total: int, *, initial: int = 0, batch_size: int = 1, epochs: int = 1,
                 enabled: bool = True, stream=None, interval: float = 0.5, width: int = 20):
        self.total, self.batch_size, self.epochs = total, batch_size, epochs
        self.enabled, self.stream, self.interval, self.width = enabled, stream or sys.stderr, interval, width
        self._t0 = None
        self._s0 = initial
        self._last = -math.inf
        self._len = 0

    def due(self) -> bool:
        """Whether :meth:`update` would draw now (so the caller can skip fetching values)."""
        return self.enabled and time.perf_counter() - self._last >= self.interval

    def update(self, step: int, epoch: int, loss: float, acc: float, *, force: bool = False) -> None:
        if not self.enabled or not (force or self.due()):
            return
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._s0 = now, step
        self._last = now
        done = step - self._s0
        rate = done / (now - self._t0) if now > self._t0 and done > 0 else float("nan")
        eta = (self.total - step) / rate if rate == rate and rate > 0 else float("nan")
        fill = int(self.width * step / max(self.total, 1))
        bar = "#" * fill + "." * (self.width - fill)
        rate_s = f"{rate:.2f} it/s ({rate * self.batch_size:.0f} img/s)" if rate == rate else "-- it/s"
        line = (f"[train] epoch {epoch + 1}/{self.epochs} step {step}/{self.total} |{bar}| loss {loss:.4f} "
                f"acc {acc:.2f}% {rate_s} ETA {_fmt_time(eta)}")
        pad = max(0, self._len - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._len = len(line)

    def close(self) -> None:
        if self.enabled and self._len:
            self.stream.write("\n")
            self.stream.flush()
            self._len = 0


def _append_line(path: str, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _tensorboard_writer(folder: str):
    """A tensorboardX SummaryWriter, or None when it is not installed (skipped silently)."""
    try:
        from tensorboardX import SummaryWriter  # type: ignore
    except Exception:
        return None
    return SummaryWriter(folder)


# --------------------------------------------------------------------------- the run

@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the final ``state``, the per-epoch ``history`` (the
    records of ``metrics.jsonl``), ``result`` (the content of ``result.json``; None when the
    run stopped early), ``completed`` and the ``workdir``."""

    state: TrainState
    history: list
    result: dict | None
    completed: bool
    workdir: str


def _checkpoint_manager(folder: str, keep: int):
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(os.path.abspath(folder),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def _save(manager, state: TrainState, meta: dict) -> None:
    import orbax.checkpoint as ocp
    manager.save(int(meta["step"]), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                             meta=ocp.args.JsonSave(meta)), force=True)


def _restore_meta(manager, step: int) -> dict:
    import orbax.checkpoint as ocp
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def _restore_state(manager, step: int, abstract_state) -> TrainState:
    import orbax.checkpoint as ocp
    try:
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except ValueError as e:
        raise TrainError(f"the checkpoint at step {step} in {manager.directory} does not fit this network "
                         f"({str(e)[:200]}...): use a new --workdir") from None
    # orbax returns arrays committed to a device, a fresh state is uncommitted, and jit keys its
    # cache on that: hand back uncommitted copies so a resumed run reuses the compiled step.
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)), out.state)


def train(cfg: TrainConfig, arch: Architecture | str, workdir: str | os.PathLike, *, seed: int = 0,
          data_dir=None, data_source: str = "auto", split_file=None, data=None, resume: bool = True,
          checkpoint_every_steps: int | None = None, keep_checkpoints: int = 3,
          stop_after_steps: int | None = None, progress: bool = True, log=None,
          extra: dict | None = None) -> TrainResult:
    """Train ``arch`` with ``cfg`` from ``seed``, writing into ``workdir`` (module docstring).

    Args:
      cfg: a validated :class:`TrainConfig` whose ``space`` matches ``arch``.
      arch: an :class:`Architecture`, a genotype (text, published name or file) or an NB201
        string (starts with ``|``).
      workdir: output folder (created). With ``resume`` (default) and checkpoints there, the
        run continues from the latest one; it refuses when the stored config, architecture,
        seed or data size differ (naming the fields). Without ``resume`` existing checkpoints
        are an error (use a new folder).
      seed: non-negative int; with the configuration it fixes every random number.
      data_dir, data_source, split_file: where CIFAR-10 is (:func:`load_data`).
      data: instead, ``(x_train, y_train, x_eval, y_eval)`` arrays (normalised images).
      checkpoint_every_steps: also save every N steps (besides every epoch).
      keep_checkpoints: how many checkpoints orbax keeps.
      stop_after_steps: stop once the global step reaches N, after saving a checkpoint (to
        simulate an interruption; resume with the same call without it).
      progress: the progress line on stderr. ``log``: a function of one string for the
        resume/interrupt messages (default: none). ``extra``: more entries for ``result.json``.

    Returns:
      a :class:`TrainResult`. ``result.json`` is written only when all epochs are done.
    """
    t_start = time.perf_counter()
    say = log or (lambda s: None)
    arch = _as_architecture(arch)
    cfg = cfg.validate()
    if cfg.space != arch.space:
        raise TrainError(f"the config is for space {cfg.space!r} but the architecture is a"
                         f"{'n NB201 cell' if arch.space == 'nb201' else ' DARTS genotype'}: build it with "
                         f"TrainConfig.recipe(..., space={arch.space!r})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 31:
        raise TrainError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    for name, v in (("checkpoint_every_steps", checkpoint_every_steps), ("stop_after_steps", stop_after_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise TrainError(f"{name} must be a positive integer or None, got {v!r}")
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or keep_checkpoints < 1:
        raise TrainError(f"keep_checkpoints must be a positive integer, got {keep_checkpoints!r}")
    workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise TrainError(f"--workdir {workdir} is a file; give a folder")
    if data is None and data_dir is None and data_source != "tfds":
        raise TrainError("training needs the CIFAR-10 images: pass --data-dir DIR (the folder holding "
                         "cifar10_jpeg/ and nb201/cifar-split.txt, e.g. ../shared/data) or --data-source tfds "
                         "with a prepared tensorflow-datasets cifar10; nothing is downloaded")
    existing = os.path.isdir(ckpt_dir) and any(n.isdigit() for n in os.listdir(ckpt_dir))
    if existing and not resume:
        raise TrainError(f"{ckpt_dir} already holds checkpoints and resume is off: use a new --workdir, "
                         f"or drop --no-resume to continue that run")
    os.makedirs(workdir, exist_ok=True)

    # ---- data
    if data is None:
        x_train, y_train, x_eval, y_eval = load_data(cfg, data_dir, source=data_source, split_file=split_file)
    else:
        x_train, y_train, x_eval, y_eval = (np.asarray(a) for a in data)
        x_train, y_train = x_train[:cfg.train_size], y_train[:cfg.train_size]
        x_eval, y_eval = x_eval[:cfg.test_size], y_eval[:cfg.test_size]
        if x_train.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or x_eval.shape[1:] != x_train.shape[1:]:
            raise TrainError(f"images must be [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], got {x_train.shape} "
                             f"and {x_eval.shape}")
        x_train, x_eval = x_train.astype(np.float32), x_eval.astype(np.float32)
        y_train, y_eval = y_train.astype(np.int32), y_eval.astype(np.int32)
    n_train, n_eval = int(x_train.shape[0]), int(x_eval.shape[0])
    if cfg.batch_size > n_train:
        raise TrainError(f"batch size {cfg.batch_size} is larger than the training set ({n_train} images): "
                         f"lower --batch-size or raise --train-size")
    spe = n_train // cfg.batch_size
    total = spe * cfg.epochs
    init_fn, train_step, eval_step = _programs(cfg, arch, spe)
    k_init, k_steps = _keys(int(seed))
    identity = {"config": _config_dict(cfg), "space": arch.space, "architecture": arch.text,
                "seed": int(seed), "n_train": n_train, "n_eval": n_eval, "steps_per_epoch": spe}

    # ---- resume or start
    manager = _checkpoint_manager(ckpt_dir, keep_checkpoints)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    history: list[dict] = []
    wall_before = 0.0
    latest = manager.latest_step() if existing else None
    try:
        if latest is not None:
            meta = _restore_meta(manager, latest)
            old = {k: meta.get(k) for k in identity}
            if old != identity:
                diff = _config_diff(old["config"] or {}, identity["config"])
                diff += [f"{k}: {old[k]!r} -> {identity[k]!r}" for k in identity
                         if k != "config" and old[k] != identity[k]]
                raise TrainError(f"{workdir} holds a run with different settings ({'; '.join(diff)}); "
                                 f"the schedule, data order and parameters depend on all of them: use a "
                                 f"new --workdir, or rerun with the stored settings to continue")
            state = _restore_state(manager, latest, jax.eval_shape(init_fn, k_init))
            history = list(meta["history"])
            wall_before = float(meta.get("wall_s", 0.0))
            say(f"resuming {workdir} from step {latest}/{total} (epoch {len(history)}/{cfg.epochs} done)")
        else:
            state = init_fn(k_init)
        write_text_atomic(metrics_path, "".join(json.dumps(r) + "\n" for r in history))
        step = int(state.step)
        last_saved = latest
        tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

        def wall():
            return wall_before + time.perf_counter() - t_start

        def save(replace: bool = False):
            # replace: the history grew since the checkpoint of this step was written (an
            # evaluation after a stop at an epoch's end), so write it again
            nonlocal last_saved
            if last_saved == step and not replace:
                return
            if last_saved == step:
                manager.wait_until_finished()
                manager.delete(step)
            _save(manager, state, identity | {"format": _FORMAT, "step": step, "history": history,
                                              "wall_s": wall()})
            last_saved = step

        bar = ProgressBar(total, initial=step, batch_size=cfg.batch_size, epochs=cfg.epochs, enabled=progress)
        stopped = False
        try:
            epoch = len(history)
            while epoch < cfg.epochs:
                t_epoch = time.perf_counter()
                pos = step - epoch * spe
                if not 0 <= pos <= spe:
                    raise TrainError(f"checkpoint at step {step} does not match epoch {epoch} of {spe} steps; "
                                     f"the workdir is inconsistent: use a new --workdir")
                if pos == 0:
                    state = state.replace(sums=_zero_sums())
                if pos < spe:
                    perm = epoch_permutation(seed, epoch, n_train)
                for i in range(pos, spe):
                    idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                    state = train_step(state, x_train[idx], y_train[idx], k_steps)
                    step += 1
                    if bar.due():
                        s = jax.device_get(state.sums)
                        c = max(int(s["count"]), 1)
                        bar.update(step, epoch, float(s["loss"]) / c, 100.0 * int(s["correct"]) / c, force=True)
                    if checkpoint_every_steps and step % checkpoint_every_steps == 0 and step % spe:
                        save()
                    if stop_after_steps is not None and step >= stop_after_steps:
                        stopped = True
                        break
                if stopped:
                    break
                s = jax.device_get(state.sums)
                c = max(int(s["count"]), 1)
                bar.update(step, epoch, float(s["loss"]) / c, 100.0 * int(s["correct"]) / c, force=True)
                test_loss, test_acc = evaluate(eval_step, state, x_eval, y_eval, cfg.eval_batch_size)
                first = epoch * spe
                record = {"epoch": epoch + 1, "step": step,
                          "lr": float(learning_rate(cfg, first, steps_per_epoch=spe)),
                          "drop_path": float(drop_path_prob(cfg, first, steps_per_epoch=spe)),
                          "train_loss": float(s["loss"]) / c, "train_acc": 100.0 * int(s["correct"]) / c,
                          f"{cfg.eval_split}_loss": test_loss, f"{cfg.eval_split}_acc": test_acc,
                          "epoch_time_s": time.perf_counter() - t_epoch, "wall_s": wall()}
                history.append(record)
                _append_line(metrics_path, record)
                if tb is not None:
                    for k, v in record.items():
                        if k not in ("epoch", "step"):
                            tb.add_scalar(k, v, epoch + 1)
                    tb.flush()
                save(replace=True)
                epoch += 1
            if stopped:
                save()
        except KeyboardInterrupt:
            bar.close()
            try:
                save()
                manager.wait_until_finished()
                say(f"interrupted at step {step}/{total}; checkpoint saved in {ckpt_dir}: rerun the same "
                    f"command to continue")
            except Exception as e:  # noqa: BLE001 - best effort while interrupted
                say(f"interrupted at step {step}/{total}; no checkpoint saved now ({type(e).__name__}: {e}); "
                    f"a rerun continues from step {last_saved}")
            raise
        finally:
            bar.close()
            if tb is not None:
                tb.close()
        manager.wait_until_finished()
    finally:
        manager.close()

    if stopped or len(history) < cfg.epochs:
        return TrainResult(state, history, None, False, workdir)
    key = f"{cfg.eval_split}_acc"
    accs = [r[key] for r in history]
    best = int(np.argmax(accs))
    n_params, n_with_aux = param_counts(cfg, arch)
    net = _model(cfg, arch)[0]
    result = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": _config_dict(cfg), "seed": int(seed), "versions": versions(),
        "space": arch.space, "architecture": arch.text,
        # how the network's convolutions ran (the same function either way)
        "conv_impl": darts.resolve_conv_impl(net.conv_impl) if arch.space == "darts" else net.conv_impl,
        "params": n_params, "params_with_aux": n_with_aux,
        "data": {"source": data_source if data is None else "arrays", "data_dir": None if data_dir is None
                 else os.fspath(data_dir), "n_train": n_train, f"n_{cfg.eval_split}": n_eval,
                 "eval_split": cfg.eval_split, "steps_per_epoch": spe},
        "epochs": cfg.epochs, "steps": step,
        f"final_{cfg.eval_split}_acc": history[-1][key],
        f"final_{cfg.eval_split}_loss": history[-1][f"{cfg.eval_split}_loss"],
        f"best_{cfg.eval_split}_acc": accs[best], "best_epoch": best + 1,
        "final_train_acc": history[-1]["train_acc"], "final_train_loss": history[-1]["train_loss"],
        "wall_time_s": history[-1]["wall_s"], "workdir": workdir,
    } | dict(extra or {})
    write_json_atomic(os.path.join(workdir, "result.json"), result)
    return TrainResult(state, history, result, True, workdir)


# --------------------------------------------------------------------------- command line

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
    t = sub.add_parser("train", help="train a selected architecture from scratch on CIFAR-10",
                       description="Train a DARTS genotype (--genotype; recipe darts: NetworkCIFAR C=36, "
                       "20 cells, 600 epochs) or an NB201 cell (--arch; recipe nb201: C=16, N=5, 200 "
                       "epochs) from scratch, with orbax checkpoints in WORKDIR/checkpoints; rerunning "
                       "the same command continues from the latest one. Writes WORKDIR/metrics.jsonl "
                       "(per epoch) and WORKDIR/result.json. Unset options take the recipe's value.")
    t.add_argument("--genotype", help="DARTS genotype: the text Genotype(normal=[...], normal_concat=[...], "
                   "reduce=[...], reduce_concat=[...]), a published name (DARTS_V1, DARTS_V2), a file "
                   "holding the text, or the JSON of `nasi search --space darts --output FILE` "
                   "(FILE: its first seed; FILE#SEED: that seed)")
    t.add_argument("--arch", help="NB201 cell string, e.g. \"" + nb201.EXAMPLE_ARCH + "\"")
    t.add_argument("--recipe", choices=RECIPES, help="training recipe (default: darts for --genotype, nb201 "
                   "for --arch)")
    t.add_argument("--dataset", default="cifar10", help="dataset (only cifar10)")
    t.add_argument("--data-dir", help="folder holding cifar10_jpeg/ and nb201/cifar-split.txt (or a "
                   "tensorflow-datasets data_dir with --data-source tfds)")
    t.add_argument("--data-source", choices=_data.DATA_SOURCES, default="auto")
    t.add_argument("--split-file", help="NB201 cifar-split.txt (default: looked up beside the data)")
    t.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, result)")
    t.add_argument("--seed", type=_int_arg("--seed", 0), default=0)
    t.add_argument("--epochs", type=_int_arg("--epochs"))
    t.add_argument("--batch-size", type=_int_arg("--batch-size"))
    t.add_argument("--lr", type=float, help="initial learning rate of the cosine schedule")
    t.add_argument("--lr-min", type=float, help="final learning rate")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="cosine annealed per epoch or per step")
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
    t.add_argument("--train-split", choices=TRAIN_SPLITS, help="all: the 50 000 training images; train: "
                   "NB201's 25 000-image half")
    t.add_argument("--eval-split", choices=EVAL_SPLITS, help="test (default) or NB201's valid half")
    t.add_argument("--train-size", type=_int_arg("--train-size"), help="use the first N training images")
    t.add_argument("--test-size", type=_int_arg("--test-size"), help="use the first N evaluation images")
    t.add_argument("--eval-batch-size", type=_int_arg("--eval-batch-size"))
    t.add_argument("--checkpoint-every-steps", type=_int_arg("--checkpoint-every-steps"),
                   help="also save a checkpoint every N steps (always: every epoch)")
    t.add_argument("--keep-checkpoints", type=_int_arg("--keep-checkpoints"), default=3)
    t.add_argument("--no-resume", dest="resume", action="store_false",
                   help="refuse to continue an existing run in WORKDIR (default: continue it)")
    t.add_argument("--stop-after-steps", type=_int_arg("--stop-after-steps"),
                   help="stop (with a checkpoint) once the global step reaches N; rerun to continue")
    t.add_argument("--compilation-cache", metavar="DIR", help="persistent XLA compilation cache folder "
                   "(a resumed run then loads the same compiled step instead of compiling it again)")
    t.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return t


def config_from_args(args, arch: Architecture) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``nasi train`` arguments for ``arch``."""
    if args.dataset != "cifar10":
        raise TrainError(f"--dataset {args.dataset!r} is not supported: only cifar10 (its images are the "
                         f"only ones available offline)")
    if arch.space == "darts" and args.cells is not None:
        raise TrainError("--cells is NB201's cells per stage; for a DARTS genotype use --layers (cells in total)")
    if arch.space == "nb201" and args.layers is not None:
        raise TrainError("--layers is DARTS's number of cells; for an NB201 cell use --cells (cells per stage)")
    recipe = args.recipe or arch.space
    fields = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                  lr_schedule=args.lr_schedule, momentum=args.momentum, nesterov=args.nesterov,
                  weight_decay=args.weight_decay, grad_clip=args.grad_clip, aux_weight=args.aux_weight,
                  drop_path=args.drop_path, cutout=args.cutout, crop_padding=args.crop_padding,
                  flip=args.flip, channels=args.channels,
                  layers=args.layers if arch.space == "darts" else args.cells,
                  train_split=args.train_split, eval_split=args.eval_split,
                  eval_batch_size=args.eval_batch_size)
    fields = {k: v for k, v in fields.items() if v is not None}
    return TrainConfig.recipe(recipe, space=arch.space, train_size=args.train_size,
                              test_size=args.test_size, **fields)


def run_cli(args, argv: Sequence[str] = ()) -> int:
    """Run ``nasi train`` from parsed arguments (see :func:`add_parser`)."""
    arch = parse_architecture(args.genotype, args.arch)
    cfg = config_from_args(args, arch)
    if args.compilation_cache:
        os.makedirs(args.compilation_cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    n, n_aux = param_counts(cfg, arch)
    net = (f"NetworkCIFAR C={cfg.channels}, {cfg.layers} cells" if arch.space == "darts"
           else f"NB201Network C={cfg.channels}, N={cfg.layers}")
    print(f"[nasi train] {arch.space} architecture {arch.text}")
    print(f"[nasi train] {net}: {n:,} parameters ({n / 1e6:.3f} M, without the auxiliary head"
          + (f"; {n_aux:,} with it" if n_aux != n else "") + ")")
    print(f"[nasi train] recipe {cfg.recipe_name}: {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr} cosine "
          f"-> {cfg.lr_min} per {cfg.lr_schedule}, momentum {cfg.momentum}{' nesterov' if cfg.nesterov else ''}, "
          f"weight decay {cfg.weight_decay}, grad clip {cfg.grad_clip or 'none'}, aux {cfg.aux_weight}, "
          f"drop-path {cfg.drop_path}, cutout {cfg.cutout}; seed {args.seed}; workdir {args.workdir}")
    sys.stdout.flush()
    try:
        res = train(cfg, arch, args.workdir, seed=args.seed, data_dir=args.data_dir,
                    data_source=args.data_source, split_file=args.split_file, resume=args.resume,
                    checkpoint_every_steps=args.checkpoint_every_steps,
                    keep_checkpoints=args.keep_checkpoints, stop_after_steps=args.stop_after_steps,
                    progress=not args.no_progress, log=lambda s: print(f"[nasi train] {s}", file=sys.stderr),
                    extra={"command": "nasi " + " ".join(shlex.quote(a) for a in argv)})
    except KeyboardInterrupt:
        print("[nasi train] stopped by Ctrl-C", file=sys.stderr)
        return 130
    if not res.completed:
        print(f"[nasi train] stopped at step {int(res.state.step)} after {len(res.history)} complete epoch(s); "
              f"rerun the same command without --stop-after-steps to continue")
        return 0
    r = res.result
    e = cfg.eval_split
    print(f"[nasi train] done: {r['epochs']} epochs, {r['steps']} steps, final {e} acc {r[f'final_{e}_acc']:.2f}% "
          f"(best {r[f'best_{e}_acc']:.2f}% at epoch {r['best_epoch']}), train acc {r['final_train_acc']:.2f}%, "
          f"wall {_fmt_time(r['wall_time_s'])}; wrote {os.path.join(res.workdir, 'result.json')}")
    return 0
