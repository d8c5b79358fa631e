"""Checkpoints of a training run (orbax): the whole :class:`~nasi_jax.train.TrainState` and a JSON
record of the run (its identity, step, per-epoch history, wall time) under one step number."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.train.recipes import TrainError
from nasi_jax.train.steps import TrainState

__all__ = ["checkpoint_manager", "save_checkpoint", "restore_meta", "restore_state"]


def checkpoint_manager(folder: str, keep: int):
    """An orbax ``CheckpointManager`` in ``folder`` keeping the last ``keep`` checkpoints."""
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(os.path.abspath(folder),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def save_checkpoint(manager, state: TrainState, meta: dict) -> None:
    """Save ``state`` and ``meta`` (JSON) as the checkpoint of step ``meta["step"]``."""
    import orbax.checkpoint as ocp
    manager.save(int(meta["step"]), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                             meta=ocp.args.JsonSave(meta)), force=True)


def restore_meta(manager, step: int) -> dict:
    """The JSON record of the checkpoint of ``step``."""
    import orbax.checkpoint as ocp
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def restore_state(manager, step: int, abstract_state) -> TrainState:
    """The train state of the checkpoint of ``step``, shaped as ``abstract_state``, uncommitted."""
    import orbax.checkpoint as ocp
    try:
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except ValueError as e:
        raise TrainError(f"the checkpoint at step {step} in {manager.directory} does not fit this network "
                         f"({str(e)[:200]}...): use a new --workdir") from None
    # orbax returns arrays committed to a device, a fresh state is uncommitted, and jit keys its
    # cache on that: hand back uncommitted copies so a resumed run reuses the compiled step.
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)), out.state)
