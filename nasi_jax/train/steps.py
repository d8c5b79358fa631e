"""The compiled side of training: schedules, optimiser, augmentation, the train state, the
network of an architecture, and the jitted init / train / eval steps (maths: package
docstring)."""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nasi_jax.train.datasets import TRAIN_DATASETS
from nasi_jax.train.recipes import IMAGE_SIZE, TRAIN_SPACES, TrainConfig
from nasi_jax.train.sources import Architecture, as_architecture

__all__ = ["PAD_VALUE", "learning_rate", "drop_path_prob", "make_optimizer", "random_crop", "random_flip",
           "random_cutout", "augment", "TrainState", "param_counts", "init_state", "make_train_step",
           "make_eval_step", "evaluate"]

# per-channel value of a black pixel after CIFAR-10's normalisation (the crop's zero padding);
# a run pads with its own dataset's, ``cfg.dataset_spec.pad_value``
PAD_VALUE = TRAIN_DATASETS["cifar10"].pad_value


# --------------------------------------------------------------------------- schedules and optimiser

def learning_rate(cfg: TrainConfig, step, *, steps_per_epoch: int):
    """Cosine-annealed learning rate at global step ``step`` (0-based; traceable).

    ``eta = lr_min + (lr - lr_min) (1 + cos(pi u)) / 2`` with ``u = (step // S) / E`` for
    ``lr_schedule="epoch"`` or ``u = step / (E S)`` for ``"step"`` (``S = steps_per_epoch``).
    """
    step = jnp.asarray(step, jnp.int32)
    if cfg.lr_schedule == "epoch":
        u = (step // steps_per_epoch).astype(jnp.float32) / cfg.epochs
    else:
        u = step.astype(jnp.float32) / (cfg.epochs * steps_per_epoch)
    u = jnp.minimum(u, 1.0)
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * u))


