"""Where CIFAR-10 and NB201's split file live, and the split file's format (private)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

NUM_CLASSES = 10
"""Number of CIFAR-10 classes."""

IMAGE_SHAPE = (32, 32, 3)
"""Shape of one CIFAR-10 image, ``(H, W, C)``. Batches are NHWC."""

CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
"""Per-channel (RGB) mean used by NAS-Bench-201 to normalise CIFAR-10, on the [0, 1] scale."""

CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
"""Per-channel (RGB) std used by NAS-Bench-201 to normalise CIFAR-10, on the [0, 1] scale."""

DATA_MODES = ("random", "random-labels", "real")
"""Batch modes accepted by :func:`sample_batch` and :func:`load_data_for_mode`."""

DATA_SOURCES = ("auto", "local", "binary", "tfds")
"""Values accepted for ``source`` in :func:`load_cifar10_split`: ``local`` (the project's npz
files), ``binary`` (CIFAR-10's binary distribution, ``cifar-10-batches-bin/``), ``tfds``
(a prepared tensorflow-datasets ``cifar10``) or ``auto`` (the first of them found)."""

SPLITS = ("train", "valid", "test")
"""Splits accepted by :func:`load_cifar10_split`. ``train`` and ``valid`` are the two halves of
NB201's ``cifar10-valid`` split of the CIFAR-10 training set. ``test`` is the 10 000-image test set."""

TRAIN_NPZ = "cifar10_train_jpeg.npz"
TEST_NPZ = "cifar10_test.npz"
SPLIT_FILE = "cifar-split.txt"
CIFAR10_DIRNAME = "cifar10_jpeg"

_TRAIN_FORMAT = (
    f"{TRAIN_NPZ} holding `jpeg` (uint8, the JPEG files of all training images concatenated "
    "in the original CIFAR-10 order), `offsets` (int64 [N+1]; image i is "
    "jpeg[offsets[i]:offsets[i+1]]) and `y` (uint8 [N] labels 0-9)"
)
_TEST_FORMAT = f"{TEST_NPZ} holding `x` (uint8 [N, 32, 32, 3], RGB) and `y` (uint8 [N] labels 0-9)"
_SPLIT_FORMAT = (
    'JSON {"train": ["int", ["0", "5", ...]], "valid": ["int", [...]]}: NB201\'s cifar10-valid '
    "split, indices into the original CIFAR-10 training order"
)
_BINARY_HINT = ("or CIFAR-10's binary distribution (cifar-10-batches-bin/ from "
                "https://www.cs.toronto.edu/~kriz/cifar.html, 'CIFAR-10 binary version', unpacked in DIR)")
_TFDS_HINT = (
    "install tensorflow-datasets, prepare cifar10 once on a machine with network access "
    "(python -c \"import tensorflow_datasets as tfds; "
    "tfds.builder('cifar10', data_dir='DIR').download_and_prepare()\"), "
    "then pass --data-source tfds --data-dir DIR"
)


class DataError(ValueError):
    """The data files are missing or malformed, or the data options are wrong.

    The message says what is wrong and how to fix it. It subclasses ValueError, so
    ``except ValueError`` also catches it.
    """



def _resolve_dir(data_dir: Any, source: str) -> Path | None:
    """Check ``data_dir`` and return it as a Path. ``None`` is allowed only for tfds."""
    if data_dir is None:
        if source == "tfds":
            return None
        raise DataError(
            "no data directory given: pass --data-dir DIR, where DIR is the folder holding "
            f"{CIFAR10_DIRNAME}/ and nb201/{SPLIT_FILE}, or the {CIFAR10_DIRNAME} folder itself "
            "(or use --data random, which needs no files)"
        )
    path = Path(os.path.expanduser(os.fspath(data_dir)))
    if not path.exists():
        raise DataError(
            f"data directory {path} does not exist: pass --data-dir DIR pointing to the folder "
            f"holding {CIFAR10_DIRNAME}/ and nb201/{SPLIT_FILE} (or to the {CIFAR10_DIRNAME} "
            "folder itself), or use --data random, which needs no files"
        )
    if not path.is_dir():
        raise DataError(
            f"data directory {path} is not a directory: pass the folder holding {CIFAR10_DIRNAME}/ "
            f"(or the {CIFAR10_DIRNAME} folder itself), not a file"
        )
    return path


def _find_npz(root: Path | None, name: str) -> Path | None:
    """Return ``root/name`` or ``root/cifar10_jpeg/name``, whichever exists first, else None."""
    if root is None:
        return None
    for candidate in (root / name, root / CIFAR10_DIRNAME / name):
        if candidate.is_file():
            return candidate
    return None


def _split_file_candidates(root: Path | None) -> list[Path]:
    if root is None:
        return []
    return [root / SPLIT_FILE, root.parent / "nb201" / SPLIT_FILE, root / "nb201" / SPLIT_FILE]


def _find_split_file(root: Path | None, split_file: Any) -> Path:
    """Return the split file: ``split_file`` if given, else the first one found near ``root``."""
    if split_file is not None:
        path = Path(os.path.expanduser(os.fspath(split_file)))
        if not path.is_file():
            raise DataError(
                f"split file {path} does not exist: pass the path of NB201's {SPLIT_FILE} "
                f"({_SPLIT_FORMAT})"
            )
        return path
    candidates = _split_file_candidates(root)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates) or "(no data directory given)"
    raise DataError(
        f"NB201's split file {SPLIT_FILE} was not found (looked in: {looked}). Put it at "
        f"DIR/nb201/{SPLIT_FILE} next to DIR/{CIFAR10_DIRNAME}/, or pass its path with "
        f"--split-file / split_file=. Expected format: {_SPLIT_FORMAT}"
    )


def _read_split_indices(path: Path, split: str) -> np.ndarray:
    """Read one half (``train`` or ``valid``) of NB201's split file as int64 ``[M]``."""
    bad = f"malformed split file {path}: "
    fix = f"; expected {_SPLIT_FORMAT}"
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{bad}cannot read it as JSON ({e}){fix}") from e
    if not isinstance(content, dict) or split not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"{bad}no {split!r} entry (found {keys}){fix}")
    entry = content[split]
    # NB201 writes ["int", [...]]; a plain list of indices is accepted too.
    if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], list):
        values = entry[1]
    elif isinstance(entry, list):
        values = entry
    else:
        raise DataError(f"{bad}{split!r} is a {type(entry).__name__}, not a list{fix}")
    if not values:
        raise DataError(f"{bad}{split!r} holds no indices{fix}")
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise ValueError
            out[i] = int(v)
        except (ValueError, OverflowError):
            raise DataError(f"{bad}{split!r} entry {i} is {v!r}, not an integer index{fix}") from None
    if np.unique(out).size != out.size:
        raise DataError(f"{bad}{split!r} repeats some indices{fix}")
    return out


def _check_limit(limit: Any) -> int | None:
    """``limit`` (keep the first ``limit`` examples of a split) as an int, or None (all of them)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    return int(limit)


def _check_index_range(indices: np.ndarray, n: int, where: str, split_path: Path | None) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
        src = f"the split file {split_path}" if split_path is not None else "the split"
        raise DataError(
            f"{src} has index {bad}, outside the {n} training images in {where}: the split "
            "must index the full 50 000-image CIFAR-10 training set in its original order"
        )


def _tfds_importable() -> bool:
    if "tensorflow_datasets" in sys.modules:
        return sys.modules["tensorflow_datasets"] is not None
    try:
        return importlib.util.find_spec("tensorflow_datasets") is not None
    except (ImportError, ValueError):
        return False


