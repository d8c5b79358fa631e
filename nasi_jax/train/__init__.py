r"""Train a selected architecture from scratch on CIFAR-10 or CIFAR-100 (optax SGD, orbax checkpoints).

An importable library under a thin CLI (``nasi train``: :mod:`nasi_jax.cli.train`); the
configuration is code (:class:`TrainConfig`, two named recipes). The modules:

* :mod:`~nasi_jax.train.recipes`: :class:`TrainConfig`, the recipes, and :data:`TRAIN_SPACES`,
  all that training knows about each search space (its recipe and network size, how to parse,
  build and count one of its architectures, whether it has an auxiliary head and drop-path);
* :mod:`~nasi_jax.train.datasets`: :data:`TRAIN_DATASETS`, all that training knows about each
  dataset (CIFAR-10, CIFAR-100: classes, normalisation, splits, data sources, loader);
* :mod:`~nasi_jax.train.sources`: :class:`Architecture` and :func:`parse_architecture` (genotype
  text, published name, file, ``nasi search`` result ``FILE.json#SEED``; NB201 string);
* :mod:`~nasi_jax.train.steps`: schedules, optimiser, augmentation, :class:`TrainState`, the
  jitted init / train / eval steps, :func:`evaluate`;
* :mod:`~nasi_jax.train.loop`: the data of a run, checkpoints, :func:`train`.

Measured costs and what was verified on which machine: ``docs/training.md``.

**Recipes** (:meth:`TrainConfig.recipe`; every field can be overridden):

======================  ===================================  =====================================
field                   ``"darts"`` (DARTS, PAPER.md §8)     ``"nb201"`` (NAS-Bench-201)
======================  ===================================  =====================================
network                 NetworkCIFAR, C=36, 20 cells         NB201Network, C=16, N=5 per stage
batch, epochs           96, 600                              256, 200
SGD                     momentum 0.9                         Nesterov momentum 0.9
lr                      0.025, cosine to 0 per epoch         0.1, cosine to 0 per step
weight decay (L2)       3e-4                                 5e-4
gradient clip           global norm 5                        none
auxiliary head          weight 0.4                           none
drop-path               0.2 * epoch / epochs                 none
augmentation            crop 32 pad 4, flip, cutout 16       crop 32 pad 4, flip
======================  ===================================  =====================================

The network sizes come from the architecture's space, the rest from the recipe: the
``darts`` recipe on an NB201 cell trains NB201Network(C=16, N=5) with DARTS's optimiser and
cutout, but no auxiliary head and no drop-path (NB201Network has neither).

**Maths.** One step on a batch ``x [B, 32, 32, 3]`` (normalised), ``y [B]``, step ``t``
(0-based), epoch ``e = t // S`` with ``S = floor(N_train / B)`` steps per epoch (the
incomplete last batch of each epoch is dropped: one compiled shape), ``E`` epochs:

* loss  ``L = CE(logits, y) + w_aux * CE(aux_logits, y)`` (mean cross-entropies over the batch;
  ``w_aux = 0.4`` for DARTS, whose auxiliary head reads cell ``2*layers//3``; 0 for NB201);
* gradient clipping ``g <- g * min(1, c / ||g||_2)`` over all parameters (``c = 5``, DARTS);
* weight decay as L2 on the gradient, on *all* parameters (BN scales and biases included),
  before the momentum, as PyTorch's ``SGD(weight_decay=...)`` in DARTS and NB201 does:
  ``g <- g + lambda * theta`` (``optax.add_decayed_weights``);
* momentum ``m <- mu m + g``; update ``g`` (plain) or ``g + mu m`` (Nesterov)
  (``optax.trace``, PyTorch's convention: the learning rate multiplies after the momentum);
* ``theta <- theta - eta_t * update`` with the cosine schedule
  ``eta_t = eta_min + (eta_0 - eta_min) (1 + cos(pi u)) / 2``, ``u = e / E``
  (``lr_schedule="epoch"``: constant within an epoch, as DARTS's ``CosineAnnealingLR``
  stepped once per epoch with ``T_max = E``, ``eta_min = 0``) or ``u = t / (E S)``
  (``lr_schedule="step"``, the ``nb201`` recipe: NB201's training loop, AutoDL-Projects,
  updates its cosine scheduler every iteration with the fraction of the epoch done);
* drop-path probability ``p_e = p_max * e / E`` (DARTS: ``p_max = 0.2``), a traced scalar
  of the compiled step, so changing it never recompiles.

BatchNorm uses batch statistics in training (running averages, momentum 0.1 in PyTorch's
terms, updated every step) and the running averages at evaluation. After each epoch the
network is evaluated on the CIFAR-10 **test** set (as DARTS and NB201 report), or on NB201's
``valid`` half with ``train_split="train", eval_split="valid"`` (for model selection).

**CIFAR-100** (``dataset="cifar100"``, ``nasi train --dataset cifar100``): the same recipes,
schedule and augmentation on CIFAR-100's 50 000 training images, evaluated on its 10 000 test
images, with its 100 fine labels (the head has 100 outputs) and NB201's CIFAR-100 mean and
std (:data:`nasi_jax.data.CIFAR100_MEAN`; the crop pads with that normalisation's black).
Its files are the authors' python or binary version (:func:`nasi_jax.data.load_cifar100_split`).

**Augmentation** (in the compiled step, from ``jax.random``): random crop of 32 from the
image zero-padded by 4 pixels, i.e. padded with *black* (raw pixel 0, which after
normalisation is ``-mean/std`` per channel, as torchvision's ``RandomCrop(32, padding=4)``
before ``Normalize``); horizontal flip with probability 1/2; cutout (DARTS): one hole of
16x16 centred at a uniform pixel ``(cy, cx)``, rows ``[cy-8, cy+8)`` and columns
``[cx-8, cx+8)`` clipped to the image, set to 0 *after* normalisation (i.e. to the mean
colour), as DARTS's ``Cutout`` after ``Normalize`` does.

**Determinism and exact resume.** Every random quantity is a pure function of the seed and
the global step or epoch: the weights' initialisation of ``fold_in(key(seed), 0)``; the
augmentation and drop-path masks of step ``t`` of ``fold_in(fold_in(key(seed), 1), t)``;
the order of the training images in epoch ``e`` of NumPy's ``PCG64(SeedSequence([seed, e,
tag]))``. The train state (params, batch_stats, opt_state, step and the running sums of the
epoch's train loss/accuracy) is the only thing carried from step to step and is what a
checkpoint stores, together with the per-epoch metrics so far (JSON). Resuming from any
saved step therefore replays the uninterrupted run bit for bit wherever XLA's programs are
deterministic, as on CPU (a resumed process also reuses the compiled step: the restored
arrays are handed back uncommitted, like a fresh state). On GPU, XLA may autotune
convolutions differently in a new process; for bit-exact resumes there set
``XLA_FLAGS="--xla_gpu_deterministic_ops=true --xla_gpu_autotune_level=0"`` or keep a
persistent compilation cache (``--compilation-cache DIR``) so the resumed process runs the
same executable (docs/training.md says where this was checked).

**Files** in ``workdir``: ``checkpoints/`` (orbax ``CheckpointManager``: one after every
epoch, optionally every N steps, on Ctrl-C, the last few kept), ``metrics.jsonl`` (one JSON
line per epoch: epoch, step, lr, drop_path, train_loss, train_acc, test_loss, test_acc,
epoch_time_s, wall_s; accuracies in percent; rewritten from the checkpoint on resume, so
no epoch appears twice), ``result.json`` (written atomically at the end) and, only when
``tensorboardX`` is importable, ``tensorboard/`` event files (``flax.metrics.tensorboard``
needs TensorFlow, which this project does not install; without a writer nothing is
written and nothing is said).

Example (the recipes, the schedule, the augmentation; no data or training needed):

    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax import train
    >>> cfg = train.TrainConfig.recipe("darts")
    >>> cfg.channels, cfg.layers, cfg.batch_size, cfg.lr, cfg.epochs, cfg.aux_weight, cfg.cutout
    (36, 20, 96, 0.025, 600, 0.4, 16)
    >>> nb = train.TrainConfig.recipe("nb201", epochs=10)
    >>> nb.space, nb.channels, nb.layers, nb.batch_size, nb.nesterov, nb.weight_decay, nb.epochs
    ('nb201', 16, 5, 256, True, 0.0005, 10)
    >>> [round(float(train.learning_rate(nb, t, steps_per_epoch=195)), 5) for t in (0, 194, 195, 975)]
    [0.1, 0.09758, 0.09755, 0.05]
    >>> round(float(train.drop_path_prob(cfg, 521 * 300, steps_per_epoch=521)), 6)   # epoch 300 of 600
    0.1
    >>> c100 = train.TrainConfig.recipe("darts", dataset="cifar100")
    >>> c100.num_classes, c100.epochs, c100.cutout, [round(v, 3) for v in c100.dataset_spec.pad_value]
    (100, 600, 16, [-1.896, -1.898, -1.597])
    >>> x = jnp.ones((4, 32, 32, 3))
    >>> y = train.augment(jax.random.key(0), x, crop_padding=4, flip=True, cutout=16)
    >>> y.shape, int((y == 0).all(-1).sum(axis=(1, 2)).max()) <= 256
    ((4, 32, 32, 3), True)

Training (``images``/``labels`` in memory here; the CLI reads the dataset from ``--data-dir``)::

    cfg = train.TrainConfig.recipe("darts", channels=16, layers=8, epochs=10)
    res = train.train(cfg, "DARTS_V2", "runs/darts_v2", data_dir="../shared/data")
    res.result["final_test_acc"], res.result["best_test_acc"]

Command line (same effect; rerunning it continues from the latest checkpoint)::

    nasi train --genotype DARTS_V2 --dataset cifar10 --epochs 600 \
        --data-dir ../shared/data --workdir runs/darts_v2
    nasi train --arch "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|" \
        --dataset cifar10 --data-dir ../shared/data --workdir runs/nb201_best
    nasi train --genotype DARTS_V2 --dataset cifar100 --epochs 600 \
        --data-dir DIR --workdir runs/darts_v2_c100   # DIR/cifar-100-python/{train,test}
"""


