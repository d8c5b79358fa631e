"""Tests for nasi_jax.data: loading CIFAR-10 in place, and sampling mini-batches.

Most tests use a tiny fake data set, written in tmp_path in exactly the format of the shared
data (cifar10_jpeg/cifar10_train_jpeg.npz, cifar10_jpeg/cifar10_test.npz,
nb201/cifar-split.txt). The tests marked "real data" read the real CIFAR-10 in place from
$NASI_DATA_DIR (the shared data root, e.g. /work/shared/data). They are skipped when it is unset.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from nasi_jax import data
from nasi_jax.data import DataError

N_FAKE = 40
N_FAKE_TEST = 12


# --------------------------------------------------------------------------------------
# Fake data set in the real on-disk format
# --------------------------------------------------------------------------------------


def _encode_jpeg(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _decode_jpeg(b: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))


def _write_train_npz(path: Path, blobs: list[bytes], labels: np.ndarray, **override) -> None:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays = {
        "jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": offsets,
        "y": labels.astype(np.uint8),
        "classes": np.array([f"c{i}" for i in range(10)]),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


def _write_split(path: Path, train, valid) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"train": ["int", [str(i) for i in train]], "valid": ["int", [str(i) for i in valid]]})
    )


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """A fake shared-data root: root/cifar10_jpeg/{train,test} npz and root/nb201/cifar-split.txt."""
    root = tmp_path_factory.mktemp("fake_data")
    rng = np.random.default_rng(0)
    # Smooth-ish images (random blocks) so JPEG keeps them recognisable; decoding is compared
    # against a direct decode of the same bytes, so the lossy error does not matter.
    coarse = rng.integers(0, 256, size=(N_FAKE, 8, 8, 3), dtype=np.uint8)
    raw = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    blobs = [_encode_jpeg(img) for img in raw]
    decoded = np.stack([_decode_jpeg(b) for b in blobs])
    y = rng.integers(0, 10, size=N_FAKE).astype(np.uint8)
    perm = rng.permutation(N_FAKE)
    # Unsorted on purpose: the order of the split file must be kept.
    train, valid = perm[: N_FAKE // 2], perm[N_FAKE // 2 :]

    cdir = root / "cifar10_jpeg"
    cdir.mkdir()
    _write_train_npz(cdir / "cifar10_train_jpeg.npz", blobs, y)
    x_test = rng.integers(0, 256, size=(N_FAKE_TEST, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=N_FAKE_TEST).astype(np.uint8)
    np.savez(cdir / "cifar10_test.npz", x=x_test, y=y_test)
    _write_split(root / "nb201" / "cifar-split.txt", train, valid)
    return types.SimpleNamespace(
        root=root, cdir=cdir, blobs=blobs, decoded=decoded, y=y, train=train, valid=valid,
        x_test=x_test, y_test=y_test,
    )


@pytest.fixture
def no_tfds(monkeypatch):
    """Make `import tensorflow_datasets` fail, whether or not it is installed."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


def _expected(decoded_uint8: np.ndarray) -> np.ndarray:
    mean = np.array([125.3, 123.0, 113.9]) / 255
    std = np.array([63.0, 62.1, 66.7]) / 255
    return ((decoded_uint8.astype(np.float64) / 255 - mean) / std).astype(np.float32)


# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------


def test_constants():
    assert data.NUM_CLASSES == 10
    assert data.IMAGE_SHAPE == (32, 32, 3)
    assert data.DATA_MODES == ("random", "random-labels", "real")
    np.testing.assert_allclose(data.CIFAR10_MEAN, (125.3 / 255, 123.0 / 255, 113.9 / 255))
    np.testing.assert_allclose(data.CIFAR10_STD, (63.0 / 255, 62.1 / 255, 66.7 / 255))
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------------------
# Local loading
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["parent", "folder"])
def test_load_train_half_both_layouts(fake_root, layout):
    d = fake_root.root if layout == "parent" else fake_root.cdir
    x, y = data.load_cifar10_split(d)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    assert x.shape == (len(fake_root.train), 32, 32, 3)
    assert y.dtype == np.int32 and y.shape == (len(fake_root.train),)
    np.testing.assert_array_equal(y, fake_root.y[fake_root.train])
    np.testing.assert_allclose(x, _expected(fake_root.decoded[fake_root.train]), rtol=1e-5, atol=1e-5)


