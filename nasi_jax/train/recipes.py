"""What a training run is: :class:`TrainConfig`, the two named recipes, and what training
knows about each search space (:data:`TRAIN_SPACES`, the one place that does; the datasets'
counterpart is :data:`~nasi_jax.train.datasets.TRAIN_DATASETS`).

Every space-specific decision of the train package looks up ``TRAIN_SPACES[space]``: its
recipe, its network size, how to parse one of its architectures, how to build and count its
evaluation network, whether that network has an auxiliary head and drop-path, and the words
and flags that messages use for it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Callable, Mapping

import numpy as np

from nasi_jax import data as _data
from nasi_jax.spaces import darts, nb201
from nasi_jax.train.datasets import TRAIN_DATASETS, TrainDataset

__all__ = ["TrainError", "TrainSpace", "TRAIN_SPACES", "RECIPES", "TrainConfig", "NUM_CLASSES",
           "IMAGE_SIZE", "TRAIN_SPLITS", "EVAL_SPLITS", "LR_SCHEDULES", "DATASETS"]

NUM_CLASSES = _data.NUM_CLASSES  # CIFAR-10's; a config's own is TrainConfig.num_classes
IMAGE_SIZE = _data.IMAGE_SHAPE[0]
TRAIN_SPLITS = ("all", "train")
EVAL_SPLITS = ("test", "valid")
LR_SCHEDULES = ("epoch", "step")
DATASETS = tuple(TRAIN_DATASETS)


class TrainError(ValueError):
    """Impossible settings, a mismatched workdir, or a bad architecture; the message says
    what is wrong and how to fix it (a ValueError, as the CLI expects)."""


# --------------------------------------------------------------------------- the spaces

@dataclasses.dataclass(frozen=True, eq=False)
class TrainSpace:
    """What training knows about one search space (an entry of :data:`TRAIN_SPACES`).

    * ``name``: the space, also the name of its own recipe; ``recipe``: that recipe's fields
      (all but the network size).
    * ``arg``: the keyword of :func:`parse_architecture` and the CLI flag (``--arg``) that
      take one of its architectures; ``arch_noun``: what one is called in messages.
    * ``parse(value) -> (canonical text, spec)``; ``claims(value)``: whether a bare value
      passed to :func:`train` is one of its architectures; ``file_sources``: whether the
      value may also name a file or a ``nasi search`` result (genotype sources), except for
      the ``published`` names.
    * ``network``: the evaluation network's class name; ``size_text``: its size as
      ``str.format(channels=, layers=)``; ``channels``, ``layers``: the default size;
      ``min_layers`` and ``layers_hint`` (the message when ``layers`` is too small; None:
      the generic one); ``layers_flag``, ``layers_meaning``, ``layers_owner``: the CLI flag
      for ``layers`` and what it means, alone and as seen from another space.
    * ``aux_head``: whether the network has an auxiliary head and drop-path.
    * ``build(cfg, spec) -> (module, init, apply)``, with ``init(key, x)`` and
      ``apply(variables, x, train, drop_path, rng, mutable)`` returning
      ``(logits, aux or None)`` (and the mutated collections when ``mutable``).
    * ``count_params(cfg, spec) -> (without the auxiliary head, with it)``;
      ``conv_impl(module)``: the convolution implementation the module runs.
    """

    name: str
    recipe: Mapping[str, Any]
    arg: str
    arch_noun: str
    parse: Callable[[Any], tuple[str, Any]]
    claims: Callable[[Any], bool]
    file_sources: bool
    published: Mapping[str, Any]
    network: str
    size_text: str
    channels: int
    layers: int
    min_layers: int
    layers_hint: str | None
    layers_flag: str
    layers_meaning: str
    layers_owner: str
    aux_head: bool
    build: Callable[[Any, Any], tuple[Any, Callable, Callable]]
    count_params: Callable[[Any, Any], tuple[int, int]]
    conv_impl: Callable[[Any], str]

    def describe(self, cfg: "TrainConfig") -> str:
        """The network of ``cfg`` in words, e.g. ``NetworkCIFAR C=36, 20 cells``."""
        return f"{self.network} " + self.size_text.format(channels=cfg.channels, layers=cfg.layers)


def _parse_darts(value) -> tuple[str, Any]:
    g = darts.parse_genotype(value)
    return darts.genotype_to_str(g), g


def _parse_nb201(value) -> tuple[str, Any]:
    ops = nb201.parse_arch(value)
    return nb201.arch_to_str(ops), ops


def _build_darts(cfg: "TrainConfig", genotype):
    # training differentiates in reverse mode only: on CPU the depthwise convolutions as taps
    # with a hand-written VJP (the same function as the other conv_impls, faster there)
    net = darts.NetworkCIFAR(genotype, channels=cfg.channels, layers=cfg.layers, num_classes=cfg.num_classes,
                             auxiliary=cfg.aux_weight > 0,
                             conv_impl=darts.resolve_conv_impl("auto", reverse_only=True))

    def apply(variables, x, train, drop_path=None, rng=None, mutable=False):
        rngs = {"dropout": rng} if rng is not None else None
        return net.apply(variables, x, train=train, drop_path_prob=drop_path, rngs=rngs, mutable=mutable)

    def init(key, x):
        return net.init(key, x, train=False)
    return net, init, apply


def _build_nb201(cfg: "TrainConfig", ops):
    net = nb201.NB201Network(cfg.channels, cfg.layers, cfg.num_classes, fixed=tuple(ops))

    def apply(variables, x, train, drop_path=None, rng=None, mutable=False):
        out = net.apply(variables, x, None, train=train, mutable=mutable)
        return ((out[0], None), out[1]) if mutable else (out, None)

    def init(key, x):
        return net.init(key, x, None, train=False)
    return net, init, apply


def _count_darts(cfg: "TrainConfig", genotype) -> tuple[int, int]:
    kw = dict(channels=cfg.channels, layers=cfg.layers, num_classes=cfg.num_classes)
    n = darts.count_params(genotype, **kw)
    return n, (darts.count_params(genotype, auxiliary=True, **kw) if cfg.aux_weight > 0 else n)


def _count_nb201(cfg: "TrainConfig", ops) -> tuple[int, int]:
    n = nb201.count_params(ops, channels=cfg.channels, cells_per_stage=cfg.layers, num_classes=cfg.num_classes)
    return n, n


TRAIN_SPACES: Mapping[str, TrainSpace] = types.MappingProxyType({
    "darts": TrainSpace(
        name="darts",
        recipe=types.MappingProxyType(dict(
            epochs=600, batch_size=96, lr=0.025, lr_min=0.0, lr_schedule="epoch", momentum=0.9,
            nesterov=False, weight_decay=3e-4, grad_clip=5.0, aux_weight=0.4, drop_path=0.2,
            crop_padding=4, flip=True, cutout=16)),
        arg="genotype", arch_noun="a DARTS genotype", parse=_parse_darts,
        claims=lambda value: isinstance(value, darts.Genotype), file_sources=True, published=darts.PUBLISHED,
        network="NetworkCIFAR", size_text="C={channels}, {layers} cells", channels=36, layers=20,
        min_layers=2,
        layers_hint="DARTS's NetworkCIFAR reduces at cells layers//3 and 2*layers//3, which coincide for "
                    "layers < 2 (one reduction only, and the auxiliary head would not see an 8x8 map); "
                    "use layers >= 2 (DARTS: 20)",
        layers_flag="--layers", layers_meaning="cells in total", layers_owner="DARTS's number of cells",
        aux_head=True, build=_build_darts, count_params=_count_darts,
        conv_impl=lambda net: darts.resolve_conv_impl(net.conv_impl)),
    "nb201": TrainSpace(
        name="nb201",
        recipe=types.MappingProxyType(dict(
            epochs=200, batch_size=256, lr=0.1, lr_min=0.0, lr_schedule="step", momentum=0.9,
            nesterov=True, weight_decay=5e-4, grad_clip=0.0, aux_weight=0.0, drop_path=0.0,
            crop_padding=4, flip=True, cutout=0)),
        arg="arch", arch_noun="an NB201 cell", parse=_parse_nb201,
        claims=lambda value: isinstance(value, str) and value.strip().startswith("|"),
        file_sources=False, published={},
        network="NB201Network", size_text="C={channels}, N={layers}", channels=16, layers=5,
        min_layers=1, layers_hint=None,
        layers_flag="--cells", layers_meaning="cells per stage", layers_owner="NB201's cells per stage",
        aux_head=False, build=_build_nb201, count_params=_count_nb201, conv_impl=lambda net: net.conv_impl),
})
"""Training's knowledge of each search space, keyed by the space's name (:class:`TrainSpace`)."""

RECIPES = tuple(TRAIN_SPACES)
"""Names accepted by :meth:`TrainConfig.recipe`: each space's own recipe."""


