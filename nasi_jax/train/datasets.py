"""What training knows about each dataset (:data:`TRAIN_DATASETS`, the one place that does):
its classes, its normalisation, its splits, its data sources, and how to load a run's arrays.

The network's head has ``num_classes`` outputs; the crop pads with the dataset's black
(:attr:`TrainDataset.pad_value`); the recipes and the augmentation are the same for all.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Callable, Mapping

import numpy as np

from nasi_jax import data as _data

__all__ = ["TrainDataset", "TRAIN_DATASETS", "FULL_HALF"]

FULL_HALF = 25_000  # images in each half of NB201's cifar10-valid split


@dataclasses.dataclass(frozen=True, eq=False)
class TrainDataset:
    """What training knows about one dataset (an entry of :data:`TRAIN_DATASETS`).

    * ``name`` (the ``--dataset`` value), ``title`` (for messages), ``num_classes`` (the head).
    * ``mean``, ``std``: the per-channel normalisation of its loader (RGB, [0, 1] scale).
    * ``train_images``: ``train_split`` -> how many training images it has; ``eval_splits``:
      the accepted ``eval_split`` values; ``sources``: the accepted ``data_source`` values.
    * ``load(cfg, data_dir, source, split_file) -> (x_train, y_train, x_eval, y_eval)``, host
      arrays: images float32 ``[N, 32, 32, 3]`` normalised, labels int32 ``[N]``.
    * ``provide``: how to give its files (the message when none are given).
    """

    name: str
    title: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_images: Mapping[str, int]
    eval_splits: tuple[str, ...]
    sources: tuple[str, ...]
    load: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    provide: str

    @property
    def pad_value(self) -> tuple[float, ...]:
        """Per channel, the value of a black pixel (raw 0) after normalisation: ``-mean / std``."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))


def _load_cifar10(cfg, data_dir, *, source: str, split_file) -> tuple[np.ndarray, ...]:
    """CIFAR-10 through :func:`nasi_jax.data.load_cifar10_split`: ``train_split="all"`` is NB201's
    train half then its valid half (the first ``train_size`` of them), ``"train"`` the train half."""
    kw = dict(source=source, split_file=split_file)
    if cfg.train_split == "train":
        x, y = _data.load_cifar10_split(data_dir, split="train", limit=cfg.train_size, **kw)
    else:
        n = cfg.train_size
        x, y = _data.load_cifar10_split(data_dir, split="train", limit=None if n is None else min(n, FULL_HALF), **kw)
        if n is None or n > FULL_HALF:
            x2, y2 = _data.load_cifar10_split(data_dir, split="valid",
                                              limit=None if n is None else n - FULL_HALF, **kw)
            x, y = np.concatenate([x, x2]), np.concatenate([y, y2])
    xe, ye = _data.load_cifar10_split(data_dir, split=cfg.eval_split, limit=cfg.test_size, **kw)
    return x, y, xe, ye


def _load_cifar100(cfg, data_dir, *, source: str, split_file) -> tuple[np.ndarray, ...]:
    """CIFAR-100 through :func:`nasi_jax.data.load_cifar100_split`: the first ``train_size`` of
    its training set and the first ``test_size`` of its test set, in the files' order."""
    if split_file is not None:
        raise _data.DataError("--split-file is NB201's split of the CIFAR-10 training set; CIFAR-100 "
                              "trains on all its training images and needs none: drop it")
    x, y = _data.load_cifar100_split(data_dir, split="train", source=source, limit=cfg.train_size)
    xe, ye = _data.load_cifar100_split(data_dir, split="test", source=source, limit=cfg.test_size)
    return x, y, xe, ye


TRAIN_DATASETS: Mapping[str, TrainDataset] = types.MappingProxyType({
    "cifar10": TrainDataset(
        name="cifar10", title="CIFAR-10", num_classes=_data.NUM_CLASSES, mean=_data.CIFAR10_MEAN,
        std=_data.CIFAR10_STD, train_images=types.MappingProxyType({"all": 2 * FULL_HALF, "train": FULL_HALF}),
        eval_splits=("test", "valid"), sources=_data.DATA_SOURCES, load=_load_cifar10,
        provide="pass --data-dir DIR (the folder holding cifar10_jpeg/ and nb201/cifar-split.txt, e.g. "
                "../shared/data) or --data-source tfds with a prepared tensorflow-datasets cifar10"),
    "cifar100": TrainDataset(
        name="cifar100", title="CIFAR-100", num_classes=_data.CIFAR100_NUM_CLASSES, mean=_data.CIFAR100_MEAN,
        std=_data.CIFAR100_STD, train_images=types.MappingProxyType({"all": 50_000}), eval_splits=("test",),
        sources=_data.CIFAR100_SOURCES, load=_load_cifar100,
        provide="pass --data-dir DIR, the folder holding cifar-100-python/ (train, test) or cifar-100-binary/ "
                "(train.bin, test.bin) as unpacked from https://www.cs.toronto.edu/~kriz/cifar.html"),
})
"""Training's knowledge of each dataset, keyed by its ``--dataset`` name (:class:`TrainDataset`)."""