def test_load_valid_half_and_explicit_local_source(fake_root):
    x, y = data.load_cifar10_split(fake_root.root, split="valid", source="local")
    assert x.shape == (len(fake_root.valid), 32, 32, 3)
    np.testing.assert_array_equal(y, fake_root.y[fake_root.valid])
    np.testing.assert_allclose(x, _expected(fake_root.decoded[fake_root.valid]), rtol=1e-5, atol=1e-5)


def test_normalisation_matches_nb201_formula(fake_root):
    x, _ = data.load_cifar10_split(fake_root.root, limit=1)
    pixel = fake_root.decoded[fake_root.train[0], 3, 5]
    manual = [(pixel[c] / 255 - data.CIFAR10_MEAN[c]) / data.CIFAR10_STD[c] for c in range(3)]
    np.testing.assert_allclose(x[0, 3, 5], manual, rtol=1e-5)
    np.testing.assert_allclose(
        data.normalize_images(np.full((1, 1, 3), 255, np.uint8))[0, 0],
        [(1 - m) / s for m, s in zip(data.CIFAR10_MEAN, data.CIFAR10_STD)],
        rtol=1e-6,
    )


def test_limit_keeps_first_examples_in_split_order(fake_root):
    x_all, y_all = data.load_cifar10_split(fake_root.root)
    x, y = data.load_cifar10_split(fake_root.root, limit=7)
    assert x.shape == (7, 32, 32, 3)
    np.testing.assert_array_equal(x, x_all[:7])
    np.testing.assert_array_equal(y, y_all[:7])
    x_big, _ = data.load_cifar10_split(fake_root.root, limit=10_000)
    assert x_big.shape[0] == len(fake_root.train)


def test_split_file_search_order(fake_root, tmp_path):
    # A split file directly in data_dir wins over ../nb201/cifar-split.txt.
    cdir = tmp_path / "cifar10_jpeg"
    cdir.mkdir()
    (cdir / "cifar10_train_jpeg.npz").write_bytes((fake_root.cdir / "cifar10_train_jpeg.npz").read_bytes())
    _write_split(tmp_path / "nb201" / "cifar-split.txt", [0, 1], [2, 3])
    _write_split(cdir / "cifar-split.txt", [5, 6, 7], [8])
    _, y = data.load_cifar10_split(cdir)
    np.testing.assert_array_equal(y, fake_root.y[[5, 6, 7]])
    # ../nb201 is used from the folder layout, nb201/ from the parent layout.
    (cdir / "cifar-split.txt").unlink()
    np.testing.assert_array_equal(data.load_cifar10_split(cdir)[1], fake_root.y[[0, 1]])
    np.testing.assert_array_equal(data.load_cifar10_split(tmp_path)[1], fake_root.y[[0, 1]])
    # An explicit split_file wins over everything.
    custom = tmp_path / "elsewhere" / "my-split.json"
    _write_split(custom, [9, 3], [1])
    _, y = data.load_cifar10_split(tmp_path, split_file=custom)
    np.testing.assert_array_equal(y, fake_root.y[[9, 3]])


def test_plain_list_split_file_is_accepted(fake_root, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [4, "2"], "valid": [1]}))
    _, y = data.load_cifar10_split(fake_root.root, split_file=split)
    np.testing.assert_array_equal(y, fake_root.y[[4, 2]])


