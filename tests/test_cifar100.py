"""CIFAR-100 for ``nasi train --dataset cifar100``, on a tiny synthetic set in the authors' layouts.

No CIFAR-100 images are available offline here, so the fixture writes 40 training and 20 test
images of random pixels, with fine labels 0..99, as the authors ship them: the python version
(``cifar-100-python/train`` and ``test``, pickled dicts with ``b'data'`` uint8 [N, 3072] and
``b'fine_labels'``) and the binary version (``cifar-100-binary/train.bin`` and ``test.bin``,
records of a coarse label byte, a fine label byte and 3072 pixel bytes).
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from nasi_jax import cli, data, train
from nasi_jax.data import DataError
from nasi_jax.spaces import darts

N_TRAIN, N_TEST = 40, 20
MEAN = np.array([129.3, 124.1, 112.4]) / 255  # NB201's CIFAR-100 normalisation, written out again
STD = np.array([68.2, 65.4, 70.4]) / 255


def _raw(seed: int, n: int):
    """``n`` random images as CIFAR rows [n, 3072] (R, G, B planes), fine labels covering 0 and 99."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    fine = rng.integers(0, 100, n)
    fine[:2] = (0, 99)
    return rows, fine


def _write_pickle(path, rows, fine, changes=(), drop=()):
    """The authors' dict (bytes keys, as Python 2 pickles load), with ``changes`` and without ``drop``."""
    content = {b"filenames": [f"img_{i}.png".encode() for i in range(len(fine))], b"batch_label": b"synthetic",
               b"fine_labels": [int(f) for f in fine], b"coarse_labels": [int(f) // 5 for f in fine],
               b"data": rows}
    content.update(changes)
    for key in drop:
        del content[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(content, fh, protocol=2)  # the authors' pickles are Python 2's, protocol 2


def _write_binary(path, rows, fine):
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse = (np.asarray(fine) // 5).astype(np.uint8)
    path.write_bytes(np.concatenate([coarse[:, None], np.asarray(fine, np.uint8)[:, None], rows], 1).tobytes())


@pytest.fixture(scope="module")
def raw():
    return {"train": _raw(0, N_TRAIN), "test": _raw(1, N_TEST)}


@pytest.fixture(scope="module")
def root(raw, tmp_path_factory):
    """A folder holding cifar-100-python/ and cifar-100-binary/, the same images in both."""
    root = tmp_path_factory.mktemp("c100")
    for split, (rows, fine) in raw.items():
        _write_pickle(root / "cifar-100-python" / split, rows, fine)
        _write_binary(root / "cifar-100-binary" / f"{split}.bin", rows, fine)
    return root


def _expected(rows, fine):
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ((images / 255 - MEAN) / STD).astype(np.float32), fine.astype(np.int32)


# --------------------------------------------------------------------------- the loader

@pytest.mark.parametrize("source", ["auto", "python", "binary"])
def test_loader_reads_both_layouts(root, raw, source):
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x, y = data.load_cifar100_split(root, split=split, source=source)
        assert x.shape == (n, 32, 32, 3) and x.dtype == np.float32 and y.shape == (n,) and y.dtype == np.int32
        want_x, want_y = _expected(*raw[split])
        np.testing.assert_array_equal(y, want_y)  # the fine labels, 0..99
        np.testing.assert_allclose(x, want_x, rtol=0, atol=2e-6)
    # pixel (r, c) of channel k is byte 1024 k + 32 r + c of the row
    first = data.load_cifar100_split(root, split="train", source=source, limit=1)[0]
    assert first[0, 2, 5, 1] == pytest.approx((raw["train"][0][0, 1024 + 64 + 5] / 255 - MEAN[1]) / STD[1], abs=2e-6)
    folder = root / ("cifar-100-binary" if source == "binary" else "cifar-100-python")
    x3, y3 = data.load_cifar100_split(folder, split="test", source=source, limit=3)  # the layout's folder itself
    assert x3.shape == (3, 32, 32, 3) and list(y3) == list(raw["test"][1][:3])


def test_loader_errors(root, raw, tmp_path):
    rows, fine = raw["train"]
    with pytest.raises(DataError, match="cifar-100-python/ holding train and test.*cifar-100-binary/ holding "
                                        "train.bin and test.bin.*nothing is downloaded"):
        data.load_cifar100_split(tmp_path / "absent")
    with pytest.raises(DataError, match=r"no CIFAR-100 test set in .*: expected .*/cifar-100-python/ holding"):
        data.load_cifar100_split(tmp_path, split="test", source="python")
    with pytest.raises(DataError, match="needs a data directory"):
        data.load_cifar100_split(None)
    with pytest.raises(DataError, match="unknown CIFAR-100 data source 'tfds'"):
        data.load_cifar100_split(root, source="tfds")
    with pytest.raises(DataError, match="unknown CIFAR-100 split 'valid'"):
        data.load_cifar100_split(root, split="valid")

    bad = tmp_path / "bad" / "cifar-100-python" / "train"
    cases = [
        ({b"fine_labels": [100] + [int(f) for f in fine[1:]]}, (), r"labels must lie in \[0, 100\), found 1..100"),
        ({b"fine_labels": [-1] + [int(f) for f in fine[1:]]}, (), r"labels must lie in \[0, 100\)"),
        ({b"data": rows[:, :3071]}, (), r"b'data' must be uint8 \[N, 3072\], got uint8 \(40, 3071\)"),
        ({b"data": rows.astype(np.int16)}, (), r"b'data' must be uint8"),
        ({b"fine_labels": [int(f) for f in fine[:-1]]}, (), r"b'fine_labels' must be 40 integers"),
        ({}, (b"data",), r"no b'data' entry"),
    ]
    for changes, drop, match in cases:
        _write_pickle(bad, rows, fine, changes, drop)
        with pytest.raises(DataError, match=match):
            data.load_cifar100_split(bad.parent.parent)
    bad.write_bytes(pickle.dumps({b"data": os.system}, protocol=2))  # a pickle that names a function
    with pytest.raises(DataError, match=r"cannot read .* as a CIFAR-100 pickle \(UnpicklingError: it refers to "):
        data.load_cifar100_split(bad.parent.parent)

    binary = tmp_path / "badbin" / "cifar-100-binary" / "train.bin"
    _write_binary(binary, rows, np.where(np.arange(N_TRAIN) == 3, 117, fine))
    with pytest.raises(DataError, match=r"train.bin: labels must lie in \[0, 100\), found 0..117"):
        data.load_cifar100_split(binary.parent.parent)
    binary.write_bytes(binary.read_bytes()[:-1])
    with pytest.raises(DataError, match="not a whole number of 3074-byte records"):
        data.load_cifar100_split(binary.parent.parent)


# --------------------------------------------------------------------------- training

def test_config():
    c = train.TrainConfig.recipe("darts", dataset="cifar100")
    d = train.TrainConfig.recipe("darts")
    assert (c.num_classes, d.num_classes, d.dataset) == (100, 10, "cifar10")
    assert {f: getattr(c, f) for f in ("epochs", "batch_size", "lr", "cutout", "aux_weight")} == \
        {f: getattr(d, f) for f in ("epochs", "batch_size", "lr", "cutout", "aux_weight")}
    assert c.dataset_spec.pad_value[0] == pytest.approx(-129.3 / 68.2)
    assert train.TrainConfig.recipe("nb201", dataset="cifar100").num_classes == 100
    with pytest.raises(train.TrainError, match="CIFAR-100 trains on train_split \\('all',\\)"):
        train.TrainConfig.recipe("darts", dataset="cifar100", train_split="train")
    with pytest.raises(train.TrainError, match="exceeds the 50000 images"):
        train.TrainConfig.recipe("darts", dataset="cifar100", train_size=50001)
    with pytest.raises(train.TrainError, match="unknown dataset 'svhn'"):
        train.TrainConfig.recipe("darts", dataset="svhn")
    # a checkpoint written before the dataset field existed is a CIFAR-10 run
    assert train.recipes.stored_config({"epochs": 3}) == {"dataset": "cifar10", "epochs": 3}


def test_cli_train_cifar100(root, tmp_path, capsys):
    """One epoch of a tiny DARTS network (aux head included) on the synthetic set, from the CLI."""
    wd = tmp_path / "run"
    argv = ["train", "--genotype", "DARTS_V2", "--dataset", "cifar100", "--data-dir", str(root), "--workdir",
            str(wd), "--epochs", "1", "--channels", "4", "--layers", "3", "--batch-size", "16",
            "--train-size", "32", "--test-size", "20", "--eval-batch-size", "20", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "100 classes (cifar100)" in out and "final test acc" in out
    res = json.loads((wd / "result.json").read_text())
    assert res["num_classes"] == 100 and res["dataset"] == "cifar100" and res["config"]["dataset"] == "cifar100"
    assert res["params"] == darts.count_params(darts.DARTS_V2, channels=4, layers=3, num_classes=100)
    assert res["params_with_aux"] == darts.count_params(darts.DARTS_V2, channels=4, layers=3, num_classes=100,
                                                        auxiliary=True)
    assert res["data"]["n_train"] == 32 and res["data"]["n_test"] == 20 and res["steps"] == 2


@pytest.mark.parametrize("args, match", [
    (["--data-source", "tfds", "--data-dir", "."], "'tfds' is not a source of cifar100"),
    (["--data-source", "python"], "training needs the CIFAR-100 images: pass --data-dir DIR, the folder holding "
                                  "cifar-100-python/"),
    (["--data-dir", "{tmp}"], "no CIFAR-100 train set in"),
    (["--data-dir", "{root}", "--split-file", "x.txt"], "CIFAR-100 trains on all its training images"),
    (["--data-dir", "{root}", "--eval-split", "valid", "--train-split", "train"], "CIFAR-100 trains on"),
])
def test_cli_errors(root, tmp_path, capsys, args, match):
    args = [a.format(tmp=tmp_path, root=root) for a in args]
    argv = ["train", "--arch", "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
            "--dataset", "cifar100", "--workdir", str(tmp_path / "wd"), "--no-progress", *args]
    assert cli.main(argv) == 2
    assert match in capsys.readouterr().err