# --------------------------------------------------------------------------- configuration

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's numbers (with the seed and architecture).

    Build one with :meth:`recipe`; the defaults here are the DARTS recipe. Fields:

    * ``recipe_name``: the recipe the defaults came from (recorded only).
    * ``space``: ``"darts"`` (NetworkCIFAR from a genotype) or ``"nb201"`` (NB201Network).
    * ``channels``: C. ``layers``: DARTS: cells in total (reductions at ``layers//3`` and
      ``2*layers//3``, >= 2); NB201: cells per stage N.
    * ``epochs`` E, ``batch_size`` B; ``lr`` eta_0 and ``lr_min`` eta_min of the cosine,
      ``lr_schedule`` ``"epoch"`` or ``"step"`` (package docstring); ``momentum``,
      ``nesterov``; ``weight_decay`` (L2 added to the gradient, all parameters);
      ``grad_clip`` (global norm; 0 = none).
    * ``aux_weight``: weight of the auxiliary head's loss (0 = no head; DARTS only).
    * ``drop_path``: final drop-path probability, reached linearly (DARTS only).
    * ``crop_padding`` (0 = no crop), ``flip``, ``cutout`` (hole size; 0 = none).
    * ``dataset``: a key of :data:`~nasi_jax.train.datasets.TRAIN_DATASETS`, ``"cifar10"`` or
      ``"cifar100"`` (100 fine classes, its own normalisation; the same recipes and
      augmentation); it sets the head's size, :attr:`num_classes`.
    * ``train_split``: ``"all"`` (the 50 000 training images, as DARTS and NB201's ``cifar10``
      results) or ``"train"`` (CIFAR-10 only: NB201's 25 000-image half); ``eval_split``:
      ``"test"`` (10 000) or ``"valid"`` (CIFAR-10 only: NB201's other half; needs
      ``train_split="train"``).
    * ``train_size`` / ``test_size``: keep the first N images of those splits (None: all;
      for CIFAR-10's ``"all"`` the first of NB201's train half, then of its valid half; for
      CIFAR-100 the first of its files); deterministic.
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
    dataset: str = "cifar10"
    train_split: str = "all"
    eval_split: str = "test"
    train_size: int | None = None
    test_size: int | None = None
    eval_batch_size: int = 500

    @property
    def dataset_spec(self) -> TrainDataset:
        """The dataset's entry of :data:`~nasi_jax.train.datasets.TRAIN_DATASETS`."""
        return TRAIN_DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        """Outputs of the network's head: the dataset's classes (CIFAR-10: 10, CIFAR-100: 100)."""
        return self.dataset_spec.num_classes

    @classmethod
    def recipe(cls, name: str = "darts", *, space: str | None = None, **overrides) -> "TrainConfig":
        """The named recipe (package docstring table) for ``space`` (default: the recipe's own),
        with ``overrides`` applied, validated.

        The network size (``channels``, ``layers``) defaults to the space's evaluation network
        (DARTS: 36, 20; NB201: 16, 5); on a space whose network has no auxiliary head and no
        drop-path (NB201) both are off whatever the recipe. An override of None keeps the
        recipe's value, except for ``train_size`` / ``test_size`` where None means all images.
        """
        if name not in RECIPES:
            raise TrainError(f"unknown recipe {name!r}: choose one of {RECIPES}")
        space = name if space is None else space
        if space not in TRAIN_SPACES:
            choices = " or ".join(f"{n!r} (--{s.arg})" for n, s in TRAIN_SPACES.items())
            raise TrainError(f"unknown space {space!r}: choose {choices}")
        entry = TRAIN_SPACES[space]
        fields = dict(TRAIN_SPACES[name].recipe) | dict(channels=entry.channels, layers=entry.layers)
        if not entry.aux_head:
            fields.update(aux_weight=0.0, drop_path=0.0)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TrainError(f"unknown TrainConfig field(s) {unknown}; fields are {names}")
        fields.update({k: v for k, v in overrides.items() if v is not None or k in ("train_size", "test_size")})
        return cls(recipe_name=name, space=space, **fields).validate()

    def validate(self) -> "TrainConfig":
        """Check every field; raise :class:`TrainError` naming the field and the fix."""
        if self.recipe_name not in RECIPES:
            raise TrainError(f"unknown recipe {self.recipe_name!r}: choose one of {RECIPES}")
        if self.space not in TRAIN_SPACES:
            raise TrainError(f"unknown space {self.space!r}: choose {' or '.join(map(repr, TRAIN_SPACES))}")
        if self.dataset not in TRAIN_DATASETS:
            raise TrainError(f"unknown dataset {self.dataset!r}: choose one of {DATASETS}")
        self._check_numbers()
        self._check_choices()
        self._check_sizes()
        return self

    def _need_int(self, name: str, lo: int, hint: str | None = None) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise TrainError(f"{name}={v!r}: {hint}" if hint else f"{name} must be an integer >= {lo}, got {v!r}")

    def _need_float(self, name: str, lo: float, hi: float = math.inf, hi_open: bool = False) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < lo or v > hi or (hi_open and v >= hi):
            raise TrainError(f"{name} must be a number in [{lo}, {hi}{')' if hi_open else ']'}, got {v!r}")

    def _check_numbers(self) -> None:
        for name in ("channels", "epochs", "batch_size", "eval_batch_size"):
            self._need_int(name, 1)
        self._need_int("crop_padding", 0)
        self._need_int("cutout", 0)
        entry = TRAIN_SPACES[self.space]
        self._need_int("layers", entry.min_layers, entry.layers_hint)
        self._need_float("lr", 0.0)
        self._need_float("lr_min", 0.0, self.lr)
        self._need_float("momentum", 0.0, 1.0, hi_open=True)
        self._need_float("weight_decay", 0.0)
        self._need_float("grad_clip", 0.0)
        self._need_float("aux_weight", 0.0)
        self._need_float("drop_path", 0.0, 1.0, hi_open=True)

    def _check_choices(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not isinstance(self.nesterov, bool) or not isinstance(self.flip, bool):
            raise TrainError("nesterov and flip must be True or False")
        if self.nesterov and self.momentum == 0:
            raise TrainError("nesterov needs momentum > 0")
        entry = TRAIN_SPACES[self.space]
        if not entry.aux_head and (self.aux_weight or self.drop_path):
            raise TrainError(f"{entry.network} has no auxiliary head and no drop-path: set aux_weight=0 and "
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
        ds = self.dataset_spec
        if self.train_split not in ds.train_images or self.eval_split not in ds.eval_splits:
            raise TrainError(f"{ds.title} trains on train_split {tuple(ds.train_images)} and evaluates on "
                             f"eval_split {ds.eval_splits}, got {self.train_split!r} and {self.eval_split!r} "
                             f"(NB201's train/valid halves split the CIFAR-10 training set only)")

    def _check_sizes(self) -> None:
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                self._need_int(name, 1)
        full = self.dataset_spec.train_images[self.train_split]
        if self.train_size is not None and self.train_size > full:
            raise TrainError(f"train_size {self.train_size} exceeds the {full} images of train_split "
                             f"{self.train_split!r}")
        n_train = full if self.train_size is None else self.train_size
        if self.batch_size > n_train:
            raise TrainError(f"batch size {self.batch_size} is larger than the training set ({n_train} images): "
                             f"lower --batch-size or raise --train-size")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as a plain dict (what checkpoints and ``result.json`` record)."""
    return dataclasses.asdict(cfg)


# Fields added to TrainConfig after checkpoints of runs without them were written, with the
# value those runs had: a run saved before CIFAR-100 existed trained on CIFAR-10.
_ADDED_FIELDS = types.MappingProxyType({"dataset": "cifar10"})


def stored_config(record: dict | None) -> dict | None:
    """A config dict read back from a checkpoint, with the fields added since it was written set
    to what that run had, so it compares equal to the same settings today; e.g.
    ``stored_config({"epochs": 600})`` is ``{"dataset": "cifar10", "epochs": 600}``."""
    return None if record is None else dict(_ADDED_FIELDS) | dict(record)


def config_diff(old: dict, new: dict) -> list[str]:
    """``"field: old -> new"`` for every field that differs (``<absent>`` for a missing one)."""
    keys = list(dict.fromkeys([*old, *new]))
    return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in keys
            if old.get(k, "<absent>") != new.get(k, "<absent>")]