def test_load_test_split(fake_root):
    x, y = data.load_cifar10_split(fake_root.root, split="test")
    assert x.shape == (N_FAKE_TEST, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(y, fake_root.y_test)
    np.testing.assert_allclose(x, _expected(fake_root.x_test), rtol=1e-5, atol=1e-5)
    x5, y5 = data.load_cifar10_split(fake_root.cdir, split="test", limit=5)
    np.testing.assert_array_equal(y5, fake_root.y_test[:5])
    np.testing.assert_array_equal(x5, x[:5])


def test_test_split_needs_no_split_file(fake_root, tmp_path):
    (tmp_path / "cifar10_test.npz").write_bytes((fake_root.cdir / "cifar10_test.npz").read_bytes())
    _, y = data.load_cifar10_split(tmp_path, split="test")
    np.testing.assert_array_equal(y, fake_root.y_test)


# --------------------------------------------------------------------------------------
# Error paths
# --------------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*--data-dir"):
        data.load_cifar10_split(tmp_path / "nope")


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        data.load_cifar10_split(f)


def test_no_data_dir_for_local(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        data.load_cifar10_split(None)


@pytest.mark.parametrize("source", ["auto", "local"])
def test_empty_directory(tmp_path, no_tfds, source):
    with pytest.raises(DataError) as exc:
        data.load_cifar10_split(tmp_path, source=source)
    msg = str(exc.value)
    assert "no CIFAR-10 found" in msg and str(tmp_path) in msg
    assert "cifar10_train_jpeg.npz" in msg and "offsets" in msg  # says the expected format
    assert "tfds" in msg  # and the alternative


def test_empty_directory_test_split(tmp_path, no_tfds):
    with pytest.raises(DataError, match=r"no CIFAR-10 found.*cifar10_test\.npz"):
        data.load_cifar10_split(tmp_path, split="test")


def test_missing_split_file(fake_root, tmp_path):
    (tmp_path / "cifar10_train_jpeg.npz").write_bytes((fake_root.cdir / "cifar10_train_jpeg.npz").read_bytes())
    with pytest.raises(DataError, match=r"cifar-split\.txt was not found.*split_file"):
        data.load_cifar10_split(tmp_path)
    with pytest.raises(DataError, match=r"split file .* does not exist"):
        data.load_cifar10_split(tmp_path, split_file=tmp_path / "missing.txt")


def _with_train_npz(tmp_path: Path, fake_root, **override) -> Path:
    _write_train_npz(tmp_path / "cifar10_train_jpeg.npz", fake_root.blobs, fake_root.y, **override)
    _write_split(tmp_path / "cifar-split.txt", [0, 1, 2], [3])
    return tmp_path


@pytest.mark.parametrize("missing", ["jpeg", "offsets", "y"])
def test_npz_missing_key(fake_root, tmp_path, missing):
    d = _with_train_npz(tmp_path, fake_root, **{missing: None})
    with pytest.raises(DataError, match=rf"malformed .*missing array\(s\) \['{missing}'\].*expected"):
        data.load_cifar10_split(d)


def test_npz_offsets_length_mismatch(fake_root, tmp_path):
    offsets = np.zeros(N_FAKE, dtype=np.int64)  # N instead of N + 1
    offsets[1:] = np.cumsum([len(b) for b in fake_root.blobs])[:-1]
    d = _with_train_npz(tmp_path, fake_root, offsets=offsets)
    with pytest.raises(DataError, match=r"`offsets` has 40 entries but there are 40 labels"):
        data.load_cifar10_split(d)


def test_npz_offsets_not_increasing(fake_root, tmp_path):
    offsets = np.zeros(N_FAKE + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in fake_root.blobs])
    offsets[-1] += 10_000  # past the end of `jpeg`
    d = _with_train_npz(tmp_path, fake_root, offsets=offsets)
    with pytest.raises(DataError, match=r"`offsets` must increase"):
        data.load_cifar10_split(d)


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "cifar10_train_jpeg.npz").write_bytes(b"this is not an npz")
    _write_split(tmp_path / "cifar-split.txt", [0], [1])
    with pytest.raises(DataError, match=r"cannot read .* as an \.npz archive.*expected"):
        data.load_cifar10_split(tmp_path)


