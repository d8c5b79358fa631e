"""Mini-batches for scoring architectures at initialisation.

NASI scores a candidate network by the gradient norm of a mini-batch loss at
initialisation. The batch can be fully data-agnostic or come from real CIFAR-10.
There are three data modes (:data:`DATA_MODES`):

``"random"``
    i.i.d. N(0, 1) inputs with uniform random labels. This is the default and
    needs no files.
``"random-labels"``
    real CIFAR-10 images with uniform random labels.
``"real"``
    real CIFAR-10 images with their true labels.

The real images come from NAS-Bench-201's ``cifar10-valid`` split: the
25 000-image ``train`` half of the CIFAR-10 training set, normalised with
NB201's per-channel mean and std. They are read where they are stored, in one of
two formats:

* ``local``: a folder ``cifar10_jpeg/`` holding ``cifar10_train_jpeg.npz``
  (``jpeg`` uint8, all JPEG files concatenated; ``offsets`` int64 [N+1];
  ``y`` uint8 [N]) and, optionally, ``cifar10_test.npz`` (``x`` uint8
  [10000, 32, 32, 3]; ``y`` uint8 [10000]). The split file
  ``nb201/cifar-split.txt`` sits next to that folder.
* ``tfds``: a ``cifar10`` dataset that tensorflow-datasets has already prepared.
  It is opened with ``download=False``, so nothing is ever downloaded.

Example::

    import functools, jax
    from nasi_jax import data

    # Data-agnostic (no files needed):
    x, y = data.sample_batch(jax.random.key(0), 64, mode="random")
    # x: float32 [64, 32, 32, 3] ~ N(0, 1);  y: int32 [64] in [0, 10)

    # Real images (the folder holding cifar10_jpeg/ and nb201/cifar-split.txt):
    images, labels = data.load_data_for_mode("real", "/path/to/data")
    sample = jax.jit(functools.partial(data.sample_batch, mode="real"),
                     static_argnames="batch_size")
    x, y = sample(jax.random.key(1), batch_size=64, images=images, labels=labels)

Any problem with the files raises :class:`DataError`. Its message says what is
wrong and how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import operator
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATA_MODES",
    "DATA_SOURCES",
    "DataError",
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "SPLITS",
    "load_cifar10_split",
    "load_data_for_mode",
    "normalize_images",
    "sample_batch",
]

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

DATA_SOURCES = ("auto", "local", "tfds")
"""Values accepted for ``source`` in :func:`load_cifar10_split`."""

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


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------


def normalize_images(images_uint8: np.ndarray) -> np.ndarray:
    """Normalise uint8 RGB images with NB201's CIFAR-10 per-channel mean and std.

    Args:
      images_uint8: uint8 ``[..., 3]`` in [0, 255], channels last (e.g. ``[N, 32, 32, 3]``).

    Returns:
      float32 array of the same shape: ``(x / 255 - CIFAR10_MEAN) / CIFAR10_STD``.
    """
    x = np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)
    x -= np.asarray(CIFAR10_MEAN, dtype=np.float32)
    x /= np.asarray(CIFAR10_STD, dtype=np.float32)
    return x


# --------------------------------------------------------------------------------------
# Locating the files
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------


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


def _check_labels(y: np.ndarray, path: Any) -> None:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"malformed {path}: `y` must be integer [N], got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(f"malformed {path}: labels must lie in [0, {NUM_CLASSES}), found {y.min()}..{y.max()}")


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
    if indices is None:  # test split: the first `limit` examples
        indices = np.arange(n if limit is None else min(limit, n), dtype=np.int64)
    else:
        _check_index_range(indices, n, where, split_path)
    x = np.empty((indices.shape[0], *IMAGE_SHAPE), dtype=np.uint8)
    y = np.empty((indices.shape[0],), dtype=np.int64)
    for j, i in enumerate(indices.tolist()):
        try:
            example = ds[i]
            img = np.asarray(example["image"])
            label = int(example["label"])
        except Exception as e:
            raise DataError(f"cannot read example {i} of cifar10 from {where} ({type(e).__name__}: {e})") from e
        if img.shape != IMAGE_SHAPE:
            raise DataError(f"cifar10 example {i} from {where} has shape {img.shape}, expected {IMAGE_SHAPE}")
        x[j] = img
        y[j] = label
    _check_labels(y, where)
    return x, y


# --------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------


def load_cifar10_split(
    data_dir: str | os.PathLike | None,
    *,
    split: str = "train",
    split_file: str | os.PathLike | None = None,
    source: str = "auto",
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one half of NB201's ``cifar10-valid`` split, or the CIFAR-10 test set.

    Args:
      data_dir: either the ``cifar10_jpeg`` folder or the folder above it (the shared data
        root, which also holds ``nb201/cifar-split.txt``). For ``source="tfds"`` it is
        passed to tensorflow-datasets as its ``data_dir``. It may be ``None`` only with
        ``source="tfds"``, in which case tfds uses its default directory and ``split_file``
        is needed for ``train``/``valid``.
      split: ``"train"`` (NB201's 25 000-image training half, the default), ``"valid"``
        (the other 25 000), or ``"test"`` (all 10 000 test images, in the original order;
        no split file is needed).
      split_file: path of NB201's ``cifar-split.txt``. By default the first of
        ``data_dir/cifar-split.txt``, ``data_dir/../nb201/cifar-split.txt`` and
        ``data_dir/nb201/cifar-split.txt`` that exists.
      source: ``"local"`` (the npz files described in the module docstring, read in place;
        only the JPEGs of the requested split are decoded), ``"tfds"`` (an already prepared
        tensorflow-datasets ``cifar10``, opened with ``download=False``), or ``"auto"``
        (local if the npz exists, else tfds if it is installed, else :class:`DataError`).
      limit: keep only the first ``limit`` examples of the split (in split-file order), for
        tests and quick runs. ``None`` keeps all of them.

    Returns:
      ``(images, labels)`` as NumPy arrays on the host: ``images`` float32
      ``[N, 32, 32, 3]`` (NHWC, RGB, normalised with :data:`CIFAR10_MEAN` /
      :data:`CIFAR10_STD`), ``labels`` int32 ``[N]`` in ``[0, 10)``. ``N`` is 25 000 for
      ``train``/``valid`` and 10 000 for ``test``, or ``min(N, limit)``.

    Raises:
      DataError: unknown split/source, bad ``limit``, missing directory, no CIFAR-10 in it,
        a malformed npz or split file, or tensorflow-datasets missing or not prepared.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {SPLITS}")
    if source not in DATA_SOURCES:
        raise DataError(f"unknown data source {source!r}: choose one of {DATA_SOURCES}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise DataError(f"limit must be a positive integer or None, got {limit!r}")
        limit = int(limit)

    root = _resolve_dir(data_dir, source)
    npz_name = TEST_NPZ if split == "test" else TRAIN_NPZ
    npz_path = _find_npz(root, npz_name)

    if source == "auto":
        if npz_path is not None:
            source = "local"
        elif _tfds_importable():
            source = "tfds"
        else:
            fmt = _TEST_FORMAT if split == "test" else _TRAIN_FORMAT
            raise DataError(
                f"no CIFAR-10 found in {root}: expected {root / npz_name} or "
                f"{root / CIFAR10_DIRNAME / npz_name} (format: {fmt}); or {_TFDS_HINT}"
            )
    if source == "local" and npz_path is None:
        fmt = _TEST_FORMAT if split == "test" else _TRAIN_FORMAT
        raise DataError(
            f"no CIFAR-10 found in {root}: expected {root / npz_name} or "
            f"{root / CIFAR10_DIRNAME / npz_name} (format: {fmt}); or {_TFDS_HINT}"
        )

    split_path = None
    indices = None
    if split != "test":
        split_path = _find_split_file(root, split_file)
        indices = _read_split_indices(split_path, split)
        if limit is not None:
            indices = indices[:limit]

    if source == "local":
        if split == "test":
            x, y = _load_test_npz(npz_path, limit)
        else:
            x, y = _load_train_npz(npz_path, indices, split_path)
    else:
        x, y = _load_tfds(root, split, indices, limit, split_path)
    return normalize_images(x), y.astype(np.int32)


def load_data_for_mode(
    mode: str,
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    split_file: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[jax.Array | None, jax.Array | None]:
    """Load what :func:`sample_batch` needs for ``mode``.

    Args:
      mode: one of :data:`DATA_MODES`.
      data_dir, source, split_file, limit: passed to :func:`load_cifar10_split`. They are
        ignored for ``mode="random"``.

    Returns:
      ``(None, None)`` for ``"random"`` (nothing to load; ``data_dir`` is ignored).
      Otherwise NB201's 25 000-image ``train`` half as JAX arrays placed on the default
      device once, ready to be sampled many times: images float32 ``[N, 32, 32, 3]``
      (normalised), labels int32 ``[N]``. ``"random-labels"`` gets the true labels as well;
      :func:`sample_batch` replaces them.

    Raises:
      DataError: unknown mode, ``data_dir`` missing for a mode that needs images, or any
        error of :func:`load_cifar10_split`.
    """
    if mode not in DATA_MODES:
        raise DataError(f"unknown data mode {mode!r}: choose one of {DATA_MODES}")
    if mode == "random":
        return None, None
    if data_dir is None and source != "tfds":
        raise DataError(
            f"data mode {mode!r} needs the real CIFAR-10 images: pass --data-dir DIR (or "
            f"--data-source tfds with a prepared tensorflow-datasets cifar10), where DIR "
            f"holds {CIFAR10_DIRNAME}/ and nb201/{SPLIT_FILE} (or is the {CIFAR10_DIRNAME} folder "
            "itself), or use --data random, which needs no files"
        )
    images, labels = load_cifar10_split(
        data_dir, split="train", split_file=split_file, source=source, limit=limit
    )
    return jnp.asarray(images), jnp.asarray(labels)


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


def _static_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError as e:
        raise ValueError(
            f"{name} must be a static Python int (mark it static, e.g. "
            f"jax.jit(..., static_argnames={name!r})), got {value!r}"
        ) from e
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def sample_batch(
    key: jax.Array,
    batch_size: int,
    *,
    mode: str,
    images: jax.Array | np.ndarray | None = None,
    labels: jax.Array | np.ndarray | None = None,
    num_classes: int = NUM_CLASSES,
    image_shape: tuple[int, ...] = IMAGE_SHAPE,
    dtype: Any = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Draw one mini-batch. This is a pure function of ``key``.

    It can be jitted with ``mode``, ``batch_size``, ``num_classes``, ``image_shape`` and
    ``dtype`` static (e.g. ``functools.partial(jax.jit, static_argnames=("mode",
    "batch_size"))``). It also works inside ``jax.lax.scan`` and under ``jax.vmap`` over
    keys. The data set itself (``images``, ``labels``) may be traced.

    Args:
      key: a PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
      batch_size: ``B``, a static positive int (at most ``N`` in the real-image modes).
      mode: one of :data:`DATA_MODES`.

        * ``"random"``: ``x ~ N(0, 1)`` of shape ``[B, *image_shape]`` and ``y`` uniform
          in ``[0, num_classes)``. ``images`` and ``labels`` are ignored.
        * ``"random-labels"``: ``B`` distinct images from ``images`` (drawn without
          replacement) and uniform random labels. ``labels`` is not needed.
        * ``"real"``: ``B`` distinct images and their labels.

        For one key, ``"random-labels"`` and ``"real"`` pick the same images.
      images: ``[N, H, W, C]`` (from :func:`load_data_for_mode`), needed by the real-image
        modes. Put them on the device once (``jnp.asarray``) before calling this often:
        a NumPy array is copied to the device on every call.
      labels: int ``[N]``, needed by ``"real"``.
      num_classes: number of classes for random labels.
      image_shape: ``(H, W, C)`` of the ``"random"`` inputs. The real-image modes use the
        shape of ``images``.
      dtype: dtype of ``x``.

    Returns:
      ``(x, y)``: ``x`` of ``dtype`` and shape ``[B, H, W, C]``; ``y`` int32 ``[B]``.

    Raises:
      ValueError: at trace time, for an unknown mode, ``batch_size <= 0``, ``batch_size``
        larger than the data set, a real-image mode without ``images`` (or ``"real"``
        without ``labels``), or mismatched ``images``/``labels``.
    """
    if mode not in DATA_MODES:
        raise ValueError(f"unknown data mode {mode!r}: choose one of {DATA_MODES}")
    batch_size = _static_positive_int(batch_size, "batch_size")
    num_classes = _static_positive_int(num_classes, "num_classes")

    if mode == "random":
        try:
            shape = (batch_size, *(operator.index(d) for d in image_shape))
        except TypeError as e:
            raise ValueError(
                f"image_shape must be a static tuple of ints (mark it static in jax.jit, or "
                f"bind it with functools.partial), got {image_shape!r}"
            ) from e
        key_x, key_y = jax.random.split(key)
        x = jax.random.normal(key_x, shape, dtype=dtype)
        y = jax.random.randint(key_y, (batch_size,), 0, num_classes, dtype=jnp.int32)
        return x, y

    if images is None:
        raise ValueError(
            f"data mode {mode!r} needs images: load them with "
            f"load_data_for_mode({mode!r}, data_dir) and pass images=..., or use mode='random'"
        )
    images = jnp.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    n = images.shape[0]
    if batch_size > n:
        raise ValueError(
            f"batch_size {batch_size} is larger than the data set ({n} images); sampling is "
            "without replacement, so use a smaller batch or load more images"
        )
    if mode == "real":
        if labels is None:
            raise ValueError("data mode 'real' needs labels: pass labels=... (int [N])")
        labels = jnp.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) to match images, got {labels.shape}")

    key_idx, key_y = jax.random.split(key)
    idx = jax.random.choice(key_idx, n, shape=(batch_size,), replace=False)
    x = jnp.take(images, idx, axis=0).astype(dtype)
    if mode == "real":
        y = jnp.take(labels, idx, axis=0).astype(jnp.int32)
    else:
        y = jax.random.randint(key_y, (batch_size,), 0, num_classes, dtype=jnp.int32)
    return x, y
