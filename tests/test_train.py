"""Training from scratch (nasi_jax.train, ``nasi train``): tiny networks on a real CIFAR-10 subset.

The DARTS runs share one configuration (NetworkCIFAR C=4, 5 cells, 64 training and 32 test
images, batch 16: 4 steps per epoch, 2 epochs), so its programs compile once per session.
"""

import dataclasses
import json
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import data_path
from nasi_jax import cli, train
from nasi_jax.spaces import darts, nb201

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
TINY_DARTS = dict(channels=4, layers=5, epochs=2, batch_size=16, train_size=64, test_size=32, eval_batch_size=32)
TINY_NB201 = dict(channels=4, layers=1, epochs=2, batch_size=16, train_size=64, test_size=32, eval_batch_size=32)
EPOCH_KEYS = {"epoch", "step", "lr", "drop_path", "train_loss", "train_acc", "test_loss", "test_acc",
              "epoch_time_s", "wall_s"}
TIME_KEYS = {"epoch_time_s", "wall_s"}


@pytest.fixture(scope="module")
def data_root():
    return str(data_path("cifar10_jpeg").parent)


@pytest.fixture(scope="module")
def tiny_data(data_root):
    cfg = train.TrainConfig.recipe("darts", **TINY_DARTS)
    return train.load_data(cfg, data_root)


@pytest.fixture(scope="module")
def darts_cfg():
    return train.TrainConfig.recipe("darts", **TINY_DARTS)


@pytest.fixture(scope="module")
def reference(darts_cfg, tiny_data, tmp_path_factory):
    """The uninterrupted DARTS run."""
    workdir = tmp_path_factory.mktemp("reference")
    return train.train(darts_cfg, "DARTS_V2", workdir, seed=3, data=tiny_data, progress=False)


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


# --------------------------------------------------------------------------- config and architecture

def test_recipes():
    d = train.TrainConfig.recipe("darts")
    assert (d.space, d.channels, d.layers, d.epochs, d.batch_size, d.lr, d.lr_min, d.momentum, d.nesterov,
            d.weight_decay, d.grad_clip, d.aux_weight, d.drop_path, d.crop_padding, d.flip, d.cutout) == \
        ("darts", 36, 20, 600, 96, 0.025, 0.0, 0.9, False, 3e-4, 5.0, 0.4, 0.2, 4, True, 16)
    n = train.TrainConfig.recipe("nb201")
    assert (n.space, n.channels, n.layers, n.epochs, n.batch_size, n.lr, n.nesterov, n.weight_decay,
            n.grad_clip, n.aux_weight, n.drop_path, n.cutout) == \
        ("nb201", 16, 5, 200, 256, 0.1, True, 5e-4, 0.0, 0.0, 0.0, 0)
    mixed = train.TrainConfig.recipe("darts", space="nb201", epochs=3)
    assert (mixed.channels, mixed.layers, mixed.lr, mixed.cutout, mixed.aux_weight, mixed.drop_path,
            mixed.epochs) == (16, 5, 0.025, 16, 0.0, 0.0, 3)


def test_schedules():
    cfg = train.TrainConfig.recipe("darts", epochs=4)
    lrs = [float(train.learning_rate(cfg, t, steps_per_epoch=10)) for t in (0, 9, 10, 20, 39)]
    assert lrs[0] == lrs[1] == pytest.approx(0.025)
    assert lrs[2] == pytest.approx(0.025 * (1 + math.cos(math.pi / 4)) / 2)
    assert lrs[3] == pytest.approx(0.0125) and lrs[4] == pytest.approx(0.025 * (1 + math.cos(3 * math.pi / 4)) / 2)
    per_step = train.TrainConfig.recipe("darts", epochs=4, lr_schedule="step")
    assert float(train.learning_rate(per_step, 5, steps_per_epoch=10)) == \
        pytest.approx(0.025 * (1 + math.cos(math.pi * 5 / 40)) / 2)
    assert [float(train.drop_path_prob(cfg, t, steps_per_epoch=10)) for t in (0, 9, 10, 35)] == \
        pytest.approx([0.0, 0.0, 0.05, 0.15])


@pytest.mark.parametrize("kw, match", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(layers=1), "layers >= 2"),
    (dict(batch_size=128, train_size=64), "batch size 128 is larger than the training set"),
    (dict(train_size=60000), "exceeds the 50000 images"),
    (dict(eval_split="valid"), "train_split='train'"),
    (dict(drop_path=1.0), "drop_path must be"),
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(colour=True), "unknown TrainConfig field"),
])
def test_config_errors(kw, match):
    with pytest.raises(train.TrainError, match=match):
        train.TrainConfig.recipe("darts", **kw)


