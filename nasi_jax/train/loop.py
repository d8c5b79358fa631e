"""The training run: its data, its files in the workdir (checkpoints through
:mod:`~nasi_jax.train.checkpoints`), and :func:`train` (contract: package docstring)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np

from nasi_jax.records import Progress, now_utc, versions, write_json_atomic, write_text_atomic
from nasi_jax.train.checkpoints import checkpoint_manager, restore_meta, restore_state, save_checkpoint
from nasi_jax.train.recipes import (IMAGE_SIZE, TRAIN_SPACES, TrainConfig, TrainError, config_dict, config_diff,
                                    stored_config)
from nasi_jax.train.sources import Architecture, as_architecture
from nasi_jax.train.steps import (TrainState, build_model, drop_path_prob, evaluate, learning_rate,
                                  param_counts, programs, run_keys, zero_sums)

__all__ = ["load_data", "epoch_permutation", "TrainResult", "train"]

_PERM_TAG = 0x5EED  # separates the data-order stream from other uses of the seed
_FORMAT = 1  # checkpoint metadata format


# --------------------------------------------------------------------------- data

def load_data(cfg: TrainConfig, data_dir=None, *, source: str = "auto", split_file=None):
    """``(x_train, y_train, x_eval, y_eval)`` as host arrays (images float32 ``[N, 32, 32, 3]``
    normalised, labels int32 ``[N]`` in ``[0, cfg.num_classes)``) of ``cfg``'s dataset, splits
    and subset sizes, through its loader (:data:`~nasi_jax.train.datasets.TRAIN_DATASETS`:
    :func:`nasi_jax.data.load_cifar10_split` or :func:`~nasi_jax.data.load_cifar100_split`;
    never downloads; missing or malformed files raise :class:`nasi_jax.data.DataError` saying
    which files are expected where).

    Example::

        cfg = TrainConfig.recipe("darts", dataset="cifar100", train_size=1000, test_size=500)
        x, y, xe, ye = load_data(cfg, "DATA")   # DATA/cifar-100-python/{train,test}
        x.shape, ye.shape                       # (1000, 32, 32, 3), (500,)
    """
    return cfg.dataset_spec.load(cfg, data_dir, source=source, split_file=split_file)


def _run_data(cfg: TrainConfig, data, data_dir, data_source, split_file):
    """The run's ``(x_train, y_train, x_eval, y_eval)``: ``data`` (:func:`_given_data`) or the
    dataset's files (:func:`load_data`); raises when one batch needs more images than there are."""
    arrays = (load_data(cfg, data_dir, source=data_source, split_file=split_file) if data is None
              else _given_data(cfg, data))
    n_train = int(arrays[0].shape[0])
    if cfg.batch_size > n_train:
        raise TrainError(f"batch size {cfg.batch_size} is larger than the training set ({n_train} images): "
                         f"lower --batch-size or raise --train-size")
    return arrays


def _given_data(cfg: TrainConfig, data):
    """``data`` (arrays) cut to ``cfg``'s sizes, checked, as float32 images and int32 labels."""
    x_train, y_train, x_eval, y_eval = (np.asarray(a) for a in data)
    x_train, y_train = x_train[:cfg.train_size], y_train[:cfg.train_size]
    x_eval, y_eval = x_eval[:cfg.test_size], y_eval[:cfg.test_size]
    if x_train.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or x_eval.shape[1:] != x_train.shape[1:]:
        raise TrainError(f"images must be [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], got {x_train.shape} "
                         f"and {x_eval.shape}")
    for name, y in (("training", y_train), ("evaluation", y_eval)):
        if y.size and (y.min() < 0 or y.max() >= cfg.num_classes):
            raise TrainError(f"{name} labels must lie in [0, {cfg.num_classes}) for {cfg.dataset}, got "
                             f"{int(y.min())}..{int(y.max())}: pass the dataset's labels, or set dataset")
    return (x_train.astype(np.float32), y_train.astype(np.int32), x_eval.astype(np.float32),
            y_eval.astype(np.int32))


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """Order of the ``n`` training images in ``epoch``: a pure function of ``(seed, epoch)``."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_PERM_TAG, int(seed), int(epoch)])))
    return rng.permutation(n)


# --------------------------------------------------------------------------- files

def _append_line(path: str, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _tensorboard_writer(folder: str):
    """A tensorboardX SummaryWriter, or None when it is not installed (skipped silently)."""
    try:
        from tensorboardX import SummaryWriter  # type: ignore
    except Exception:
        return None
    return SummaryWriter(folder)


# --------------------------------------------------------------------------- the run

@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the final ``state``, the per-epoch ``history`` (the
    records of ``metrics.jsonl``), ``result`` (the content of ``result.json``; None when the
    run stopped early), ``completed`` and the ``workdir``."""

    state: TrainState
    history: list
    result: dict | None
    completed: bool
    workdir: str


