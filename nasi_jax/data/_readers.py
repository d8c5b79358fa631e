"""Readers of the three CIFAR-10 formats: the project's npz, the binary distribution, tfds (private)."""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nasi_jax.data._files import (CIFAR10_DIRNAME, IMAGE_SHAPE, NUM_CLASSES, _TEST_FORMAT,
                                  _TFDS_HINT, _TRAIN_FORMAT, DataError, _check_index_range)

def _open_npz(path: Path, required: tuple[str, ...], fmt: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in required if k not in npz.files]
            if missing:
                raise DataError(
                    f"malformed {path}: missing array(s) {missing} (found {sorted(npz.files)}); "
                    f"expected {fmt}"
                )
            return {k: np.asarray(npz[k]) for k in required}
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, OSError, ValueError (pickled arrays), EOFError...
        raise DataError(f"cannot read {path} as an .npz archive ({type(e).__name__}: {e}); expected {fmt}") from e


def _check_labels(y: np.ndarray, path: Any, num_classes: int = NUM_CLASSES) -> None:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"malformed {path}: `y` must be integer [N], got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"malformed {path}: labels must lie in [0, {num_classes}), found {y.min()}..{y.max()}")


def _load_train_npz(path: Path, indices: np.ndarray, split_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode the JPEGs at ``indices``. Returns uint8 [M, 32, 32, 3] and the labels [M]."""
    arrays = _open_npz(path, ("jpeg", "offsets", "y"), _TRAIN_FORMAT)
    buf, offsets, y = arrays["jpeg"], arrays["offsets"], arrays["y"]
    if buf.ndim != 1 or buf.dtype != np.uint8:
        raise DataError(
            f"malformed {path}: `jpeg` must be uint8 [bytes], got {buf.dtype} {buf.shape}; "
            f"expected {_TRAIN_FORMAT}"
        )
    if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise DataError(
            f"malformed {path}: `offsets` must be integer [N+1], got {offsets.dtype} {offsets.shape}"
        )
    _check_labels(y, path)
    if offsets.shape[0] != y.shape[0] + 1:
        raise DataError(
            f"malformed {path}: `offsets` has {offsets.shape[0]} entries but there are {y.shape[0]} "
            f"labels (needs N+1 = {y.shape[0] + 1}); expected {_TRAIN_FORMAT}"
        )
    if offsets[0] < 0 or offsets[-1] > buf.shape[0] or np.any(np.diff(offsets) <= 0):
        raise DataError(
            f"malformed {path}: `offsets` must increase strictly from >= 0 to at most len(jpeg) = "
            f"{buf.shape[0]}; expected {_TRAIN_FORMAT}"
        )
    _check_index_range(indices, y.shape[0], str(path), split_path)

    out = np.empty((indices.shape[0], *IMAGE_SHAPE), dtype=np.uint8)
    for j, i in enumerate(indices.tolist()):
        data = buf[offsets[i] : offsets[i + 1]].tobytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL.UnidentifiedImageError, OSError, ...
            raise DataError(
                f"malformed {path}: image {i} (bytes {offsets[i]}..{offsets[i + 1]}) is not a "
                f"readable JPEG ({type(e).__name__}: {e}); the file may be corrupt, replace it"
            ) from e
        if arr.shape != IMAGE_SHAPE:
            raise DataError(f"malformed {path}: image {i} has shape {arr.shape}, expected {IMAGE_SHAPE}")
        out[j] = arr
    return out, y[indices]


def _load_test_npz(path: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    arrays = _open_npz(path, ("x", "y"), _TEST_FORMAT)
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"malformed {path}: `x` must be uint8 [N, 32, 32, 3], got {x.dtype} {x.shape}")
    _check_labels(y, path)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"malformed {path}: {x.shape[0]} images but {y.shape[0]} labels")
    n = x.shape[0] if limit is None else min(limit, x.shape[0])
    return x[:n], y[:n]


def _import_tfds():
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as e:
        raise DataError(
            f"--data-source tfds needs tensorflow-datasets, which is not installed ({e}). Either "
            f"{_TFDS_HINT}, or use the local format: pass --data-dir DIR with "
            f"DIR/{CIFAR10_DIRNAME}/{_TRAIN_FORMAT}"
        ) from e


def _load_tfds(
    root: Path | None, split: str, indices: np.ndarray | None, limit: int | None, split_path: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """Read tfds' prepared ``cifar10`` in CIFAR-10's original order.

    tfds stores the examples shuffled (by a hash of their key), so position ``i`` of its data
    source is not image ``i`` of the original training set, which NB201's split indexes. Each
    example carries ``id`` (``train_01234``: the original index), so every example is read
    once and put back in the original order.
    """
    tfds = _import_tfds()
    tfds_split = "test" if split == "test" else "train"
    where = f"tfds data_dir {root}" if root is not None else "tensorflow-datasets' default data dir"
    try:
        ds = tfds.data_source(
            "cifar10", split=tfds_split, data_dir=None if root is None else str(root), download=False
        )
        n = len(ds)
    except Exception as e:  # DatasetNotFoundError, AssertionError, FileNotFoundError, ...
        raise DataError(
            f"tensorflow-datasets has no prepared cifar10 ({tfds_split} split) in {where} "
            f"({type(e).__name__}: {e}). Nothing is downloaded here: {_TFDS_HINT}; or use the "
            f"local format: DIR/{CIFAR10_DIRNAME}/{_TRAIN_FORMAT}"
        ) from e
    x_all = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    y_all = np.empty((n,), dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    for pos in range(n):
        try:
            example = ds[pos]
            img = np.asarray(example["image"])
            label = int(example["label"])
            ident = str(example["id"].decode() if isinstance(example["id"], bytes) else example["id"])
        except KeyError as e:
            raise DataError(f"cifar10 example {pos} from {where} has no {e} field; tfds' cifar10 "
                            "(version 3.0.2) has image, label and id (the original index)") from e
        except Exception as e:
            raise DataError(f"cannot read example {pos} of cifar10 from {where} ({type(e).__name__}: {e})") from e
        try:
            i = int(ident.rsplit("_", 1)[-1])
        except ValueError:
            raise DataError(f"cifar10 example {pos} from {where} has id {ident!r}, not '<split>_<index>'; "
                            "the original CIFAR-10 order cannot be restored") from None
        if not 0 <= i < n or seen[i]:
            raise DataError(f"cifar10 from {where}: id {ident!r} is out of range or repeated ({n} examples)")
        if img.shape != IMAGE_SHAPE:
            raise DataError(f"cifar10 example {ident} from {where} has shape {img.shape}, expected {IMAGE_SHAPE}")
        seen[i] = True
        x_all[i], y_all[i] = img, label
    if indices is None:  # test split: the first `limit` examples
        indices = np.arange(n if limit is None else min(limit, n), dtype=np.int64)
    else:
        _check_index_range(indices, n, where, split_path)
    x, y = x_all[indices], y_all[indices]
    _check_labels(y, where)
    return x, y


# The CIFAR-10 binary distribution (https://www.cs.toronto.edu/~kriz/cifar.html, "CIFAR-10
# binary version"): each record is 1 label byte then 3072 pixel bytes, the red, green and
# blue 32x32 planes in row-major order; 10 000 records per file.
BIN_DIRNAME = "cifar-10-batches-bin"
BIN_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
BIN_TEST_FILE = "test_batch.bin"
PIXEL_BYTES = 32 * 32 * 3
BIN_FORMAT = (f"{BIN_DIRNAME}/ holding {', '.join(BIN_TRAIN_FILES)} (the training set, in this order) "
              f"and {BIN_TEST_FILE}: records of 1 label byte + 3072 pixel bytes (R, G, B planes, 32x32)")


def find_binary_dir(root: Path | None) -> Path | None:
    """``root`` or ``root/cifar-10-batches-bin``, whichever holds a CIFAR-10 binary batch."""
    if root is None:
        return None
    for candidate in (root, root / BIN_DIRNAME):
        if (candidate / BIN_TRAIN_FILES[0]).is_file() or (candidate / BIN_TEST_FILE).is_file():
            return candidate
    return None


def planes_to_images(pixels: np.ndarray) -> np.ndarray:
    """CIFAR's pixel rows ``[N, 3072]`` (the red, green and blue 32x32 planes, each row-major) as
    images uint8 ``[N, 32, 32, 3]`` (NHWC), contiguous. E.g. ``pixels[i, 1024 + 32 * r + c]`` is
    the green value of pixel ``(r, c)`` of image ``i``, ``images[i, r, c, 1]``."""
    return np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_records(path: Path, *, label_bytes: int, label: int, num_classes: int,
                 fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """The records of a CIFAR binary file: each is ``label_bytes`` label bytes, of which byte
    ``label`` is kept, then :data:`PIXEL_BYTES` pixel bytes (:func:`planes_to_images`). CIFAR-10:
    ``label_bytes=1, label=0``; CIFAR-100: ``label_bytes=2`` (coarse, fine), ``label=1`` (fine).

    Returns images uint8 ``[N, 32, 32, 3]`` and labels int64 ``[N]`` in ``[0, num_classes)``;
    raises :class:`DataError` (naming ``fmt``) for a size that is not whole records or a label
    out of range.
    """
    record = label_bytes + PIXEL_BYTES
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DataError(f"malformed {path}: {raw.size} bytes is not a whole number of "
                        f"{record}-byte records; expected {fmt}")
    records = raw.reshape(-1, record)
    y = records[:, label].astype(np.int64)
    _check_labels(y, path, num_classes)
    return planes_to_images(records[:, label_bytes:]), y


def _read_binary_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"the CIFAR-10 binary file {path} is missing; expected {BIN_FORMAT}")
    return read_records(path, label_bytes=1, label=0, num_classes=NUM_CLASSES, fmt=BIN_FORMAT)


def load_binary(folder: Path, split: str, indices: np.ndarray | None, limit: int | None,
                split_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Parse the binary distribution directly (fixed-size records, no pickle)."""
    if split == "test":
        x, y = _read_binary_file(folder / BIN_TEST_FILE)
        n = x.shape[0] if limit is None else min(limit, x.shape[0])
        return x[:n], y[:n]
    parts = [_read_binary_file(folder / name) for name in BIN_TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    _check_index_range(indices, x.shape[0], str(folder), split_path)
    return x[indices], y[indices]