def test_npz_corrupt_jpeg(fake_root, tmp_path):
    blobs = list(fake_root.blobs)
    blobs[1] = b"\x00" * len(blobs[1])
    _write_train_npz(tmp_path / "cifar10_train_jpeg.npz", blobs, fake_root.y)
    _write_split(tmp_path / "cifar-split.txt", [0, 1], [2])
    with pytest.raises(DataError, match=r"image 1 .* not a readable JPEG"):
        data.load_cifar10_split(tmp_path)
    # Only the indices of the split are decoded: a split without image 1 loads.
    _write_split(tmp_path / "cifar-split.txt", [0, 2], [1])
    assert data.load_cifar10_split(tmp_path)[0].shape == (2, 32, 32, 3)


def test_npz_bad_labels(fake_root, tmp_path):
    d = _with_train_npz(tmp_path, fake_root, y=np.full(N_FAKE, 12, np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        data.load_cifar10_split(d)


def test_test_npz_malformed(tmp_path):
    np.savez(tmp_path / "cifar10_test.npz", x=np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"missing array\(s\) \['y'\]"):
        data.load_cifar10_split(tmp_path, split="test")
    np.savez(tmp_path / "cifar10_test.npz", x=np.zeros((3, 28, 28), np.uint8), y=np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"`x` must be uint8 \[N, 32, 32, 3\]"):
        data.load_cifar10_split(tmp_path, split="test")


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("{not json", r"cannot read it as JSON"),
        (json.dumps({"valid": ["int", ["1"]]}), r"no 'train' entry"),
        (json.dumps(["int", ["1"]]), r"no 'train' entry"),
        (json.dumps({"train": "0,1,2"}), r"not a list"),
        (json.dumps({"train": ["int", []]}), r"holds no indices"),
        (json.dumps({"train": ["int", ["0", "one"]]}), r"entry 1 is 'one', not an integer"),
        (json.dumps({"train": ["int", ["0", 1.5]]}), r"entry 1 is 1.5, not an integer"),
        (json.dumps({"train": ["int", ["0", "0"]]}), r"repeats some indices"),
        (json.dumps({"train": ["int", ["0", "40"]]}), r"index 40, outside the 40 training images"),
        (json.dumps({"train": ["int", ["-1"]]}), r"index -1, outside"),
    ],
)
def test_malformed_split_file(fake_root, tmp_path, content, pattern):
    split = tmp_path / "split.txt"
    split.write_text(content)
    with pytest.raises(DataError, match=pattern) as exc:
        data.load_cifar10_split(fake_root.root, split_file=split)
    assert "split" in str(exc.value)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(split="bogus"), r"unknown split 'bogus'"),
        (dict(source="s3"), r"unknown data source 's3'"),
        (dict(limit=0), r"limit must be a positive integer"),
        (dict(limit=2.5), r"limit must be a positive integer"),
    ],
)
def test_bad_arguments(fake_root, kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        data.load_cifar10_split(fake_root.root, **kwargs)


# --------------------------------------------------------------------------------------
# load_data_for_mode
# --------------------------------------------------------------------------------------


def test_load_data_for_mode_random_needs_nothing(tmp_path):
    assert data.load_data_for_mode("random") == (None, None)
    assert data.load_data_for_mode("random", tmp_path / "does-not-exist") == (None, None)


@pytest.mark.parametrize("mode", ["real", "random-labels"])
def test_load_data_for_mode_needs_data_dir(mode):
    with pytest.raises(DataError, match=rf"{mode}.*pass --data-dir DIR"):
        data.load_data_for_mode(mode)


@pytest.mark.parametrize("mode", ["real", "random-labels"])
def test_load_data_for_mode_loads_train_half(fake_root, mode):
    images, labels = data.load_data_for_mode(mode, fake_root.root, limit=8)
    assert isinstance(images, jax.Array) and isinstance(labels, jax.Array)
    assert images.shape == (8, 32, 32, 3) and images.dtype == jnp.float32
    assert labels.dtype == jnp.int32
    np.testing.assert_array_equal(labels, fake_root.y[fake_root.train[:8]])


def test_load_data_for_mode_unknown_mode():
    with pytest.raises(DataError, match=r"unknown data mode 'gaussian'.*random"):
        data.load_data_for_mode("gaussian")


# --------------------------------------------------------------------------------------
# sample_batch
# --------------------------------------------------------------------------------------

N_SYN = 50


@pytest.fixture(scope="module")
def syn():
    """Images whose every pixel holds their own index, and labels = index % 10."""
    idx = np.arange(N_SYN, dtype=np.float32)
    images = jnp.asarray(np.broadcast_to(idx[:, None, None, None], (N_SYN, 4, 4, 3)).copy())
    labels = jnp.asarray(np.arange(N_SYN) % 10, dtype=jnp.int32)
    return images, labels


def _data_kw(syn) -> dict:
    """The synthetic data set, and the same (small) image shape for mode="random"; small shapes
    keep XLA's CPU compile times (one per shape) short."""
    images, labels = syn
    return dict(images=images, labels=labels, image_shape=(4, 4, 3))


def _indices(x) -> np.ndarray:
    return np.asarray(x[:, 0, 0, 0]).astype(int)


def test_random_mode_shapes_and_stats():
    x, y = data.sample_batch(jax.random.key(0), 256, mode="random")
    assert x.shape == (256, 32, 32, 3) and x.dtype == jnp.float32
    assert y.shape == (256,) and y.dtype == jnp.int32
    assert int(y.min()) >= 0 and int(y.max()) < 10 and len(np.unique(y)) == 10
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    x, y = data.sample_batch(
        jax.random.PRNGKey(1), 5, mode="random", num_classes=3, image_shape=(8, 8, 1), dtype=jnp.bfloat16
    )
    assert x.shape == (5, 8, 8, 1) and x.dtype == jnp.bfloat16 and int(y.max()) < 3


@pytest.mark.parametrize("mode", data.DATA_MODES)
def test_determinism_and_key_dependence(syn, mode):
    kw = dict(mode=mode, **_data_kw(syn))
    x1, y1 = data.sample_batch(jax.random.key(3), 8, **kw)
    x2, y2 = data.sample_batch(jax.random.key(3), 8, **kw)
    x3, y3 = data.sample_batch(jax.random.key(4), 8, **kw)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert not np.array_equal(y1, y3)


@pytest.mark.parametrize("mode", ["real", "random-labels"])
def test_real_modes_draw_without_replacement(syn, mode):
    images, labels = syn
    for seed in range(5):
        x, y = data.sample_batch(jax.random.key(seed), 32, mode=mode, images=images, labels=labels)
        assert x.shape == (32, 4, 4, 3) and x.dtype == jnp.float32 and y.dtype == jnp.int32
        idx = _indices(x)
        assert len(np.unique(idx)) == 32
        assert idx.min() >= 0 and idx.max() < N_SYN
    # batch_size == N is a permutation of the whole data set
    x, _ = data.sample_batch(jax.random.key(9), N_SYN, mode=mode, images=images, labels=labels)
    assert sorted(_indices(x)) == list(range(N_SYN))


def test_real_mode_labels_follow_images(syn):
    images, labels = syn
    x, y = data.sample_batch(jax.random.key(0), 40, mode="real", images=images, labels=labels)
    np.testing.assert_array_equal(np.asarray(y), _indices(x) % 10)


def test_random_labels_changes_labels_not_images(syn):
    images, labels = syn
    key = jax.random.key(5)
    xr, yr = data.sample_batch(key, 40, mode="real", images=images, labels=labels)
    xl, yl = data.sample_batch(key, 40, mode="random-labels", images=images, labels=labels)
    np.testing.assert_array_equal(xr, xl)  # same images for the same key
    assert not np.array_equal(yr, yl)
    assert int(yl.min()) >= 0 and int(yl.max()) < 10
    # Labels are not needed in random-labels mode; images from NumPy work too.
    xn, yn = data.sample_batch(key, 40, mode="random-labels", images=np.asarray(images))
    np.testing.assert_array_equal(xn, xl)
    np.testing.assert_array_equal(yn, yl)


def test_dtype_cast_real(syn):
    images, labels = syn
    x, _ = data.sample_batch(jax.random.key(0), 4, mode="real", images=images, labels=labels, dtype=jnp.bfloat16)
    assert x.dtype == jnp.bfloat16


@pytest.mark.parametrize("mode", data.DATA_MODES)
def test_works_under_jit(syn, mode):
    # image_shape is a shape, so it must be static too: bind it in a wrapper (jax.jit traces
    # the arguments bound by functools.partial).
    def sample_small(key, batch_size, *, mode, images, labels):
        return data.sample_batch(key, batch_size, mode=mode, images=images, labels=labels, image_shape=(4, 4, 3))

    sample = functools.partial(jax.jit, static_argnames=("mode", "batch_size"))(sample_small)
    key = jax.random.key(11)
    images, labels = syn
    xj, yj = sample(key, 8, mode=mode, images=images, labels=labels)
    xe, ye = data.sample_batch(key, 8, mode=mode, **_data_kw(syn))
    np.testing.assert_array_equal(xj, xe)
    np.testing.assert_array_equal(yj, ye)


@pytest.mark.parametrize("mode", data.DATA_MODES)
def test_works_under_scan(syn, mode):

    def step(key, _):
        key, sub = jax.random.split(key)
        x, y = data.sample_batch(sub, 8, mode=mode, **_data_kw(syn))
        return key, (x.sum(), y)

    _, (sums, ys) = jax.jit(lambda k: jax.lax.scan(step, k, None, length=6))(jax.random.key(0))
    assert sums.shape == (6,) and ys.shape == (6, 8) and ys.dtype == jnp.int32
    assert len(np.unique(np.asarray(sums))) > 1  # a new batch each step


@pytest.mark.parametrize("mode", data.DATA_MODES)
def test_works_under_vmap(syn, mode):
    keys = jax.random.split(jax.random.key(2), 4)
    fn = functools.partial(data.sample_batch, batch_size=8, mode=mode, **_data_kw(syn))
    xs, ys = jax.jit(jax.vmap(fn))(keys)
    assert xs.shape == (4, 8, 4, 4, 3) and ys.shape == (4, 8)
    for i in range(4):  # vmapped == one (eager) call per key
        x, y = fn(keys[i])
        np.testing.assert_allclose(xs[i], x, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ys[i], y)
    if mode != "random":
        for i in range(4):
            assert len(np.unique(_indices(xs[i]))) == 8
    assert not np.array_equal(xs[0], xs[1])


def test_sample_batch_with_images_passed_to_jit_as_traced_args(syn):
    # The data set itself may be a traced argument; only mode/batch_size are static.
    images, labels = syn

    @functools.partial(jax.jit, static_argnames=("batch_size",))
    def f(key, images, labels, batch_size):
        return data.sample_batch(key, batch_size, mode="real", images=images, labels=labels)

    x, y = f(jax.random.key(0), images, labels, 10)
    np.testing.assert_array_equal(np.asarray(y), _indices(x) % 10)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(batch_size=4, mode="gaussian"), r"unknown data mode 'gaussian'"),
        (dict(batch_size=0, mode="random"), r"batch_size must be positive"),
        (dict(batch_size=-3, mode="real"), r"batch_size must be positive"),
        (dict(batch_size=True, mode="random"), r"batch_size must be a positive int"),
        (dict(batch_size=2.0, mode="random"), r"batch_size must be a static Python int"),
        (dict(batch_size=4, mode="random", num_classes=0), r"num_classes must be positive"),
        (dict(batch_size=4, mode="real"), r"needs images.*load_data_for_mode"),
        (dict(batch_size=4, mode="random-labels"), r"needs images"),
        (dict(batch_size=N_SYN + 1, mode="real", use_data=True), r"larger than the data set \(50 images\)"),
        (dict(batch_size=4, mode="real", use_data=True, no_labels=True), r"'real' needs labels"),
        (dict(batch_size=4, mode="real", use_data=True, bad_labels=True), r"labels must have shape \(50,\)"),
    ],
)
def test_sample_batch_errors(syn, kwargs, pattern):
    images, labels = syn
    kwargs = dict(kwargs)
    if kwargs.pop("use_data", False):
        kwargs["images"] = images
        kwargs["labels"] = labels
    if kwargs.pop("no_labels", False):
        kwargs["labels"] = None
    if kwargs.pop("bad_labels", False):
        kwargs["labels"] = labels[:10]
    with pytest.raises(ValueError, match=pattern):
        data.sample_batch(jax.random.key(0), **kwargs)


