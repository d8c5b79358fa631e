"""CIFAR-10 as users hold it: the binary distribution, and tensorflow-datasets for real.

The binary test writes a small ``cifar-10-batches-bin/`` in the authors' record format (one
label byte, then the red, green and blue 32x32 planes). The tfds test prepares a small
``cifar10`` with tensorflow-datasets' own writing API (a builder with cifar10's name, version
and features, array_record files, examples given as PIL images, which tfds encodes without
TensorFlow) and reads it back through ``--data-source tfds``; it is skipped where the
optional ``tfds`` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from nasi_jax import data
from nasi_jax.data import DataError

N_PER_BATCH, N_TEST = 4, 6  # 5 training batches of 4 records: 20 training images


def _normalised(x_uint8):
    mean = np.array([125.3, 123.0, 113.9]) / 255
    std = np.array([63.0, 62.1, 66.7]) / 255
    return ((x_uint8.astype(np.float64) / 255 - mean) / std).astype(np.float32)


def _records(x, y) -> bytes:
    planes = x.transpose(0, 3, 1, 2).reshape(len(y), -1)  # R, G, B planes, row-major
    return np.concatenate([np.asarray(y, np.uint8)[:, None], planes], axis=1).tobytes()


def _split(path: Path, train, valid):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": ["int", [str(i) for i in train]],
                                "valid": ["int", [str(i) for i in valid]]}))


@pytest.fixture()
def binary_root(tmp_path):
    rng = np.random.default_rng(0)
    n = 5 * N_PER_BATCH
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    x_test = rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, N_TEST)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for b in range(5):
        sl = slice(b * N_PER_BATCH, (b + 1) * N_PER_BATCH)
        (folder / f"data_batch_{b + 1}.bin").write_bytes(_records(x[sl], y[sl]))
    (folder / "test_batch.bin").write_bytes(_records(x_test, y_test))
    train, valid = [13, 2, 19, 7, 0, 11], [1, 5]  # unsorted: the split's order is kept
    _split(tmp_path / "nb201" / "cifar-split.txt", train, valid)
    return tmp_path, folder, x, y, x_test, y_test, train, valid


def test_binary_distribution_is_parsed_with_nb201_split(binary_root):
    root, folder, x, y, x_test, y_test, train, valid = binary_root
    for where, source in ((root, "binary"), (folder, "binary"), (root, "auto"), (folder, "auto")):
        xs, ys = data.load_cifar10_split(where, source=source)
        np.testing.assert_array_equal(ys, y[train])
        np.testing.assert_allclose(xs, _normalised(x[train]), rtol=1e-6, atol=1e-6)
    xs, ys = data.load_cifar10_split(root, split="valid", source="binary")
    np.testing.assert_array_equal(ys, y[valid])
    xs, ys = data.load_cifar10_split(root, split="test", source="binary", limit=4)
    np.testing.assert_array_equal(ys, y_test[:4])
    np.testing.assert_allclose(xs, _normalised(x_test[:4]), rtol=1e-6, atol=1e-6)
    images, labels = data.load_data_for_mode("real", folder)  # what `nasi search --data real` reads
    np.testing.assert_array_equal(np.asarray(labels), y[train])


def test_binary_distribution_errors(binary_root):
    root, folder, *_ = binary_root
    (folder / "data_batch_3.bin").write_bytes(b"\x00" * 100)  # not whole 3073-byte records
    with pytest.raises(DataError, match=r"malformed .*data_batch_3.bin.*3073-byte records"):
        data.load_cifar10_split(root, source="binary")
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match=r"data_batch_3.bin is missing"):
        data.load_cifar10_split(root, source="binary")
    bad = bytearray(_records(np.zeros((1, 32, 32, 3), np.uint8), [0]))
    bad[0] = 12  # label 12
    (folder / "test_batch.bin").write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        data.load_cifar10_split(root, split="test", source="binary")
    with pytest.raises(DataError, match="no CIFAR-10 binary distribution"):
        data.load_cifar10_split(root / "nb201", source="binary")


_HAS_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None


@pytest.mark.skipif(not _HAS_TFDS, reason="tensorflow-datasets (the optional 'tfds' extra: "
                    "pip install 'nasi-jax[tfds]') is not installed")
def test_real_tfds_prepared_on_disk(tmp_path):
    import PIL.Image
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(3)
    n_train, n_test = 24, 5
    x = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n_train)
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test)

    class Cifar10Like(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """cifar10's name, version, features and ids (``train_00012``), written by tfds."""

        name = "cifar10"
        VERSION = tfds.core.Version("3.0.2")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(), "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples("train_", x, y),
                    "test": self._generate_examples("test_", x_test, y_test)}

        def _generate_examples(self, prefix, images, labels):
            for i in range(len(labels)):  # keys as tfds' cifar10 uses them: the original index
                yield i, {"id": f"{prefix}{i:05d}", "image": PIL.Image.fromarray(images[i]),
                          "label": int(labels[i])}

    Cifar10Like(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    stored = tfds.data_source("cifar10", split="train", data_dir=str(tmp_path), download=False)
    order = [int(stored[i]["id"].rsplit(b"_", 1)[1]) for i in range(n_train)]  # ids are bytes
    assert sorted(order) == list(range(n_train))
    assert order != list(range(n_train))  # tfds shuffles on disk: position is not the index

    train, valid = [20, 3, 11, 0, 17, 8], [1, 2]
    _split(tmp_path / "nb201" / "cifar-split.txt", train, valid)
    xs, ys = data.load_cifar10_split(tmp_path, source="tfds")
    np.testing.assert_array_equal(ys, y[train])
    np.testing.assert_allclose(xs, _normalised(x[train]), rtol=1e-6, atol=1e-6)  # PNG: lossless
    xs, ys = data.load_cifar10_split(tmp_path, source="tfds", split="test", limit=3)
    np.testing.assert_array_equal(ys, y_test[:3])
    np.testing.assert_allclose(xs, _normalised(x_test[:3]), rtol=1e-6, atol=1e-6)
    # auto: no npz, no binary folder, tfds installed -> tfds
    _, ys = data.load_cifar10_split(tmp_path, split="valid")
    np.testing.assert_array_equal(ys, y[valid])