def test_config_errors_nb201():
    with pytest.raises(train.TrainError, match="no auxiliary head"):
        train.TrainConfig(space="nb201", layers=5, channels=16).validate()
    with pytest.raises(train.TrainError, match="unknown recipe"):
        train.TrainConfig.recipe("resnet")


GOOD = darts.genotype_to_str(darts.DARTS_V2)


@pytest.mark.parametrize("text, match", [
    ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed genotype"),
    (GOOD.replace("'dil_conv_3x3'", "'conv_7x7'"), "unknown op 'conv_7x7'"),
    (GOOD.replace("('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ", "", 1), "needs 8 edges"),
    (GOOD.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 7)"), "input index 7 out of range"),
    ("ResNet18", "malformed genotype"),
])
def test_bad_genotypes(text, match):
    with pytest.raises(darts.GenotypeError, match=match):
        train.parse_architecture(genotype=text)


def test_architecture_sources(tmp_path):
    with pytest.raises(train.TrainError, match="exactly one architecture.*both"):
        train.parse_architecture(genotype="DARTS_V2", arch=RESNET)
    with pytest.raises(train.TrainError, match="exactly one architecture.*neither"):
        train.parse_architecture()
    with pytest.raises(nb201.ArchError, match="unknown op"):
        train.parse_architecture(arch=RESNET.replace("skip_connect", "skip"))
    f = tmp_path / "g.txt"
    f.write_text("genotype = " + GOOD + "\n")
    a = train.parse_architecture(genotype=str(f))
    assert a.space == "darts" and a.spec == darts.DARTS_V2 and a.text == GOOD
    assert train.parse_architecture(genotype="DARTS_V2").text == GOOD
    b = train.parse_architecture(arch=RESNET)
    assert b.space == "nb201" and b.text == RESNET and b.spec == (3, 0, 3, 1, 0, 1)
    # a `nasi search --space darts --output` result: its first seed, or FILE#SEED
    v1 = darts.genotype_to_str(darts.DARTS_V1)
    r = tmp_path / "search.json"
    r.write_text(json.dumps({"config": {"space": "darts"},
                             "seeds": [{"seed": 3, "arch": GOOD}, {"seed": 4, "arch": v1}]}))
    assert train.parse_architecture(genotype=str(r)).text == GOOD
    assert train.parse_architecture(genotype=f"{r}#4").text == v1
    with pytest.raises(train.TrainError, match="no seed 5"):
        train.parse_architecture(genotype=f"{r}#5")
    r.write_text(json.dumps({"config": {"space": "nb201"}, "seeds": [{"seed": 0, "arch": RESNET}]}))
    with pytest.raises(train.TrainError, match="use --arch"):
        train.parse_architecture(genotype=str(r))


# --------------------------------------------------------------------------- augmentation