def test_sample_batch_errors_raise_at_trace_time(syn):
    images, labels = syn
    sample = functools.partial(jax.jit, static_argnames=("mode", "batch_size"))(data.sample_batch)
    with pytest.raises(ValueError, match="larger than the data set"):
        sample(jax.random.key(0), N_SYN + 1, mode="real", images=images, labels=labels)
    with pytest.raises(ValueError, match="unknown data mode"):
        sample(jax.random.key(0), 4, mode="nope")
    # A traced (non-static) batch_size gets a message saying to make it static.
    with pytest.raises(ValueError, match="static"):
        jax.jit(functools.partial(data.sample_batch, mode="random"))(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="image_shape must be a static tuple"):
        sample(jax.random.key(0), 4, mode="random", image_shape=(4, 4, 3))


# --------------------------------------------------------------------------------------
# tensorflow-datasets source
# --------------------------------------------------------------------------------------


def test_tfds_not_installed(fake_root, no_tfds):
    with pytest.raises(DataError) as exc:
        data.load_cifar10_split(fake_root.root, source="tfds")
    msg = str(exc.value)
    assert "tensorflow-datasets" in msg and "not installed" in msg
    assert "download_and_prepare" in msg and "--data-source tfds" in msg


def _fake_tfds(monkeypatch, train_images, train_labels, test_images=None, test_labels=None, fail=None):
    calls = []
    module = types.ModuleType("tensorflow_datasets")

    def data_source(name, *, split, data_dir=None, download=True, **kwargs):
        calls.append(dict(name=name, split=split, data_dir=data_dir, download=download, **kwargs))
        if fail is not None:
            raise fail
        x, y = (train_images, train_labels) if split == "train" else (test_images, test_labels)
        return [{"image": x[i], "label": int(y[i]), "id": f"{split}_{i}"} for i in range(len(y))]

    module.data_source = data_source
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