def drop_path_prob(cfg: TrainConfig, step, *, steps_per_epoch: int):
    """``drop_path * epoch / epochs`` at global step ``step`` (DARTS's linear schedule; traceable)."""
    epoch = (jnp.asarray(step, jnp.int32) // steps_per_epoch).astype(jnp.float32)
    return jnp.float32(cfg.drop_path) * epoch / cfg.epochs


def make_optimizer(cfg: TrainConfig, *, steps_per_epoch: int) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip)`` (if > 0) -> ``add_decayed_weights(weight_decay)`` (L2 on
    the gradient, all parameters; if > 0) -> ``trace(momentum, nesterov)`` -> ``-learning_rate``.
    The schedule reads optax's update count, which equals the train state's step."""
    parts = []
    if cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    if cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(cfg.weight_decay))
    parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
    parts.append(optax.scale_by_schedule(lambda count: -learning_rate(cfg, count, steps_per_epoch=steps_per_epoch)))
    return optax.chain(*parts)


# --------------------------------------------------------------------------- augmentation

def random_crop(key: jax.Array, images: jax.Array, padding: int, pad_value=0.0) -> jax.Array:
    """Pad ``images [B, H, W, C]`` by ``padding`` pixels with ``pad_value`` (scalar or ``[C]``) and
    crop ``H x W`` at an offset uniform in ``[0, 2 padding]^2``, independently per image."""
    if padding == 0:
        return images
    B, H, W, C = images.shape
    fill = jnp.broadcast_to(jnp.asarray(pad_value, images.dtype), (C,))
    canvas = jnp.broadcast_to(fill, (B, H + 2 * padding, W + 2 * padding, C))
    canvas = jax.lax.dynamic_update_slice(canvas, images, (0, padding, padding, 0))
    off = jax.random.randint(key, (B, 2), 0, 2 * padding + 1)
    return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (H, W, C)))(canvas, off)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image of ``[B, H, W, C]`` left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def random_cutout(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
    """Zero one ``size x size`` hole per image (DARTS's cutout): centre ``(cy, cx)`` uniform over
    the pixels, rows ``[cy - size//2, cy + size//2)`` and columns likewise, clipped at the borders
    (so the hole is smaller near them)."""
    if size == 0:
        return images
    B, H, W, _ = images.shape
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (B,), 0, H)
    cx = jax.random.randint(kx, (B,), 0, W)
    h = size // 2
    rows, cols = jnp.arange(H), jnp.arange(W)
    in_r = (rows[None, :] >= cy[:, None] - h) & (rows[None, :] < cy[:, None] + h)  # [B, H]
    in_c = (cols[None, :] >= cx[:, None] - h) & (cols[None, :] < cx[:, None] + h)  # [B, W]
    hole = in_r[:, :, None] & in_c[:, None, :]
    return jnp.where(hole[..., None], jnp.zeros((), images.dtype), images)


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 4, flip: bool = True,
            cutout: int = 0, pad_value=PAD_VALUE) -> jax.Array:
    """Crop (:func:`random_crop`), flip (:func:`random_flip`), then cutout (:func:`random_cutout`), each
    from its own key split from ``key``: a pure function of ``key`` and ``images [B, H, W, C]``.
    ``pad_value`` defaults to black in normalised units (package docstring)."""
    k_crop, k_flip, k_cut = jax.random.split(key, 3)
    images = random_crop(k_crop, images, crop_padding, pad_value)
    if flip:
        images = random_flip(k_flip, images)
    return random_cutout(k_cut, images, cutout)


# --------------------------------------------------------------------------- state and model

@flax.struct.dataclass
class TrainState:
    """The whole training state, a pytree: ``step`` (int32 scalar), ``params``,
    ``batch_stats``, ``opt_state`` and ``sums`` (this epoch's running sums: ``loss`` (float32,
    sum over examples of the batch's loss), ``correct`` and ``count`` (int32))."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    sums: Any


def zero_sums():
    """The running sums of an epoch that has not started."""
    return {"loss": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32),
            "count": jnp.zeros((), jnp.int32)}


def build_model(cfg: TrainConfig, arch: Architecture):
    """``(module, init, apply)`` of ``arch``'s evaluation network at ``cfg``'s size
    (:attr:`TrainSpace.build`)."""
    return TRAIN_SPACES[arch.space].build(cfg, arch.spec)


def param_counts(cfg: TrainConfig, arch: Architecture) -> tuple[int, int]:
    """(parameters without the auxiliary head, as the literature reports; with it)."""
    return TRAIN_SPACES[arch.space].count_params(cfg, arch.spec)


def run_keys(seed: int):
    """``(init key, step key)``: ``fold_in(key(seed), 0)`` and ``fold_in(key(seed), 1)``."""
    root = jax.random.key(seed)
    return jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)


# --------------------------------------------------------------------------- compiled steps

def _loss_fn(cfg: TrainConfig, apply, state: TrainState, x, y, dp, k_drop):
    """``params -> (loss, (logits, new batch_stats))`` of one training batch (package docstring)."""
    def loss_fn(params):
        (logits, aux), new_vars = apply({"params": params, "batch_stats": state.batch_stats}, x, True,
                                        dp, k_drop if dp is not None else None, ["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        if aux is not None and cfg.aux_weight > 0:
            loss = loss + cfg.aux_weight * optax.softmax_cross_entropy_with_integer_labels(aux, y).mean()
        return loss, (logits, new_vars["batch_stats"])
    return loss_fn


@functools.lru_cache(maxsize=8)
def programs(cfg: TrainConfig, arch: Architecture, steps_per_epoch: int):
    """The jitted (init_state, train_step, eval_step) of one configuration, cached so that
    several runs in one process (a resume, the tests) reuse the compiled programs."""
    _, init, apply = build_model(cfg, arch)
    tx = make_optimizer(cfg, steps_per_epoch=steps_per_epoch)
    pad_value = jnp.asarray(cfg.dataset_spec.pad_value, jnp.float32)

    def init_state(key):
        variables = init(key, jnp.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32))
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                          sums=zero_sums())

    def train_step(state: TrainState, x, y, step_key):
        k_aug, k_drop = jax.random.split(jax.random.fold_in(step_key, state.step))
        x = augment(k_aug, x, crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout,
                    pad_value=pad_value)
        dp = drop_path_prob(cfg, state.step, steps_per_epoch=steps_per_epoch) if cfg.drop_path > 0 else None
        loss_fn = _loss_fn(cfg, apply, state, x, y, dp, k_drop)
        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = jnp.sum(jnp.argmax(logits, -1) == y).astype(jnp.int32)
        B = y.shape[0]
        sums = {"loss": state.sums["loss"] + loss * B, "correct": state.sums["correct"] + correct,
                "count": state.sums["count"] + B}
        return TrainState(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                          sums=sums)

    def eval_step(params, batch_stats, x, y, mask):
        logits, _ = apply({"params": params, "batch_stats": batch_stats}, x, False)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(jnp.where(mask, ce, 0.0)), jnp.sum((jnp.argmax(logits, -1) == y) & mask)

    return jax.jit(init_state), jax.jit(train_step), jax.jit(eval_step)


def init_state(cfg: TrainConfig, arch, *, seed: int, steps_per_epoch: int) -> TrainState:
    """The initial :class:`TrainState` of ``(cfg, arch, seed)`` (weights from ``fold_in(key(seed), 0)``)."""
    arch = as_architecture(arch)
    return programs(cfg, arch, steps_per_epoch)[0](run_keys(seed)[0])


def make_train_step(cfg: TrainConfig, arch, *, steps_per_epoch: int):
    """The jitted ``train_step(state, x [B,32,32,3], y [B], step_key) -> state`` (package docstring:
    augmentation, loss, clip, L2, momentum, cosine lr, drop-path), with ``step_key`` the run's
    step key (``fold_in(key(seed), 1)``; the step's own key is ``fold_in(step_key, state.step)``)."""
    return programs(cfg, as_architecture(arch), steps_per_epoch)[1]


def make_eval_step(cfg: TrainConfig, arch, *, steps_per_epoch: int):
    """The jitted ``eval_step(params, batch_stats, x, y, mask) -> (sum of CE, number correct)``
    over the examples where ``mask`` is true (running BN statistics)."""
    return programs(cfg, as_architecture(arch), steps_per_epoch)[2]


def evaluate(eval_step, state: TrainState, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(mean CE, accuracy in percent) of ``state`` on ``x, y``; the last batch is zero-padded
    to ``min(batch_size, N)`` and masked, so one compiled shape serves the whole set."""
    n = x.shape[0]
    b = min(batch_size, n)
    loss = 0.0
    correct = 0
    for s in range(0, n, b):
        xb, yb = x[s:s + b], y[s:s + b]
        m = np.ones(b, bool)
        if xb.shape[0] < b:
            k = b - xb.shape[0]
            m[xb.shape[0]:] = False
            xb = np.concatenate([xb, np.zeros((k, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros((k,), yb.dtype)])
        l_sum, c = eval_step(state.params, state.batch_stats, xb, yb, m)
        loss += float(l_sum)
        correct += int(c)
    return loss / n, 100.0 * correct / n