@dataclasses.dataclass
class _Run:
    """The moving parts of one :func:`train` call: where it writes, how far it got."""

    cfg: TrainConfig
    workdir: str
    identity: dict  # what a checkpoint must match to be resumed
    spe: int  # steps per epoch
    t_start: float
    manager: Any = None  # orbax CheckpointManager of ckpt_dir
    state: Any = None
    step: int = 0
    history: list = dataclasses.field(default_factory=list)
    wall_before: float = 0.0
    last_saved: int | None = None

    @property
    def ckpt_dir(self) -> str:
        return os.path.join(self.workdir, "checkpoints")

    @property
    def total(self) -> int:
        return self.spe * self.cfg.epochs

    def wall(self) -> float:
        """Seconds of training so far, the runs before a resume included."""
        return self.wall_before + time.perf_counter() - self.t_start

    def save(self, replace: bool = False) -> None:
        """Checkpoint the current step (once). ``replace``: the history grew since this step's
        checkpoint was written (an evaluation after a stop at an epoch's end): write it again."""
        if self.last_saved == self.step and not replace:
            return
        if self.last_saved == self.step:
            self.manager.wait_until_finished()
            self.manager.delete(self.step)
        meta = {"format": _FORMAT, "step": self.step, "history": self.history, "wall_s": self.wall()}
        save_checkpoint(self.manager, self.state, self.identity | meta)
        self.last_saved = self.step