@pytest.fixture(scope="module")
def tfds_arrays():
    rng = np.random.default_rng(1)
    return types.SimpleNamespace(
        x=rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8),
        y=rng.integers(0, 10, size=30),
        x_test=rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, size=6),
    )


def test_tfds_source_applies_split_without_download(monkeypatch, tmp_path, tfds_arrays):
    t = tfds_arrays
    calls = _fake_tfds(monkeypatch, t.x, t.y, t.x_test, t.y_test)
    train, valid = [17, 3, 29, 0, 8], [1, 2]
    _write_split(tmp_path / "nb201" / "cifar-split.txt", train, valid)
    x, y = data.load_cifar10_split(tmp_path, source="tfds")
    assert calls == [dict(name="cifar10", split="train", data_dir=str(tmp_path), download=False)]
    assert x.shape == (5, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, t.y[train])
    np.testing.assert_allclose(x, _expected(t.x[train]), rtol=1e-5, atol=1e-5)

    x, y = data.load_cifar10_split(tmp_path, source="tfds", split="valid", limit=1)
    np.testing.assert_array_equal(y, t.y[[1]])

    x, y = data.load_cifar10_split(tmp_path, source="tfds", split="test", limit=4)
    assert calls[-1]["split"] == "test" and calls[-1]["download"] is False
    np.testing.assert_array_equal(y, t.y_test[:4])
    np.testing.assert_allclose(x, _expected(t.x_test[:4]), rtol=1e-5, atol=1e-5)


