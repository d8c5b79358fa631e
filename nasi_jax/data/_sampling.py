"""Mini-batches: normalisation and :func:`sample_batch`, a pure function of its key (private)."""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.data._files import CIFAR10_MEAN, CIFAR10_STD, DATA_MODES, IMAGE_SHAPE, NUM_CLASSES

def normalize_images(images_uint8: np.ndarray, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> np.ndarray:
    """Normalise uint8 RGB images with a per-channel mean and std (default: NB201's CIFAR-10
    ones; CIFAR-100's are :data:`CIFAR100_MEAN` / :data:`CIFAR100_STD`).

    Args:
      images_uint8: uint8 ``[..., 3]`` in [0, 255], channels last (e.g. ``[N, 32, 32, 3]``).
      mean, std: three numbers each, on the [0, 1] scale.

    Returns:
      float32 array of the same shape: ``(x / 255 - mean) / std``.
    """
    x = np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return x


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