def test_augmentations():
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
    y = train.augment(key, x, crop_padding=4, flip=True, cutout=16)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.array_equal(y, train.augment(key, x, crop_padding=4, flip=True, cutout=16))
    assert not np.array_equal(y, train.augment(jax.random.key(2), x, crop_padding=4, flip=True, cutout=16))

    # flip: each image is itself or its mirror, both occur
    f = np.asarray(train.random_flip(key, x))
    same = [np.array_equal(f[i], x[i]) for i in range(8)]
    mirrored = [np.array_equal(f[i], x[i, :, ::-1]) for i in range(8)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)

    # crop: a 32x32 window of the image padded by 4 with the pad value
    pad = np.asarray(train.PAD_VALUE, np.float32)
    c = np.asarray(train.random_crop(key, x, 4, pad))
    padded = np.broadcast_to(pad, (8, 40, 40, 3)).copy()
    padded[:, 4:36, 4:36] = x
    for i in range(8):
        hits = [(a, b) for a in range(9) for b in range(9) if np.array_equal(c[i], padded[i, a:a + 32, b:b + 32])]
        assert len(hits) == 1
    assert train.PAD_VALUE[0] == pytest.approx(-0.4914 / 0.2470, abs=1e-3)  # black after normalisation

    # cutout: one axis-aligned hole of zeros, 16x16 away from the borders, clipped near them
    ones = jnp.ones((256, 32, 32, 3))
    holes = np.asarray(train.random_cutout(key, ones, 16)) == 0
    assert np.array_equal(holes, np.repeat(holes[..., :1], 3, -1))
    sizes = []
    for h in holes[..., 0]:
        rows, cols = np.flatnonzero(h.any(1)), np.flatnonzero(h.any(0))
        assert h.sum() == len(rows) * len(cols) and h[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        sizes.append(h.sum())
    assert max(sizes) == 256 and min(sizes) < 256
    assert np.array_equal(train.augment(key, x, crop_padding=0, flip=False, cutout=0), x)


# --------------------------------------------------------------------------- runs

def test_darts_run_writes_files(reference, darts_cfg):
    res, wd = reference, reference.workdir
    assert res.completed and int(res.state.step) == 8
    records = _metrics(wd)
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [4, 8]
    for r in records:
        assert set(r) == EPOCH_KEYS
        assert all(math.isfinite(v) for v in r.values())
        assert 0 <= r["train_acc"] <= 100 and 0 <= r["test_acc"] <= 100
    assert records[0]["lr"] == pytest.approx(0.025) and records[1]["lr"] == pytest.approx(0.0125)
    assert records[0]["drop_path"] == 0 and records[1]["drop_path"] == pytest.approx(0.1)
    steps = sorted(int(n) for n in os.listdir(os.path.join(wd, "checkpoints")) if n.isdigit())
    assert steps == [4, 8]
    with open(os.path.join(wd, "result.json")) as fh:
        out = json.load(fh)
    assert set(out) >= {"config", "seed", "versions", "architecture", "params", "params_with_aux",
                        "final_test_acc", "best_test_acc", "best_epoch", "wall_time_s", "data"}
    assert out["config"] == {**dataclasses.asdict(darts_cfg)} and out["seed"] == 3
    assert out["architecture"] == GOOD and out["space"] == "darts"
    # reverse mode only: on CPU the taps form with its hand-written VJP
    assert out["conv_impl"] == ("xla-taps" if jax.default_backend() == "cpu" else "xla")
    assert out["params"] == darts.count_params(darts.DARTS_V2, channels=4, layers=5) < out["params_with_aux"]
    assert out["final_test_acc"] == records[-1]["test_acc"]
    assert out["best_test_acc"] == max(r["test_acc"] for r in records)
    assert out["data"]["n_train"] == 64 and out["data"]["n_test"] == 32
    assert math.isfinite(out["wall_time_s"]) and set(out["versions"]) >= {"jax", "flax", "optax"}
    assert not [n for n in os.listdir(wd) if n.startswith(".tmp-")]


@pytest.mark.parametrize("stop", [5, 4])  # mid-epoch, and at an epoch's end before its evaluation
def test_resume_is_exact(reference, darts_cfg, tiny_data, tmp_path, stop):
    part = train.train(darts_cfg, "DARTS_V2", tmp_path, seed=3, data=tiny_data, progress=False,
                       stop_after_steps=stop)
    assert not part.completed and part.result is None and int(part.state.step) == stop
    # stopped inside epoch 2 (after epoch 1's evaluation), or at epoch 1's end before it
    assert len(_metrics(tmp_path)) == (stop - 1) // 4 and not os.path.exists(tmp_path / "result.json")
    done = train.train(darts_cfg, "DARTS_V2", tmp_path, seed=3, data=tiny_data, progress=False)
    assert done.completed
    _leaves_equal(done.state, reference.state)  # params, batch_stats, opt_state, step, sums
    assert _strip_times(_metrics(tmp_path)) == _strip_times(_metrics(reference.workdir))
    assert done.result["final_test_acc"] == reference.result["final_test_acc"]


def test_interrupt_saves_and_resumes(reference, darts_cfg, tiny_data, tmp_path, monkeypatch):
    real = train.loop.evaluate  # the evaluation the training loop calls

    def interrupted(*a, **k):  # Ctrl-C at the end of epoch 1, before its evaluation
        raise KeyboardInterrupt

    monkeypatch.setattr(train.loop, "evaluate", interrupted)
    messages = []
    with pytest.raises(KeyboardInterrupt):
        train.train(darts_cfg, "DARTS_V2", tmp_path, seed=3, data=tiny_data, progress=False, log=messages.append)
    assert "checkpoint saved" in messages[-1]
    assert [n for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()] == ["4"]
    monkeypatch.setattr(train.loop, "evaluate", real)
    done = train.train(darts_cfg, "DARTS_V2", tmp_path, seed=3, data=tiny_data, progress=False)
    _leaves_equal(done.state, reference.state)
    assert [r["epoch"] for r in _metrics(tmp_path)] == [1, 2]


def test_resume_refuses_other_settings(reference, darts_cfg, tiny_data):
    wd = reference.workdir
    with pytest.raises(train.TrainError, match=r"different settings \(epochs: 2 -> 3; lr: 0.025 -> 0.05\)"):
        train.train(dataclasses.replace(darts_cfg, lr=0.05, epochs=3), "DARTS_V2", wd, seed=3,
                    data=tiny_data, progress=False)
    with pytest.raises(train.TrainError, match="seed: 3 -> 4"):
        train.train(darts_cfg, "DARTS_V2", wd, seed=4, data=tiny_data, progress=False)
    with pytest.raises(train.TrainError, match="architecture"):
        train.train(darts_cfg, "DARTS_V1", wd, seed=3, data=tiny_data, progress=False)
    with pytest.raises(train.TrainError, match="already holds checkpoints"):
        train.train(darts_cfg, "DARTS_V2", wd, seed=3, data=tiny_data, progress=False, resume=False)
    # the same settings again: nothing left to train, the same result, no duplicate epochs
    again = train.train(darts_cfg, "DARTS_V2", wd, seed=3, data=tiny_data, progress=False)
    assert again.completed and again.result["final_test_acc"] == reference.result["final_test_acc"]
    assert [r["epoch"] for r in _metrics(wd)] == [1, 2]
    _leaves_equal(again.state, reference.state)


def test_small_training_set_errors(darts_cfg, tiny_data, tmp_path):
    x, y, xt, yt = tiny_data
    with pytest.raises(train.TrainError, match="batch size 16 is larger than the training set \\(8 images\\)"):
        train.train(dataclasses.replace(darts_cfg, train_size=None), "DARTS_V2", tmp_path,
                    data=(x[:8], y[:8], xt, yt), progress=False)
    with pytest.raises(train.TrainError, match="space 'darts' but the architecture is an NB201 cell"):
        train.train(darts_cfg, RESNET, tmp_path, data=tiny_data, progress=False)
    fresh = tmp_path / "never_made"
    with pytest.raises(train.TrainError, match=r"training labels must lie in \[0, 10\) for cifar10, got 0..99"):
        train.train(darts_cfg, "DARTS_V2", fresh, data=(x, np.where(y == y[0], 99, y), xt, yt), progress=False)
    assert not fresh.exists()  # refused before any folder was made


def test_nb201_recipe_trains(tiny_data, tmp_path):
    cfg = train.TrainConfig.recipe("nb201", **TINY_NB201)
    ops = nb201.parse_arch(RESNET)
    init = train.init_state(cfg, RESNET, seed=0, steps_per_epoch=4)
    res = train.train(cfg, RESNET, tmp_path, seed=0, data=tiny_data, progress=False)
    assert res.completed and int(res.state.step) == 8
    assert res.result["params"] == nb201.count_params(ops, channels=4, cells_per_stage=1)
    assert res.result["config"]["nesterov"] and res.result["config"]["aux_weight"] == 0
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), init.params, res.state.params)
    assert all(jax.tree_util.tree_leaves(changed))
    assert all(math.isfinite(v) for r in res.history for v in r.values())