def test_tfds_auto_fallback_and_default_dir(monkeypatch, tmp_path, tfds_arrays):
    t = tfds_arrays
    calls = _fake_tfds(monkeypatch, t.x, t.y)
    split = tmp_path / "split.txt"
    _write_split(split, [4, 5], [6])
    # auto: no npz in the directory, tfds importable -> tfds.
    _, y = data.load_cifar10_split(tmp_path, split_file=split)
    np.testing.assert_array_equal(y, t.y[[4, 5]])
    assert calls[-1]["download"] is False
    # data_dir=None is allowed for tfds (its default directory) given a split file.
    _, y = data.load_cifar10_split(None, source="tfds", split_file=split)
    assert calls[-1]["data_dir"] is None
    np.testing.assert_array_equal(y, t.y[[4, 5]])


def test_tfds_not_prepared(monkeypatch, tmp_path, tfds_arrays):
    _fake_tfds(monkeypatch, tfds_arrays.x, tfds_arrays.y, fail=FileNotFoundError("cifar10/3.0.2 not found"))
    _write_split(tmp_path / "cifar-split.txt", [0], [1])
    with pytest.raises(DataError, match=r"no prepared cifar10.*Nothing is downloaded.*download_and_prepare"):
        data.load_cifar10_split(tmp_path, source="tfds")