def _check_arguments(cfg, arch, seed, checkpoint_every_steps, stop_after_steps, keep_checkpoints) -> None:
    if cfg.space != arch.space:
        raise TrainError(f"the config is for space {cfg.space!r} but the architecture is "
                         f"{TRAIN_SPACES[arch.space].arch_noun}: build it with "
                         f"TrainConfig.recipe(..., space={arch.space!r})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 31:
        raise TrainError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    for name, v in (("checkpoint_every_steps", checkpoint_every_steps), ("stop_after_steps", stop_after_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise TrainError(f"{name} must be a positive integer or None, got {v!r}")
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or keep_checkpoints < 1:
        raise TrainError(f"keep_checkpoints must be a positive integer, got {keep_checkpoints!r}")


def _check_data_source(cfg: TrainConfig, data_dir, data_source: str) -> None:
    """Raise when ``data_source`` is not one of the dataset's, or when ``data_dir`` is None and
    the source needs a folder (every one but tfds)."""
    ds = cfg.dataset_spec
    if data_source not in ds.sources:
        raise TrainError(f"--data-source {data_source!r} is not a source of {ds.name}: choose one of {ds.sources}")
    if data_dir is None and data_source != "tfds":
        raise TrainError(f"training needs the {ds.title} images: {ds.provide}; nothing is downloaded")


def _check_workdir(workdir, *, resume: bool) -> tuple[str, bool]:
    """``(absolute workdir, whether it holds checkpoints)``; raises for a file, or for
    checkpoints without ``resume``."""
    workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise TrainError(f"--workdir {workdir} is a file; give a folder")
    existing = os.path.isdir(ckpt_dir) and any(n.isdigit() for n in os.listdir(ckpt_dir))
    if existing and not resume:
        raise TrainError(f"{ckpt_dir} already holds checkpoints and resume is off: use a new --workdir, "
                         f"or drop --no-resume to continue that run")
    return workdir, existing


def _resume_or_start(run: _Run, latest: int | None, init_fn, k_init, say) -> None:
    """Put the latest checkpoint's state and history into ``run`` (refusing other settings), or
    the initial state when there is none."""
    if latest is None:
        run.state = init_fn(k_init)
        return
    meta = restore_meta(run.manager, latest)
    old = {k: meta.get(k) for k in run.identity}
    old["config"] = stored_config(old["config"])
    if old != run.identity:
        diff = config_diff(old["config"] or {}, run.identity["config"])
        diff += [f"{k}: {old[k]!r} -> {v!r}" for k, v in run.identity.items() if k != "config" and old[k] != v]
        raise TrainError(f"{run.workdir} holds a run with different settings ({'; '.join(diff)}); "
                         f"the schedule, data order and parameters depend on all of them: use a "
                         f"new --workdir, or rerun with the stored settings to continue")
    run.state = restore_state(run.manager, latest, jax.eval_shape(init_fn, k_init))
    run.history = list(meta["history"])
    run.wall_before = float(meta.get("wall_s", 0.0))
    say(f"resuming {run.workdir} from step {latest}/{run.total} (epoch {len(run.history)}/{run.cfg.epochs} done)")


def _epoch_means(state: TrainState) -> tuple[float, float]:
    """(mean train loss, train accuracy in percent) of the epoch so far."""
    s = jax.device_get(state.sums)
    c = max(int(s["count"]), 1)
    return float(s["loss"]) / c, 100.0 * int(s["correct"]) / c


def _show(bar: Progress, run: _Run, epoch: int, loss: float, acc: float) -> None:
    """Bring the progress line to the run's step; the note: the epoch, its running loss and accuracy."""
    bar.update(run.step - bar.done, f"epoch {epoch + 1}/{run.cfg.epochs} loss {loss:.4f} acc {acc:.2f}%",
               force=True)


def _train_epoch(run: _Run, epoch: int, train_step, x, y, *, seed, k_steps, bar, checkpoint_every_steps,
                 stop_after_steps) -> bool:
    """The remaining steps of ``epoch``; True when ``stop_after_steps`` stopped it."""
    cfg, spe = run.cfg, run.spe
    pos = run.step - epoch * spe
    if not 0 <= pos <= spe:
        raise TrainError(f"checkpoint at step {run.step} does not match epoch {epoch} of {spe} steps; "
                         f"the workdir is inconsistent: use a new --workdir")
    if pos == 0:
        run.state = run.state.replace(sums=zero_sums())
    if pos < spe:
        perm = epoch_permutation(seed, epoch, x.shape[0])
    for i in range(pos, spe):
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        run.state = train_step(run.state, x[idx], y[idx], k_steps)
        run.step += 1
        if bar.due():
            _show(bar, run, epoch, *_epoch_means(run.state))
        if checkpoint_every_steps and run.step % checkpoint_every_steps == 0 and run.step % spe:
            run.save()
        if stop_after_steps is not None and run.step >= stop_after_steps:
            return True
    return False


def _end_epoch(run: _Run, epoch: int, t_epoch: float, eval_step, x_eval, y_eval, *, bar, tb) -> None:
    """Evaluate, append the epoch's record to the history, ``metrics.jsonl`` and tensorboard, and
    checkpoint it."""
    cfg, spe = run.cfg, run.spe
    train_loss, train_acc = _epoch_means(run.state)
    _show(bar, run, epoch, train_loss, train_acc)
    test_loss, test_acc = evaluate(eval_step, run.state, x_eval, y_eval, cfg.eval_batch_size)
    first = epoch * spe
    record = {"epoch": epoch + 1, "step": run.step,
              "lr": float(learning_rate(cfg, first, steps_per_epoch=spe)),
              "drop_path": float(drop_path_prob(cfg, first, steps_per_epoch=spe)),
              "train_loss": train_loss, "train_acc": train_acc,
              f"{cfg.eval_split}_loss": test_loss, f"{cfg.eval_split}_acc": test_acc,
              "epoch_time_s": time.perf_counter() - t_epoch, "wall_s": run.wall()}
    run.history.append(record)
    _append_line(os.path.join(run.workdir, "metrics.jsonl"), record)
    if tb is not None:
        for k, v in record.items():
            if k not in ("epoch", "step"):
                tb.add_scalar(k, v, epoch + 1)
        tb.flush()
    run.save(replace=True)


def _save_interrupted(run: _Run, say) -> None:
    try:
        run.save()
        run.manager.wait_until_finished()
        say(f"interrupted at step {run.step}/{run.total}; checkpoint saved in {run.ckpt_dir}: rerun the "
            f"same command to continue")
    except Exception as e:  # noqa: BLE001 - best effort while interrupted
        say(f"interrupted at step {run.step}/{run.total}; no checkpoint saved now ({type(e).__name__}: {e}); "
            f"a rerun continues from step {run.last_saved}")


def _train_epochs(run: _Run, train_step, eval_step, data, *, seed, k_steps, progress, say,
                  checkpoint_every_steps, stop_after_steps) -> bool:
    """Every remaining epoch (or until ``stop_after_steps``, then checkpointed); True when stopped.
    Ctrl-C saves a checkpoint and re-raises."""
    x_train, y_train, x_eval, y_eval = data
    tb = _tensorboard_writer(os.path.join(run.workdir, "tensorboard"))
    bar = Progress(run.total, unit="steps", label="[train]", initial=run.step, enabled=progress, interval=0.5)
    try:
        for epoch in range(len(run.history), run.cfg.epochs):
            t_epoch = time.perf_counter()
            if _train_epoch(run, epoch, train_step, x_train, y_train, seed=seed, k_steps=k_steps, bar=bar,
                            checkpoint_every_steps=checkpoint_every_steps, stop_after_steps=stop_after_steps):
                run.save()
                return True
            _end_epoch(run, epoch, t_epoch, eval_step, x_eval, y_eval, bar=bar, tb=tb)
        return False
    except KeyboardInterrupt:
        bar.close()
        _save_interrupted(run, say)
        raise
    finally:
        bar.close()
        if tb is not None:
            tb.close()


def _result(run: _Run, arch: Architecture, seed: int, data_info: dict, extra: dict | None) -> dict:
    """The content of ``result.json`` of a completed run."""
    cfg, history, e = run.cfg, run.history, run.cfg.eval_split
    accs = [r[f"{e}_acc"] for r in history]
    best = int(np.argmax(accs))
    n_params, n_with_aux = param_counts(cfg, arch)
    net = build_model(cfg, arch)[0]
    return {
        "created": now_utc(), "config": config_dict(cfg), "seed": int(seed), "versions": versions(),
        "space": arch.space, "architecture": arch.text, "dataset": cfg.dataset, "num_classes": cfg.num_classes,
        # how the network's convolutions ran (the same function either way)
        "conv_impl": TRAIN_SPACES[arch.space].conv_impl(net),
        "params": n_params, "params_with_aux": n_with_aux, "data": data_info,
        "epochs": cfg.epochs, "steps": run.step,
        f"final_{e}_acc": history[-1][f"{e}_acc"], f"final_{e}_loss": history[-1][f"{e}_loss"],
        f"best_{e}_acc": accs[best], "best_epoch": best + 1,
        "final_train_acc": history[-1]["train_acc"], "final_train_loss": history[-1]["train_loss"],
        "wall_time_s": history[-1]["wall_s"], "workdir": run.workdir,
    } | dict(extra or {})


def train(cfg: TrainConfig, arch: Architecture | str, workdir: str | os.PathLike, *, seed: int = 0,
          data_dir=None, data_source: str = "auto", split_file=None, data=None, resume: bool = True,
          checkpoint_every_steps: int | None = None, keep_checkpoints: int = 3,
          stop_after_steps: int | None = None, progress: bool = True, log=None,
          extra: dict | None = None) -> TrainResult:
    """Train ``arch`` with ``cfg`` from ``seed``, writing into ``workdir`` (package docstring).

    Args:
      cfg: a validated :class:`TrainConfig` whose ``space`` matches ``arch``.
      arch: an :class:`Architecture`, a genotype (text, published name or file) or an NB201
        string (starts with ``|``).
      workdir: output folder (created). With ``resume`` (default) and checkpoints there, the
        run continues from the latest one; it refuses when the stored config, architecture,
        seed or data size differ (naming the fields). Without ``resume`` existing checkpoints
        are an error (use a new folder).
      seed: non-negative int; with the configuration it fixes every random number.
      data_dir, data_source, split_file: where ``cfg.dataset``'s files are (:func:`load_data`).
      data: instead, ``(x_train, y_train, x_eval, y_eval)`` arrays (normalised images).
      checkpoint_every_steps: also save every N steps (besides every epoch).
      keep_checkpoints: how many checkpoints orbax keeps.
      stop_after_steps: stop once the global step reaches N, after saving a checkpoint (to
        simulate an interruption; resume with the same call without it).
      progress: the progress line on stderr (:class:`nasi_jax.records.Progress`: steps, rate,
        ETA, and the epoch with its running loss and accuracy). ``log``: a function of one
        string for the resume/interrupt messages (default: none). ``extra``: more entries for
        ``result.json``.

    Returns:
      a :class:`TrainResult`. ``result.json`` is written only when all epochs are done.
    """
    t_start = time.perf_counter()
    say = log or (lambda s: None)
    arch = as_architecture(arch)
    cfg = cfg.validate()
    _check_arguments(cfg, arch, seed, checkpoint_every_steps, stop_after_steps, keep_checkpoints)
    if data is None:
        _check_data_source(cfg, data_dir, data_source)
    workdir, existing = _check_workdir(workdir, resume=resume)
    arrays = _run_data(cfg, data, data_dir, data_source, split_file)  # before any folder is made
    os.makedirs(workdir, exist_ok=True)
    n_train, n_eval = int(arrays[0].shape[0]), int(arrays[2].shape[0])
    spe = n_train // cfg.batch_size
    init_fn, train_step, eval_step = programs(cfg, arch, spe)
    k_init, k_steps = run_keys(int(seed))
    identity = {"config": config_dict(cfg), "space": arch.space, "architecture": arch.text,
                "seed": int(seed), "n_train": n_train, "n_eval": n_eval, "steps_per_epoch": spe}
    run = _Run(cfg, workdir, identity, spe, t_start)
    run.manager = checkpoint_manager(run.ckpt_dir, keep_checkpoints)
    latest = run.manager.latest_step() if existing else None
    try:
        _resume_or_start(run, latest, init_fn, k_init, say)
        write_text_atomic(os.path.join(workdir, "metrics.jsonl"),
                          "".join(json.dumps(r) + "\n" for r in run.history))
        run.step, run.last_saved = int(run.state.step), latest
        stopped = _train_epochs(run, train_step, eval_step, arrays, seed=seed, k_steps=k_steps,
                                progress=progress, say=say, checkpoint_every_steps=checkpoint_every_steps,
                                stop_after_steps=stop_after_steps)
        run.manager.wait_until_finished()
    finally:
        run.manager.close()
    if stopped or len(run.history) < cfg.epochs:
        return TrainResult(run.state, run.history, None, False, workdir)
    data_info = {"source": data_source if data is None else "arrays",
                 "data_dir": None if data_dir is None else os.fspath(data_dir), "n_train": n_train,
                 f"n_{cfg.eval_split}": n_eval, "eval_split": cfg.eval_split, "steps_per_epoch": spe}
    result = _result(run, arch, seed, data_info, extra)
    write_json_atomic(os.path.join(workdir, "result.json"), result)
    return TrainResult(run.state, run.history, result, True, workdir)