# --------------------------------------------------------------------------- command line

def test_cli_train_end_to_end(data_root, tmp_path, capsys):
    wd = tmp_path / "run"
    argv = ["train", "--arch", RESNET, "--dataset", "cifar10", "--epochs", "2", "--data-dir", data_root,
            "--workdir", str(wd), "--channels", "4", "--cells", "1", "--batch-size", "16", "--train-size", "64",
            "--test-size", "32", "--eval-batch-size", "32", "--seed", "0"]
    assert cli.main(argv + ["--stop-after-steps", "3"]) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    n = nb201.count_params(nb201.parse_arch(RESNET), channels=4, cells_per_stage=1)
    assert f"{n:,} parameters" in out and "recipe nb201" in out and "final test acc" in out
    # one progress line: label, step counts, ETA, and the epoch in its note
    assert re.search(r"\[train\] 8/8 steps, [^\r\n]*ETA [0-9?][^\r\n]*epoch 2/2 ", err) and "resuming" in err
    res = json.loads((wd / "result.json").read_text())
    assert res["command"].startswith("nasi train --arch") and res["config"]["recipe_name"] == "nb201"
    assert res["architecture"] == RESNET and res["data"]["n_train"] == 64
    assert [r["epoch"] for r in _metrics(wd)] == [1, 2]


@pytest.mark.parametrize("args, match", [
    (["--genotype", "DARTS_V2", "--arch", RESNET], "exactly one architecture"),
    ([], "exactly one architecture"),
    (["--genotype", "DARTS_V2", "--cells", "2"], "use --layers"),
    (["--genotype", "Genotype(normal=[('sep_conv_3x3', 0)] * 8)"], "malformed genotype"),
    (["--arch", RESNET, "--batch-size", "128", "--train-size", "64"], "batch size 128 is larger"),
    (["--arch", RESNET, "--epochs", "1"], "training needs the CIFAR-10 images: pass --data-dir"),
])
def test_cli_errors(tmp_path, capsys, args, match):
    assert cli.main(["train", "--workdir", str(tmp_path), "--no-progress", *args]) == 2
    assert match in capsys.readouterr().err
