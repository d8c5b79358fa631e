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
* ``binary``: CIFAR-10's binary distribution as its authors ship it, a folder
  ``cifar-10-batches-bin/`` (``data_batch_1.bin`` ... ``data_batch_5.bin``,
  ``test_batch.bin``; fixed-size records parsed directly, no pickle), with the split file
  beside it as above or given with ``split_file``.
* ``tfds``: a ``cifar10`` dataset that tensorflow-datasets has already prepared.
  It is opened with ``download=False``, so nothing is ever downloaded; its examples are
  put back in CIFAR-10's original order (tfds stores them shuffled) by their ``id``.

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

**CIFAR-100** (for training, ``nasi train --dataset cifar100``): :func:`load_cifar100_split`
reads the authors' python version (``cifar-100-python/``: pickles ``train`` and ``test``) or
binary version (``cifar-100-binary/``: ``train.bin`` and ``test.bin``) in place, with the 100
fine labels, normalised with NB201's CIFAR-100 mean and std (:data:`CIFAR100_MEAN`,
:data:`CIFAR100_STD`)::

    x, y = data.load_cifar100_split("/path/to/data", split="train")   # [50000, 32, 32, 3], [50000]

Any problem with the files raises :class:`DataError`. Its message says what is
wrong and how to fix it.
"""


from nasi_jax.data._files import (CIFAR10_MEAN, CIFAR10_STD, DATA_MODES, DATA_SOURCES,
                                  IMAGE_SHAPE, NUM_CLASSES, SPLITS, DataError)
from nasi_jax.data._cifar100 import (CIFAR100_MEAN, CIFAR100_NUM_CLASSES, CIFAR100_SOURCES,
                                     CIFAR100_SPLITS, CIFAR100_STD, load_cifar100_split)
from nasi_jax.data._load import load_cifar10_split, load_data_for_mode
from nasi_jax.data._sampling import normalize_images, sample_batch

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_NUM_CLASSES",
    "CIFAR100_SOURCES",
    "CIFAR100_SPLITS",
    "CIFAR100_STD",
    "DATA_MODES",
    "DATA_SOURCES",
    "DataError",
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "SPLITS",
    "load_cifar10_split",
    "load_cifar100_split",
    "load_data_for_mode",
    "normalize_images",
    "sample_batch",
]

