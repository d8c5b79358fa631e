"""The public loaders: one half of NB201's split, or what a data mode needs (private)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.data._files import (CIFAR10_DIRNAME, DATA_MODES, DATA_SOURCES, SPLIT_FILE, SPLITS,
                                  TEST_NPZ, TRAIN_NPZ, _BINARY_HINT, _TEST_FORMAT, _TFDS_HINT,
                                  _TRAIN_FORMAT, DataError, _check_limit, _find_npz, _find_split_file,
                                  _read_split_indices, _resolve_dir, _tfds_importable)
from nasi_jax.data._readers import (BIN_FORMAT, _load_test_npz, _load_tfds, _load_train_npz,
                                    find_binary_dir, load_binary)
from nasi_jax.data._sampling import normalize_images

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
      data_dir: either the ``cifar10_jpeg`` (or ``cifar-10-batches-bin``) folder or the folder
        above it (the shared data root, which also holds ``nb201/cifar-split.txt``). For
        ``source="tfds"`` it is
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
        only the JPEGs of the requested split are decoded), ``"binary"`` (CIFAR-10's binary
        distribution, ``cifar-10-batches-bin/``: ``data_batch_1..5.bin`` and
        ``test_batch.bin``, records of one label byte and 3072 pixel bytes, parsed directly),
        ``"tfds"`` (an already prepared tensorflow-datasets ``cifar10``, opened with
        ``download=False``, put back in CIFAR-10's original order by each example's ``id``),
        or ``"auto"`` (local if the npz exists, else binary if its folder exists, else tfds
        if it is installed, else :class:`DataError`).
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
    limit = _check_limit(limit)

    root = _resolve_dir(data_dir, source)
    npz_name = TEST_NPZ if split == "test" else TRAIN_NPZ
    npz_path = _find_npz(root, npz_name)
    bin_dir = find_binary_dir(root)

    def not_found():
        fmt = _TEST_FORMAT if split == "test" else _TRAIN_FORMAT
        return DataError(
            f"no CIFAR-10 found in {root}: expected {root / npz_name} or "
            f"{root / CIFAR10_DIRNAME / npz_name} (format: {fmt}), {_BINARY_HINT}; or {_TFDS_HINT}"
        )

    if source == "auto":
        if npz_path is not None:
            source = "local"
        elif bin_dir is not None:
            source = "binary"
        elif _tfds_importable():
            source = "tfds"
        else:
            raise not_found()
    if source == "local" and npz_path is None:
        raise not_found()
    if source == "binary" and bin_dir is None:
        raise DataError(f"no CIFAR-10 binary distribution in {root}: expected {BIN_FORMAT} in it "
                        f"or in {root}/cifar-10-batches-bin")

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
    elif source == "binary":
        x, y = load_binary(bin_dir, split, indices, limit, split_path)
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