def test_tfds_split_index_out_of_range(monkeypatch, tmp_path, tfds_arrays):
    _fake_tfds(monkeypatch, tfds_arrays.x, tfds_arrays.y)
    _write_split(tmp_path / "cifar-split.txt", [0, 30], [1])
    with pytest.raises(DataError, match=r"index 30, outside the 30 training images"):
        data.load_cifar10_split(tmp_path, source="tfds")


# --------------------------------------------------------------------------------------
# Real data, read in place from $NASI_DATA_DIR
# --------------------------------------------------------------------------------------

_REAL_ROOT = os.environ.get("NASI_DATA_DIR")
needs_real_data = pytest.mark.skipif(
    not _REAL_ROOT,
    reason="real CIFAR-10 not available: set NASI_DATA_DIR to the shared data root "
    "(the folder holding cifar10_jpeg/ and nb201/cifar-split.txt) to run this test",
)


def _real_root() -> Path:
    root = Path(_REAL_ROOT)
    if not (root / "cifar10_jpeg" / "cifar10_train_jpeg.npz").is_file():
        pytest.skip(f"NASI_DATA_DIR={root} has no cifar10_jpeg/cifar10_train_jpeg.npz")
    return root


@needs_real_data
def test_real_train_half_small():
    root = _real_root()
    x, y = data.load_cifar10_split(root / "cifar10_jpeg", limit=256)
    assert x.shape == (256, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (256,) and y.dtype == np.int32
    assert y.min() >= 0 and y.max() <= 9 and len(np.unique(y)) == 10
    channel_means = x.mean(axis=(0, 1, 2))
    channel_stds = x.std(axis=(0, 1, 2))
    assert np.all(np.abs(channel_means) < 0.15), channel_means
    assert np.all(np.abs(channel_stds - 1) < 0.2), channel_stds
    # Same data through load_data_for_mode, from the parent layout.
    images, labels = data.load_data_for_mode("real", root, limit=256)
    np.testing.assert_array_equal(np.asarray(images), x)
    np.testing.assert_array_equal(np.asarray(labels), y)


@needs_real_data
def test_real_test_split_small():
    root = _real_root()
    x, y = data.load_cifar10_split(root, split="test", limit=5)
    assert x.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(y, [3, 8, 8, 0, 6])  # first test labels, per the data README


@needs_real_data
def test_real_full_train_half(capsys):
    root = _real_root()
    split = json.loads((root / "nb201" / "cifar-split.txt").read_text())
    train_idx = np.array([int(s) for s in split["train"][1]])
    t0 = time.perf_counter()
    x, y = data.load_cifar10_split(root)
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[test_data] loaded the full NB201 train half ({len(y)} images) in {elapsed:.2f} s")
    assert len(train_idx) == 25_000
    assert x.shape == (len(train_idx), 32, 32, 3) and x.dtype == np.float32
    with np.load(root / "cifar10_jpeg" / "cifar10_train_jpeg.npz") as npz:
        y_all = npz["y"]
    np.testing.assert_array_equal(y, y_all[train_idx])
    assert np.all(np.abs(x.mean(axis=(0, 1, 2))) < 0.05)