from __future__ import annotations

from nasi_jax.train.datasets import TRAIN_DATASETS, TrainDataset
from nasi_jax.train.loop import TrainResult, epoch_permutation, load_data, train
from nasi_jax.train.recipes import (DATASETS, EVAL_SPLITS, IMAGE_SIZE, LR_SCHEDULES, NUM_CLASSES, RECIPES,
                                    TRAIN_SPACES, TRAIN_SPLITS, TrainConfig, TrainError, TrainSpace)
from nasi_jax.train.sources import Architecture, parse_architecture
from nasi_jax.train.steps import (PAD_VALUE, TrainState, augment, drop_path_prob, evaluate, init_state,
                                  learning_rate, make_eval_step, make_optimizer, make_train_step,
                                  param_counts, random_crop, random_cutout, random_flip)

__all__ = [
    "RECIPES", "TRAIN_SPACES", "TrainSpace", "TRAIN_DATASETS", "TrainDataset", "DATASETS", "TrainError",
    "TrainConfig", "Architecture", "TrainState",
    "TrainResult", "parse_architecture", "param_counts", "learning_rate", "drop_path_prob",
    "make_optimizer", "random_crop", "random_flip", "random_cutout", "augment", "PAD_VALUE",
    "load_data", "init_state", "make_train_step", "make_eval_step", "epoch_permutation", "evaluate",
    "train", "NUM_CLASSES", "IMAGE_SIZE", "TRAIN_SPLITS", "EVAL_SPLITS", "LR_SCHEDULES",
]
