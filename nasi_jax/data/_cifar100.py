"""CIFAR-100 as its authors ship it, the python version (pickles) or the binary version (records),
read in place; nothing is ever downloaded (private)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from nasi_jax.data._files import DataError, _check_limit
from nasi_jax.data._readers import PIXEL_BYTES, _check_labels, planes_to_images, read_records
from nasi_jax.data._sampling import normalize_images

CIFAR100_NUM_CLASSES = 100
"""CIFAR-100's fine classes (the labels used here; its 20 coarse classes are not)."""

# NAS-Bench-201's normalisation of CIFAR-100, from the same place as CIFAR10_MEAN / CIFAR10_STD:
# AutoDL-Projects, lib/datasets/get_dataset_with_transform.py, get_datasets("cifar100"):
# mean = [x / 255 for x in [129.3, 124.1, 112.4]], std = [x / 255 for x in [68.2, 65.4, 70.4]]
# (the per-channel statistics of CIFAR-100's training set, in 0-255 units, rounded).
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
"""Per-channel (RGB) mean used by NAS-Bench-201 to normalise CIFAR-100, on the [0, 1] scale."""

CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)
"""Per-channel (RGB) std used by NAS-Bench-201 to normalise CIFAR-100, on the [0, 1] scale."""

CIFAR100_SOURCES = ("auto", "python", "binary")
"""Values accepted for ``source`` in :func:`load_cifar100_split`."""

CIFAR100_SPLITS = ("train", "test")
"""Splits of :func:`load_cifar100_split`: the 50 000 training and the 10 000 test images."""

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

