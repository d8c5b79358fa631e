"""Small real CIFAR-10 inputs for the exact-NTK experiments (analytic kernels cost
``O(N^2 (HW)^2)`` for pooled convolutions, so images are averaged down to ``size x size``).

Example:
    >>> import numpy as np
    >>> from nasi_jax.theory import inputs
    >>> x = np.arange(2 * 32 * 32 * 3, dtype=np.float32).reshape(2, 32, 32, 3)
    >>> inputs.downsample(x, 8).shape
    (2, 8, 8, 3)
"""

from __future__ import annotations

import numpy as np

from nasi_jax import data as data_lib

__all__ = ["cifar_subset", "downsample"]


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Average-pool ``[N, H, W, C]`` images to ``[N, size, size, C]`` (``H, W`` multiples of size)."""
    n, h, w, c = images.shape
    if h % size or w % size:
        raise ValueError(f"image size {h}x{w} is not a multiple of {size}")
    return images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))


def cifar_subset(data_dir, n: int, *, size: int = 8, offset: int = 0, split: str = "train",
                 norm: str = "unit", dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of NB201's CIFAR-10 ``split`` (from ``offset``), normalised per channel,
    averaged down to ``size x size``, each scaled to norm 1 (``norm="unit"``), to norm
    ``sqrt(d)`` (``norm="dim"``: coordinates of mean square 1, the usual NTK setting, where
    the kernel is of order 1) or left as they are (``norm="none"``); and their labels.

    Raises :class:`nasi_jax.data.DataError` with instructions when the data is absent.
    """
    if norm not in ("unit", "dim", "none"):
        raise ValueError(f"norm must be 'unit', 'dim' or 'none', got {norm!r}")
    if int(n) < 1:
        raise ValueError(f"n must be a positive number of images, got {n}")
    images, labels = data_lib.load_cifar10_split(data_dir, split=split, source="local",
                                                 limit=offset + n)
    x = downsample(np.asarray(images[offset:offset + n], np.float64), size)
    if norm != "none":
        x /= np.linalg.norm(x.reshape(n, -1), axis=1)[:, None, None, None]
    if norm == "dim":
        x *= np.sqrt(x[0].size)
    return x.astype(dtype), np.asarray(labels[offset:offset + n])