# The globals a CIFAR-100 pickle refers to: numpy's array reconstruction (numpy 1 and 2 names,
# protocols 2 to 5) and the bytes codec of protocol 2. Nothing else is ever called.
_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only: a pickle asking for anything else is refused
    (a pickle can run any code it names; CIFAR-100's never needs to)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-100 pickle never does")
        return super().find_class(module, name)


class _Layout(NamedTuple):
    """One of the authors' distributions: the ``folder`` its archive unpacks to, its ``files``
    (split -> file name), ``read(path) -> (images uint8 [N, 32, 32, 3], fine labels int64 [N])``
    and ``fmt``, what the files hold (for messages)."""

    version: str
    folder: str
    files: Mapping[str, str]
    read: Callable[[Path], tuple[np.ndarray, np.ndarray]]
    fmt: str


_PY_FORMAT = ("pickled dicts with b'data' (uint8 [N, 3072]: the red, green and blue 32x32 planes, "
              "row-major) and b'fine_labels' (N integers in 0..99)")
_BIN_FORMAT = (f"records of 1 coarse label byte, 1 fine label byte (0..99) and {PIXEL_BYTES} pixel bytes "
               "(the red, green and blue 32x32 planes, row-major)")


def _entry(content: dict, key: str, path: Path) -> Any:
    """``content[b'key']`` (as the authors' Python 2 pickles load) or ``content['key']``."""
    for k in (key.encode(), key):
        if k in content:
            return content[k]
    raise DataError(f"malformed {path}: no {key.encode()!r} entry (found {sorted(map(repr, content))}); "
                    f"expected {_PY_FORMAT}")


def _read_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One file of the python version: images uint8 ``[N, 32, 32, 3]``, fine labels int64 ``[N]``."""
    try:
        with open(path, "rb") as fh:
            content = _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as e:  # UnpicklingError, EOFError, OSError, ...
        raise DataError(f"cannot read {path} as a CIFAR-100 pickle ({type(e).__name__}: {e}); "
                        f"expected {_PY_FORMAT}") from e
    if not isinstance(content, dict):
        raise DataError(f"malformed {path}: holds a {type(content).__name__}, not a dict; expected {_PY_FORMAT}")
    x, labels = _entry(content, "data", path), _entry(content, "fine_labels", path)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != PIXEL_BYTES:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"malformed {path}: b'data' must be uint8 [N, {PIXEL_BYTES}], got {got}")
    try:
        y = np.asarray(labels)
    except ValueError as e:
        raise DataError(f"malformed {path}: b'fine_labels' is not a list of integers ({e})") from e
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"malformed {path}: b'fine_labels' must be {x.shape[0]} integers (one per row of "
                        f"b'data'), got {y.dtype} {y.shape}")
    _check_labels(y, path, CIFAR100_NUM_CLASSES)
    return planes_to_images(x), y.astype(np.int64)


def _read_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One file of the binary version: images uint8 ``[N, 32, 32, 3]``, fine labels int64 ``[N]``."""
    return read_records(path, label_bytes=2, label=1, num_classes=CIFAR100_NUM_CLASSES, fmt=_BIN_FORMAT)


_LAYOUTS: Mapping[str, _Layout] = {
    "python": _Layout("python", "cifar-100-python", {"train": "train", "test": "test"}, _read_pickle,
                      _PY_FORMAT),
    "binary": _Layout("binary", "cifar-100-binary", {"train": "train.bin", "test": "test.bin"}, _read_binary,
                      _BIN_FORMAT),
}


def _find(root: Path, layout: _Layout, split: str) -> Path | None:
    """``root/<folder>/<file>`` or ``root/<file>`` (``root`` is the folder itself), whichever exists."""
    name = layout.files[split]
    return next((p for p in (root / layout.folder / name, root / name) if p.is_file()), None)


def _expected(root: Any, layouts: list[_Layout]) -> str:
    """Where the files of ``layouts`` are looked for and what they hold, for messages."""
    return "; or ".join(f"{root}/{lay.folder}/ holding {' and '.join(lay.files.values())} (CIFAR-100 "
                        f"{lay.version} version: {lay.fmt})" for lay in layouts)


def _missing(root: Path | None, layouts: list[_Layout], why: str) -> DataError:
    """The error for absent files: which ones are expected where, and how to get them."""
    archives = " or ".join(f"{lay.folder}.tar.gz" for lay in layouts)
    where = root if root is not None else "a folder DIR and pass --data-dir DIR"
    return DataError(f"{why}: expected {_expected(root or 'DIR', layouts)}. Get {archives} from {CIFAR_URL} "
                     f"and unpack it in {where}; nothing is downloaded here")


def load_cifar100_split(
    data_dir: str | os.PathLike | None,
    *,
    split: str = "train",
    source: str = "auto",
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-100's training or test set, with its 100 fine labels, from the authors' files.

    Args:
      data_dir: the folder holding ``cifar-100-python/`` (the python version: pickles ``train``
        and ``test``, each a dict with ``b'data'`` uint8 ``[N, 3072]``, ``b'fine_labels'`` and
        ``b'coarse_labels'``) or ``cifar-100-binary/`` (the binary version: ``train.bin`` and
        ``test.bin``, records of 1 coarse label byte, 1 fine label byte and 3072 pixel bytes), or
        that folder itself. The pixels are the red, green and blue 32x32 planes, row-major.
      split: ``"train"`` (50 000 images) or ``"test"`` (10 000), in the files' order.
      source: ``"python"``, ``"binary"`` or ``"auto"`` (python if its file is there, else binary).
        The pickles are read with an unpickler that builds nothing but containers and numpy
        arrays, so a file that names anything else is refused, never run.
      limit: keep only the first ``limit`` images (None: all).

    Returns:
      ``(images, labels)``: images float32 ``[N, 32, 32, 3]`` (NHWC, RGB, normalised with
      :data:`CIFAR100_MEAN` / :data:`CIFAR100_STD`), labels int32 ``[N]`` in ``[0, 100)``.

    Raises:
      DataError: unknown split or source, bad ``limit``, no data directory or no CIFAR-100 files
        in it (the message names the files expected and where), or a malformed file (wrong
        shapes or dtypes, a label outside ``[0, 100)``, a pickle that is not CIFAR-100's).

    Example::

        x, y = load_cifar100_split("DATA", split="test", limit=500)   # DATA/cifar-100-python/test
        x.shape, x.dtype, y.dtype, int(y.max()) < 100   # ((500, 32, 32, 3), float32, int32, True)
    """
    if split not in CIFAR100_SPLITS:
        raise DataError(f"unknown CIFAR-100 split {split!r}: choose one of {CIFAR100_SPLITS}")
    if source not in CIFAR100_SOURCES:
        raise DataError(f"unknown CIFAR-100 data source {source!r}: choose one of {CIFAR100_SOURCES}")
    limit = _check_limit(limit)
    layouts = list(_LAYOUTS.values()) if source == "auto" else [_LAYOUTS[source]]
    if data_dir is None:
        raise _missing(None, layouts, "CIFAR-100 needs a data directory (--data-dir DIR)")
    root = Path(os.path.expanduser(os.fspath(data_dir)))
    if not root.is_dir():
        raise _missing(root, layouts, f"data directory {root} does not exist or is not a folder")
    found = [(lay, path) for lay in layouts if (path := _find(root, lay, split)) is not None]
    if not found:
        raise _missing(root, layouts, f"no CIFAR-100 {split} set in {root}")
    layout, path = found[0]
    x, y = layout.read(path)
    n = x.shape[0] if limit is None else min(limit, x.shape[0])
    return normalize_images(x[:n], CIFAR100_MEAN, CIFAR100_STD), y[:n].astype(np.int32)
