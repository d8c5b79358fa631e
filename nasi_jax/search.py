"""Algorithm 1 of NASI as pure, jit-compiled functions; many seeds in one compiled call.

For each seed: one initialisation ``theta_0`` of the supernet, logits ``alpha_0 = 0``
(``[E, K]`` edges x ops) and, for ``t = 1 .. T``::

    D_t ~ batch (b examples, per the data mode),   g_t ~ Gumbel(0, 1)^{E x K}
    A_t = A(alpha_0, g_t)                         (Gumbel-softmax, hard straight-through)
    G_t = grad_alpha R(A_t) at alpha_0,   R = s - mu * max(0, s - nu_t)        (13)

where ``s = ||grad_theta mean_b l||^2`` (eq. 12) at ``theta_0`` — so ``G_t`` is a
second-order gradient through the inner ``grad_theta`` (by default a reverse pass over one
JVP in theta; the literal grad-of-grad is ``grad_mode='rev-rev'``, see
:func:`objective_and_grad`). Then (eq. 18, :func:`eq18_update`)::

    Delta* = (xi / T) sum_t G_t / max(||G_1||, ..., ||G_t||),   alpha* = alpha_0 + Delta*

and the selected cell is the per-edge argmax of ``alpha*``. ``alpha`` is not updated
inside the loop: every ``G_t`` is taken at ``alpha_0``.

One compilation per search whatever the number of seeds S. On GPU/TPU the T steps run in
one ``lax.scan`` and the seeds in the same program (``lax.map`` by default, ``vmap`` on
request); on CPU (``loop="auto"``) one compiled step is called from Python for every seed and
step, because XLA:CPU convolutions are 10-60x slower inside loop bodies. Keys: seed ``s``
uses ``PRNGKey(s)`` split into (init, loop); step ``t`` uses ``fold_in(loop, t)``.

Example:
    >>> cfg = SearchConfig(steps=2, batch_size=4, channels=4, cells_per_stage=1, image_size=8)
    >>> res = run_search(cfg, seeds=[0, 1])
    >>> res.ops.shape, len(res.arch_strs)
    ((2, 6), 2)
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import data as data_lib
from nasi_jax import memory
from nasi_jax import ntk, objective, presets, relax
from nasi_jax.spaces import darts, get_space, nb201

__all__ = ["SearchConfig", "SearchResult", "Eq18State", "eq18_init", "eq18_update", "eq18_delta",
           "run_search", "search_fn", "clear_cache", "compiled_host_step", "resolve_loop",
           "resolve_seed_batching", "check_seeds", "objective_and_grad",
           "NonFiniteScoreError", "TRACE_COUNT", "replay", "read_out", "READOUTS"]

BN_MODES = ("train", "eval")
SEED_BATCHING = ("auto", "map", "vmap", "threads")
LOOPS = ("auto", "scan", "host")
GRAD_MODES = ("fwd-rev", "rev-rev")
STEP_IMPLS = ("auto", "one-program", "staged")
READOUTS = ("argmax", "argmax-no-none", "darts")
# Read-outs each space allows (the default is the preset's).
SPACE_READOUTS = {"nb201": ("argmax", "argmax-no-none"), "darts": ("darts",)}
# Convolution implementations per space (``conv_impl='auto'`` resolves in SearchConfig).
SPACE_CONV_IMPLS = {"nb201": ("xla", "loop-safe"), "darts": ("xla", "xla-dense", "xla-shift", "loop-safe")}

_SEED_THREADS = 2  # seeds in flight with seed_batching='threads'

# Incremented each time the per-seed search is traced (== compiled): tests read it.
TRACE_COUNT = {"search": 0}


class NonFiniteScoreError(FloatingPointError):
    """A trace estimate or gradient came out NaN/inf."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a NASI search (hashable: it is a static jit argument).

    Every search value left as ``None`` comes from a preset (:mod:`nasi_jax.presets`, the one
    place that holds defaults): ``preset`` if given, else the default preset for ``space`` and
    ``data`` (NB201: the values chosen on validation accuracy for that data mode; DARTS: the
    paper's). Values given explicitly override the preset's. After construction every field
    holds a concrete value, so a config (and every result file) records what ran.

    Attributes:
        space: search space name: ``nb201`` (architecture logits ``alpha [6, 5]``) or
            ``darts`` (``alpha [2, 14, 8]``: the normal and the reduction cell).
        preset: the preset the defaults came from (``None``: the default one, recorded here).
        steps: T, number of sampled architectures / gradients.
        batch_size: b, examples per mini-batch.
        mu: penalty coefficient of eq. 13.
        nu: the ceiling (NASI-FIX) or its initial value (NASI-ADA).
        nu_mode: the ceiling rule, ``fixed`` or ``adaptive`` (:mod:`nasi_jax.objective`).
        tau: Gumbel-softmax temperature.
        hard: straight-through hard samples or soft samples.
        xi: radius of eq. 17-18 (scales alpha*; does not change the argmax).
        readout: how the cell is read from ``alpha*`` (:func:`read_out`). NB201: ``argmax``
            (per edge, over all ops) or ``argmax-no-none`` (per edge, over all ops but
            ``none``). DARTS: ``darts`` (PAPER.md §7: per edge the best op other than
            ``none``, per node the 2 incoming edges whose best ``alpha*`` is largest).
            ``auto`` means the preset's.
        objective: what the search maximises; ``nasi`` (eq. 13 on the estimate of eq. 12).
        data: ``random`` | ``random-labels`` | ``real`` (see :mod:`nasi_jax.data`).
        channels, cells_per_stage, num_classes, image_size: supernet size. NB201 presets:
            16, 5, 10, 32. DARTS: 16, 2, 10, 32, where ``cells_per_stage`` N counts the
            normal cells of a stage and the network has ``3 N + 2`` cells (DARTS' 8 with N=2).
        init_scheme: ``pytorch`` (the scale of the paper's nu) or ``flax``.
        bn_mode: ``train`` (batch statistics) or ``eval`` (running statistics).
        seed_batching: how S seeds share one compiled program. ``map``: seeds one after
            another (``lax.map`` in the scan loop, a Python loop over the same compiled step
            in the host loop); ``vmap``: all seeds in one batched program; ``threads`` (host
            loop only): the per-seed loops of ``map`` run two at a time in threads, so
            XLA:CPU's single-threaded parts overlap; ``auto`` (default): the fastest
            measured on the backend (:func:`resolve_seed_batching`, ``nasi bench``).
        loop: ``scan`` (all T steps and S seeds in one compiled program), ``host`` (one
            compiled step called T times per seed from Python, for XLA:CPU, whose
            convolutions run 10-60x slower inside a loop body: jax issue #12868), or ``auto``
            (``host`` on CPU, ``scan`` elsewhere). Both give the same result.
        grad_mode: how the second-order gradient is taken (:func:`objective_and_grad`).
        conv_impl: the supernet's convolutions: ``xla``, ``loop-safe``
            (:mod:`nasi_jax.conv`; needs ``grad_mode='rev-rev'``) or, for DARTS,
            ``xla-dense`` (depthwise convolutions as dense ones with a diagonal kernel, max
            pooling as separable maxima) or ``xla-shift`` (depthwise convolutions as shifted
            products); :func:`nasi_jax.spaces.darts.resolve_conv_impl`. ``auto`` (default)
            becomes ``xla`` for NB201 and, for DARTS, ``xla-dense`` on CPU and ``xla``
            elsewhere (docs/darts.md has the measurements).
        step_impl: ``one-program`` (the step is one compiled program) or ``staged`` (DARTS,
            host loop: the same ``(s, grad_A s)`` computed cell by cell by
            :mod:`nasi_jax.staged`, so that no program is larger than one cell; XLA:CPU ran out
            of 24 GiB compiling DARTS' full-size step as one program). ``auto`` (default):
            ``staged`` for DARTS on the host loop, else ``one-program``.

    Example:
        >>> SearchConfig().preset, SearchConfig(data="real").preset
        ('nb201-random', 'nb201-real')
        >>> cfg = SearchConfig(preset="paper", steps=400)
        >>> cfg.steps, cfg.mu, cfg.nu, cfg.batch_size, cfg.preset_overrides()
        (400, 2.0, 100.0, 64, {'steps': 400})
    """

    space: str = "nb201"
    preset: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    mu: float | None = None
    nu: float | None = None
    nu_mode: str | None = None
    tau: float | None = None
    hard: bool | None = None
    xi: float | None = None
    readout: str | None = None
    objective: str | None = None
    data: str | None = None
    channels: int | None = None
    cells_per_stage: int | None = None
    num_classes: int | None = None
    image_size: int | None = None
    init_scheme: str | None = None
    bn_mode: str | None = None
    seed_batching: str = "auto"
    loop: str = "auto"
    grad_mode: str = "fwd-rev"
    conv_impl: str = "auto"
    step_impl: str = "auto"

    def __post_init__(self):
        # Unset values come from the preset; ``readout='auto'`` means the preset's read-out.
        if self.readout == "auto":
            object.__setattr__(self, "readout", None)
        if self.preset is None or any(getattr(self, f) is None for f in presets.SEARCH_FIELDS):
            get_space(self.space)  # an unknown space is named as such
            values = presets.resolve(self.preset, self.space, self.data)
            for name, value in values.items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        if self.conv_impl == "auto" and self.space in SPACE_CONV_IMPLS:
            object.__setattr__(self, "conv_impl", darts.resolve_conv_impl("auto")
                               if self.space == "darts" else "xla")

    def preset_overrides(self) -> dict[str, Any]:
        """The search values that differ from the preset's (what explicit arguments changed)."""
        values = presets.resolve(self.preset, self.space, self.data)
        return {f: getattr(self, f) for f in presets.SEARCH_FIELDS if getattr(self, f) != values[f]}

    def preset_record(self) -> dict[str, Any]:
        """What a result file records about the preset: name, version, provenance, overrides."""
        p = presets.get_preset(self.preset)
        return {"name": p.name, "version": p.version, "summary": p.summary,
                "provenance": dict(p.provenance), "overrides": self.preset_overrides()}

    @property
    def alpha_shape(self) -> tuple[int, ...]:
        """Shape of the architecture logits: ``[E, K]`` (NB201) or ``[2, E, K]`` (DARTS)."""
        return alpha_shape(self.space)

    def validate(self) -> "SearchConfig":
        """Raise ValueError with a fix for every impossible setting; return self."""
        get_space(self.space)
        presets.get_preset(self.preset)
        if self.space not in SPACE_READOUTS:
            raise ValueError(f"search supports the spaces {sorted(SPACE_READOUTS)}, got {self.space!r}")
        for name in ("steps", "batch_size", "channels", "cells_per_stage", "num_classes", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        checks = [
            (self.steps > 0, f"steps must be a positive integer, got {self.steps!r}"),
            (self.batch_size > 0, f"batch_size must be a positive integer, got {self.batch_size!r}"),
            (np.isfinite(self.mu) and self.mu >= 0, f"mu must be a finite number >= 0, got {self.mu!r}"),
            (np.isfinite(self.nu) and self.nu > 0, f"nu must be a finite number > 0, got {self.nu!r}"),
            (self.nu_mode in objective.NU_MODES, f"nu_mode must be one of {objective.NU_MODES}, got {self.nu_mode!r}"),
            (np.isfinite(self.tau) and self.tau > 0, f"tau must be > 0, got {self.tau!r}"),
            (np.isfinite(self.xi) and self.xi > 0, f"xi must be > 0, got {self.xi!r}"),
            (self.readout in SPACE_READOUTS[self.space],
             f"readout for space {self.space!r} must be one of {SPACE_READOUTS[self.space]} "
             f"(or 'auto'), got {self.readout!r}"),
            (self.data in data_lib.DATA_MODES, f"data must be one of {data_lib.DATA_MODES}, got {self.data!r}"),
            (self.objective in presets.OBJECTIVES,
             f"objective must be one of {presets.OBJECTIVES}, got {self.objective!r}"),
            (isinstance(self.hard, (bool, np.bool_)), f"hard must be True or False, got {self.hard!r}"),
            (self.channels > 0 and self.cells_per_stage >= 1 and self.num_classes > 1,
             f"channels must be > 0, cells_per_stage >= 1 (the searched cell must be in the "
             f"network) and num_classes > 1; got {self.channels}, {self.cells_per_stage}, "
             f"{self.num_classes}"),
            (self.image_size >= 4 and self.image_size % 4 == 0,
             f"image_size must be a multiple of 4 (two stride-2 reductions), got {self.image_size}"),
            (self.init_scheme in ("pytorch", "flax"), f"init_scheme must be 'pytorch' or 'flax', got {self.init_scheme!r}"),
            (self.bn_mode in BN_MODES, f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}"),
            (self.loop in LOOPS, f"loop must be one of {LOOPS}, got {self.loop!r}"),
            (self.grad_mode in GRAD_MODES, f"grad_mode must be one of {GRAD_MODES}, got {self.grad_mode!r}"),
            (self.conv_impl in SPACE_CONV_IMPLS[self.space],
             f"conv_impl for space {self.space!r} must be one of {SPACE_CONV_IMPLS[self.space]} "
             f"(or 'auto'), got {self.conv_impl!r}"),
            (self.step_impl in STEP_IMPLS, f"step_impl must be one of {STEP_IMPLS}, got {self.step_impl!r}"),
            (self.step_impl != "staged" or (self.space == "darts" and self.loop != "scan"
                                            and self.seed_batching != "vmap" and self.bn_mode == "train"),
             "step_impl='staged' is for space='darts' on the host loop (loop 'host' or 'auto' on CPU), "
             "with seed_batching other than 'vmap' and bn_mode='train'"),
            (self.conv_impl != "loop-safe" or self.grad_mode == "rev-rev",
             "conv_impl='loop-safe' defines reverse-mode derivatives only: use grad_mode='rev-rev'"),
            (self.seed_batching in SEED_BATCHING, f"seed_batching must be one of {SEED_BATCHING}, got {self.seed_batching!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if self.data == "real" and self.num_classes != data_lib.NUM_CLASSES:
            raise ValueError(f"data='real' uses CIFAR-10 labels: num_classes must be "
                             f"{data_lib.NUM_CLASSES}, got {self.num_classes}")
        if self.data != "random" and self.image_size != data_lib.IMAGE_SHAPE[0]:
            raise ValueError(f"CIFAR-10 images are {data_lib.IMAGE_SHAPE[0]}x{data_lib.IMAGE_SHAPE[0]}; "
                             f"image_size must be {data_lib.IMAGE_SHAPE[0]} with data={self.data!r}")
        return self


# --------------------------------------------------------------------------- eq. 18

class Eq18State(NamedTuple):
    """``total = sum_t G_t / max_{i<=t} ||G_i||``, ``max_norm``, ``count`` (a pytree)."""

    total: jax.Array
    max_norm: jax.Array
    count: jax.Array


def eq18_init(alpha: jax.Array) -> Eq18State:
    """Empty accumulator shaped like ``alpha``."""
    return Eq18State(jnp.zeros_like(alpha), jnp.zeros((), alpha.dtype), jnp.zeros((), jnp.int32))


def eq18_update(state: Eq18State, g: jax.Array) -> Eq18State:
    """Add ``G_t / max(||G_1||, ..., ||G_t||)`` (a zero gradient adds nothing)."""
    m = jnp.maximum(state.max_norm, jnp.linalg.norm(g))
    scaled = jnp.where(m > 0, g / jnp.where(m > 0, m, 1.0), jnp.zeros_like(g))
    return Eq18State(state.total + scaled, m, state.count + 1)


def eq18_delta(state: Eq18State, xi: float = 1.0) -> jax.Array:
    """``Delta* = (xi / T) * total`` (eq. 18)."""
    return xi * state.total / jnp.maximum(state.count, 1).astype(state.total.dtype)


# --------------------------------------------------------------------------- one seed

class StepMetrics(NamedTuple):
    """Per-step record. Shapes for NB201; DARTS adds a leading cell axis of 2 to
    ``sampled`` (``[2, E]``) and ``G`` (``[2, E, K]``)."""

    s: jax.Array          # trace estimate s(A_t)
    R: jax.Array          # penalised objective
    nu: jax.Array         # ceiling used at step t
    grad_norm: jax.Array  # ||G_t||
    sampled: jax.Array    # [E] op indices of A_t
    G: jax.Array          # [E, K] the gradient G_t itself (what :func:`replay` re-weights)


class SeedOutput(NamedTuple):
    alpha_star: jax.Array  # alpha_shape ([E, K] or [2, E, K])
    ops: jax.Array         # alpha_shape[:-1]
    history: StepMetrics   # each [T] (sampled: [T, *alpha_shape[:-1]])


def alpha_shape(space: str) -> tuple[int, ...]:
    """Architecture logits of a space: NB201 ``[6, 5]``; DARTS ``[2, 14, 8]`` (normal, reduce)."""
    if space == "darts":
        return (2, darts.NUM_EDGES, darts.NUM_OPS)
    if space == "nb201":
        return (nb201.NUM_EDGES, nb201.NUM_OPS)
    raise ValueError(f"search supports the spaces {sorted(SPACE_READOUTS)}, got {space!r}")


def make_network(cfg: SearchConfig):
    """The supernet of ``cfg`` (a Flax module taking ``arch_weights`` of ``cfg.alpha_shape``)."""
    if cfg.space == "darts":
        return darts.DartsSupernet(cfg.channels, 3 * cfg.cells_per_stage + 2, cfg.num_classes,
                                   init_scheme=cfg.init_scheme, conv_impl=cfg.conv_impl)
    return nb201.NB201Network(cfg.channels, cfg.cells_per_stage, cfg.num_classes,
                              init_scheme=cfg.init_scheme, conv_impl=cfg.conv_impl)


def make_apply(net, batch_stats, bn_mode: str) -> Callable:
    """Pure ``f(params, x, arch_weights) -> logits`` with BatchNorm in ``bn_mode``."""
    def f(params, x, arch_weights):
        variables = {"params": params, "batch_stats": batch_stats}
        if bn_mode == "train":
            logits, _ = net.apply(variables, x, arch_weights, train=True, mutable=["batch_stats"])
            return logits
        return net.apply(variables, x, arch_weights, train=False)
    return f


_progress_hook: list[Callable[[int, int], None] | None] = [None]


def _report(seed_index, step):
    hook = _progress_hook[0]
    if hook is not None:
        hook(int(seed_index), int(step))


def objective_and_grad(f: Callable, params, alpha: jax.Array, g: jax.Array, x: jax.Array,
                       y: jax.Array, nu: jax.Array, cfg: SearchConfig):
    """``(R, s, G)`` with ``G = grad_alpha R(A(alpha, g))`` (one step of Algorithm 1).

    ``f(params, x, arch_weights) -> logits``. With ``cfg.grad_mode == 'fwd-rev'`` (default)
    the second-order term uses ``grad_A s = 2 grad_A <grad_theta L(theta, A), v>`` at
    ``v = grad_theta L`` held fixed: a reverse pass over a forward-mode directional
    derivative (one JVP in theta), cheaper than differentiating the backward pass.
    ``'rev-rev'`` is the literal ``jax.grad`` of a function that calls ``jax.grad``; both
    give the same G (tested).
    """
    sample = lambda a: relax.relaxed_sample(a, g, tau=cfg.tau, hard=cfg.hard)
    loss = lambda p, A: ntk.cross_entropy(f(p, x, A), y)
    if cfg.grad_mode == "rev-rev":
        def obj(a):
            s = ntk.tree_sq_norm(jax.grad(loss)(params, sample(a)))
            return objective.penalised(s, cfg.mu, nu), s
        (R, s), G = jax.value_and_grad(obj, has_aux=True)(alpha)
        return R, s, G
    A, sample_vjp = jax.vjp(sample, alpha)
    v = jax.grad(loss)(params, A)
    s = ntk.tree_sq_norm(v)
    directional = lambda A_: jax.jvp(lambda p: loss(p, A_), (params,), (v,))[1]
    ds_dA = 2.0 * jax.grad(directional)(A)
    (G,) = sample_vjp(objective.dR_ds(s, cfg.mu, nu) * ds_dA)  # d/ds [s - mu * max(0, s - nu)]
    return objective.penalised(s, cfg.mu, nu), s, G


class SeedState(NamedTuple):
    """Per-seed search state (a pytree): theta_0, BN statistics, keys and accumulators."""

    params: Any
    batch_stats: Any
    loop_key: jax.Array
    eq18: Eq18State
    nu: objective.NuState


def init_state(cfg: SearchConfig, key: jax.Array) -> SeedState:
    """Initialise ``theta_0`` of the supernet from ``key`` (split into init / loop keys)."""
    shape = alpha_shape(cfg.space)
    init_key, loop_key = jax.random.split(key)
    net = make_network(cfg)
    x0 = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
    variables = net.init(init_key, x0, jnp.zeros(shape), train=False)
    return SeedState(variables["params"], variables["batch_stats"], loop_key,
                     eq18_init(jnp.zeros(shape, jnp.float32)), objective.nu_init(cfg.nu))


def search_step(cfg: SearchConfig, state: SeedState, t: jax.Array, images, labels
                ) -> tuple[SeedState, StepMetrics]:
    """Step ``t`` of Algorithm 1 for one seed: sample D_t and g_t, take G_t at alpha_0 = 0."""
    TRACE_COUNT["search"] += 1
    shape = alpha_shape(cfg.space)
    f = make_apply(make_network(cfg), state.batch_stats, cfg.bn_mode)
    alpha0 = jnp.zeros(shape, jnp.float32)
    data_key, gumbel_key = jax.random.split(jax.random.fold_in(state.loop_key, t))
    x, y = data_lib.sample_batch(data_key, cfg.batch_size, mode=cfg.data, images=images,
                                 labels=labels, num_classes=cfg.num_classes,
                                 image_shape=(cfg.image_size, cfg.image_size, 3))
    g = relax.gumbel_noise(gumbel_key, shape)
    nu = objective.current_nu(state.nu, cfg.nu_mode)
    R, s, G = objective_and_grad(f, state.params, alpha0, g, x, y, nu, cfg)
    metrics = StepMetrics(s, R, nu, jnp.linalg.norm(G), jnp.argmax(alpha0 + g, axis=-1), G)
    state = state._replace(eq18=eq18_update(state.eq18, G), nu=objective.nu_update(state.nu, s))
    return state, metrics


def finalize(cfg: SearchConfig, state: SeedState) -> tuple[jax.Array, jax.Array]:
    """``alpha* = alpha_0 + Delta*`` (eq. 18) and the selected cell's op indices (:func:`read_out`)."""
    alpha_star = eq18_delta(state.eq18, cfg.xi)
    return alpha_star, read_out(alpha_star, cfg.readout)


def read_out(alpha_star: jax.Array, readout: str = "argmax") -> jax.Array:
    """Op indices of the cell selected by ``alpha*``.

    * ``argmax``: ``alpha* [..., E, K] -> [..., E]``, the per-edge argmax over all ops;
    * ``argmax-no-none``: the same over all ops but ``none`` (op 0);
    * ``darts``: ``alpha* [..., 2, 14, 8] -> [..., 2, 14]``, DARTS' genotype read-out on the
      raw ``alpha*`` (:func:`nasi_jax.spaces.darts.read_out_ops`): per edge the best op other
      than ``none``, per node the 2 incoming edges with the largest such ``alpha*``; the
      other edges get ``none`` (0).
    """
    if readout == "argmax":
        return jnp.argmax(alpha_star, axis=-1)
    if readout == "argmax-no-none":
        return 1 + jnp.argmax(alpha_star[..., 1:], axis=-1)
    if readout == "darts":
        return darts.read_out_ops(alpha_star)
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")


def arch_str(space: str, ops) -> str:
    """Text form of a selected cell: NB201's arch string, or DARTS' genotype text."""
    if space == "darts":
        return darts.genotype_to_str(darts.ops_to_genotype(ops))
    return nb201.arch_to_str(ops)


def _search_one(cfg: SearchConfig, key: jax.Array, seed_index: jax.Array, images, labels
                ) -> SeedOutput:
    """All T steps of one seed in one ``lax.scan`` (the accelerator path)."""
    def body(state, t):
        state, metrics = search_step(cfg, state, t, images, labels)
        jax.debug.callback(_report, seed_index, t)
        return state, metrics

    state, history = jax.lax.scan(body, init_state(cfg, key), jnp.arange(cfg.steps))
    return SeedOutput(*finalize(cfg, state), history)


def resolve_loop(cfg: SearchConfig) -> str:
    """``auto`` -> ``host`` on CPU, ``scan`` elsewhere."""
    return cfg.loop if cfg.loop != "auto" else ("host" if jax.default_backend() == "cpu" else "scan")


# Chosen by `nasi bench` measurements (README, Performance). CPU (2 cores): threads beat the
# loop over seeds, vmap was many times slower. Other backends are not measured yet: 'map' runs
# the seeds one after another in the same program, which is never slower than a loop over
# seeds; run `nasi bench` there and pass seed_batching='vmap' if it wins.


def resolve_step_impl(cfg: SearchConfig) -> str:
    """``auto`` -> ``staged`` for DARTS on the host loop (with a batching it supports), else
    ``one-program``."""
    if cfg.step_impl != "auto":
        return cfg.step_impl
    host = resolve_loop(cfg) == "host"
    ok = cfg.space == "darts" and host and cfg.seed_batching != "vmap" and cfg.bn_mode == "train"
    return "staged" if ok else "one-program"


def resolve_seed_batching(cfg: SearchConfig, loop: str | None = None) -> str:
    """The seed strategy that ``seed_batching='auto'`` means on this backend and loop."""
    loop = loop or resolve_loop(cfg)
    if cfg.seed_batching != "auto":
        if cfg.seed_batching == "threads" and loop != "host":
            raise ValueError("seed_batching='threads' needs the host loop (loop='host')")
        return cfg.seed_batching
    return "threads" if loop == "host" and jax.default_backend() == "cpu" else "map"


def _search_many(cfg: SearchConfig, keys: jax.Array, images, labels, idx=None) -> SeedOutput:
    if idx is None:
        idx = jnp.arange(keys.shape[0])
    if cfg.seed_batching == "vmap":
        return jax.vmap(lambda k, i: _search_one(cfg, k, i, images, labels))(keys, idx)
    return jax.lax.map(lambda ki: _search_one(cfg, ki[0], ki[1], images, labels), (keys, idx))


search_fn = jax.jit(_search_many, static_argnums=0)


def _sharded_search_fn(cfg: SearchConfig, devices):
    """``_search_many`` with the seed axis sharded over ``devices`` (a 1-D mesh 'seeds')."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    mesh = Mesh(np.asarray(devices), ("seeds",))
    body = jax.shard_map(lambda k, im, lb, i: _search_many(cfg, k, im, lb, i), mesh=mesh,
                         in_specs=(P("seeds"), P(), P(), P("seeds")), out_specs=P("seeds"),
                         check_vma=False)
    return jax.jit(body), NamedSharding(mesh, P("seeds"))
"""``search_fn(cfg, keys [S, 2], images, labels) -> SeedOutput``: the whole search, one program."""


_COMPILED: dict = {}


def clear_cache() -> None:
    """Forget the compiled searches kept by :func:`run_search` (keyed by config and shapes)."""
    _COMPILED.clear()


def _staged_fns(cfg: SearchConfig):
    """``step(state, t, images, labels)`` of the host loop with :mod:`nasi_jax.staged`: the
    same computation as :func:`search_step`, with ``(s, grad_A s)`` taken stage by stage."""
    from nasi_jax import staged
    shape = alpha_shape(cfg.space)
    net = make_network(cfg)

    @jax.jit
    def pre(state, t, images, labels):
        data_key, gumbel_key = jax.random.split(jax.random.fold_in(state.loop_key, t))
        x, y = data_lib.sample_batch(data_key, cfg.batch_size, mode=cfg.data, images=images,
                                     labels=labels, num_classes=cfg.num_classes,
                                     image_shape=(cfg.image_size, cfg.image_size, 3))
        g = relax.gumbel_noise(gumbel_key, shape)
        A = relax.relaxed_sample(jnp.zeros(shape, jnp.float32), g, tau=cfg.tau, hard=cfg.hard)
        return x, y, g, A

    @jax.jit
    def post(state, g, s, ds_dA):
        alpha0 = jnp.zeros(shape, jnp.float32)
        nu = objective.current_nu(state.nu, cfg.nu_mode)
        _, sample_vjp = jax.vjp(lambda a: relax.relaxed_sample(a, g, tau=cfg.tau, hard=cfg.hard), alpha0)
        (G,) = sample_vjp(objective.dR_ds(s, cfg.mu, nu) * ds_dA)
        metrics = StepMetrics(s, objective.penalised(s, cfg.mu, nu), nu, jnp.linalg.norm(G),
                              jnp.argmax(alpha0 + g, axis=-1), G)
        return state._replace(eq18=eq18_update(state.eq18, G), nu=objective.nu_update(state.nu, s)), metrics

    def step(state, t, images, labels):
        x, y, g, A = pre(state, t, images, labels)
        s, ds_dA = staged.trace_and_grad(net, state.params, x, y, A)
        return post(state, g, s, ds_dA)

    return step


def _host_fns(cfg: SearchConfig):
    """Compiled ``init``, ``step`` and ``finalize`` for the host-driven loop."""
    if cfg.seed_batching == "vmap":
        init = jax.jit(jax.vmap(lambda k: init_state(cfg, k)))
        step = jax.jit(jax.vmap(lambda st, t, im, lb: search_step(cfg, st, t, im, lb),
                                in_axes=(0, None, None, None)))
        fin = jax.jit(jax.vmap(lambda st: finalize(cfg, st)))
    else:
        init = jax.jit(lambda k: init_state(cfg, k))
        step = jax.jit(lambda st, t, im, lb: search_step(cfg, st, t, im, lb))
        fin = jax.jit(lambda st: finalize(cfg, st))
    return init, step, fin


# --------------------------------------------------------------------------- driver

@dataclasses.dataclass
class SearchResult:
    """Outcome of :func:`run_search` (numpy arrays, leading axis = seeds)."""

    config: SearchConfig
    seeds: list[int]
    alpha_star: np.ndarray       # [S, E, K]
    ops: np.ndarray              # [S, E]
    arch_strs: list[str]
    history: dict[str, np.ndarray]  # s, R, nu, grad_norm: [S, T]; sampled: [S, T, E]; G: [S, T, E, K]
    compile_time_s: float   # 0 when a compiled search was reused
    run_time_s: float
    loop: str = "scan"      # the loop strategy used (``scan`` or ``host``)


class _Progress:
    """One-line progress on stderr: steps done over all seeds, rate and ETA."""

    def __init__(self, total: int, stream=sys.stderr, every_s: float = 1.0):
        self.total, self.stream, self.every_s = total, stream, every_s
        self.done, self.t0, self.last = 0, time.perf_counter(), 0.0

    def start(self):
        self.t0 = time.perf_counter()

    def __call__(self, seed_index: int, step: int):
        self.done += 1
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            el = now - self.t0
            rate = self.done / el if el > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            self.stream.write(f"\r[nasi] seed #{seed_index} step {step + 1}: {self.done}/{self.total} "
                              f"steps, {rate:.2f} steps/s, elapsed {el:.0f}s, ETA {eta:.0f}s   ")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def run_search(cfg: SearchConfig, seeds: Sequence[int], *, images=None, labels=None,
               progress: bool | Callable[[int, int], None] = False,
               devices: Sequence | None = None,
               memory_budget: int | str | None = None) -> SearchResult:
    """Run NASI for every seed in one compiled call.

    Args:
        cfg: the search configuration (validated here; ``loop`` and ``seed_batching``
            ``auto`` are resolved for the backend and the result's ``config`` holds what ran).
        seeds: integer seeds; seed ``s`` uses ``jax.random.PRNGKey(s)``.
        images, labels: the data pool for ``data='real'``/``'random-labels'``
            (from :func:`nasi_jax.data.load_data_for_mode`); ignored for ``random``.
        progress: True for a progress line on stderr, or a callable ``(seed_index, step)``.
        devices: shard the seeds over these devices (``jax.shard_map`` over a 1-D mesh;
            the scan loop; seeds padded to a multiple of the device count). Default: one
            device. Results equal the one-device results.
        memory_budget: bytes (or a string such as ``'2GiB'``) the compiled search may use
            on a device, by XLA's estimate of the compiled program
            (:func:`nasi_jax.memory.compiled_peak_bytes`); over it, a
            :class:`nasi_jax.memory.MemoryBudgetError` is raised after compiling and
            before anything runs.

    Returns:
        :class:`SearchResult`. Raises :class:`NonFiniteScoreError` if any trace estimate
        or gradient is not finite.
    """
    cfg.validate()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    check_seeds(seeds)
    devices = list(devices) if devices is not None else []
    if len(devices) > 1:
        if cfg.loop == "host":
            raise ValueError("several devices need loop='scan' (or 'auto'): the host loop runs on one device")
        cfg = dataclasses.replace(cfg, loop="scan")
    loop = resolve_loop(cfg)
    cfg = dataclasses.replace(cfg, loop=loop, seed_batching=resolve_seed_batching(cfg, loop))
    cfg = dataclasses.replace(cfg, step_impl=resolve_step_impl(cfg)).validate()
    if cfg.data == "random":
        images = labels = None
    elif images is None or (labels is None and cfg.data == "real"):
        raise ValueError(f"data={cfg.data!r} needs images{' and labels' if cfg.data == 'real' else ''}; "
                         "load them with nasi_jax.data.load_data_for_mode(mode, data_dir)")
    else:
        images = jnp.asarray(images)
        labels = None if cfg.data == "random-labels" else jnp.asarray(labels)
        if cfg.batch_size > images.shape[0]:
            raise ValueError(f"batch_size {cfg.batch_size} exceeds the {images.shape[0]} examples available")
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])

    hook = progress if callable(progress) else (_Progress(len(seeds) * cfg.steps) if progress else None)
    if loop == "scan":
        out, compile_time, run_time = _run_scan(cfg, keys, images, labels, hook, devices,
                                                memory_budget)
        _check_finite(out.history.s, out.history.grad_norm, seeds, 0)
    else:  # checks every step as it goes
        out, compile_time, run_time = _run_host(cfg, keys, images, labels, hook, seeds,
                                                memory_budget)

    hist = {k: np.asarray(v) for k, v in out.history._asdict().items()}
    ops = np.asarray(out.ops)
    return SearchResult(cfg, seeds, np.asarray(out.alpha_star), ops,
                        [arch_str(cfg.space, o) for o in ops], hist, compile_time, run_time, loop)


@functools.partial(jax.jit, static_argnames=("nu_mode",))
def _replay(s, G, mu, nu, xi, nu_mode):  # alpha* [S, *alpha_shape]
    def one(s_seq, G_seq):
        def body(carry, sg):
            acc, nu_state = carry
            s_t, G_t = sg
            factor = objective.dR_ds(s_t, mu, objective.current_nu(nu_state, nu_mode))
            return (eq18_update(acc, factor * G_t), objective.nu_update(nu_state, s_t)), None
        (acc, _), _ = jax.lax.scan(body, (eq18_init(G_seq[0]), objective.nu_init(nu)), (s_seq, G_seq))
        return eq18_delta(acc, xi)
    return jax.vmap(one)(s, G)


def replay(result: SearchResult, *, mu: float, nu: float, nu_mode: str = "fixed",
           steps: int | None = None, xi: float | None = None, readout: str | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha* [S, *alpha_shape], ops [S, *alpha_shape[:-1]])`` of the search with other ``mu``, ``nu``, ``nu_mode``
    or a shorter ``T``, computed from the history of a search run with ``mu = 0``.

    Because every ``G_t`` is taken at ``alpha_0`` and ``R`` depends on the architecture only
    through ``s``, ``G_t(mu, nu) = (1 - mu [s(A_t) > nu_t]) grad_alpha s(A_t)``; with
    ``mu = 0`` the history's ``G`` is ``grad_alpha s(A_t)``, and ``nu_t`` (fixed, or the
    running mean of NASI-ADA) depends only on ``nu`` and the ``s`` history. The data batch,
    the Gumbel sample and ``s`` of step ``t`` do not depend on ``mu``, ``nu`` or ``T`` (step
    keys are ``fold_in(loop_key, t)``), so a replay equals a fresh search with those
    settings (tested: identical cells; ``alpha*`` equal to float rounding), and the first
    ``steps`` of a ``T``-step run are the ``steps``-step search. One ``mu = 0`` run thus
    serves a whole grid of ``(mu, nu)`` and both NASI-FIX and NASI-ADA. ``readout`` and
    ``xi`` default to the run's; ``readout`` picks how the cell is read from ``alpha*``
    (:func:`read_out`).

    Example:
        >>> cfg = SearchConfig(steps=3, batch_size=4, channels=4, cells_per_stage=1,
        ...                    image_size=8, mu=0.0)
        >>> res = run_search(cfg, seeds=[0])
        >>> alpha, ops = replay(res, mu=2.0, nu=float(res.history["s"].mean()), steps=2)
        >>> alpha.shape, ops.shape
        ((1, 6, 5), (1, 6))
    """
    if result.config.mu != 0:
        raise ValueError(f"replay needs a search run with mu=0 (its G_t are grad_alpha s); this "
                         f"one used mu={result.config.mu}")
    T = result.config.steps if steps is None else int(steps)
    if not 1 <= T <= result.config.steps:
        raise ValueError(f"steps must be in 1..{result.config.steps} (the run's T), got {steps}")
    if nu_mode not in objective.NU_MODES:
        raise ValueError(f"nu_mode must be one of {objective.NU_MODES}, got {nu_mode!r}")
    if not (np.isfinite(mu) and mu >= 0 and np.isfinite(nu) and nu > 0):
        raise ValueError(f"need mu >= 0 and nu > 0 (finite); got mu={mu}, nu={nu}")
    if "G" not in result.history:
        raise ValueError("this search history has no G (recorded since replay exists); run the search again")
    s = jnp.asarray(result.history["s"][:, :T], jnp.float32)
    G = jnp.asarray(result.history["G"][:, :T], jnp.float32)
    readout = readout or result.config.readout
    if readout not in SPACE_READOUTS[result.config.space]:
        raise ValueError(f"readout for space {result.config.space!r} must be one of "
                         f"{SPACE_READOUTS[result.config.space]}, got {readout!r}")
    xi = result.config.xi if xi is None else xi
    alpha = _replay(s, G, float(mu), float(nu), float(xi), nu_mode)
    return np.asarray(alpha), np.asarray(read_out(alpha, readout))


def check_seeds(seeds: Sequence[int]) -> None:
    """Seeds must lie in [0, 2**32): ``PRNGKey(s)`` wraps modulo 2**32, so distinct seeds
    outside that range could share a key."""
    bad = [s for s in seeds if not 0 <= s < 2 ** 32]
    if bad:
        raise ValueError(f"seeds must lie in [0, 2**32); got {bad[:3]}{' ...' if len(bad) > 3 else ''}")


def _check_finite(s, grad_norm, seeds, t0):
    """Raise NonFiniteScoreError naming the first seed/step whose s or ||G|| is not finite."""
    for name, v in (("trace estimate s", s), ("gradient norm ||G||", grad_norm)):
        v = np.asarray(v).reshape(len(seeds), -1)
        bad = ~np.isfinite(v)
        if bad.any():
            si, ti = map(int, np.argwhere(bad)[0])
            raise NonFiniteScoreError(
                f"non-finite {name} ({v[si, ti]}) at seed {seeds[si]}, step {t0 + ti}: the network "
                f"produced NaN/inf at initialisation. Check the inputs (real images must be "
                f"normalised), try --init flax or a smaller --batch-size.")


def _signature(cfg, keys, images, labels):
    return (cfg, keys.shape, None if images is None else (images.shape, str(images.dtype)),
            None if labels is None else (labels.shape, str(labels.dtype)))


_MEMORY_HINT = "lower the batch size, the channels or (with vmap) the number of seeds"


def _run_scan(cfg, keys, images, labels, hook, devices=(), memory_budget=None):
    t0 = time.perf_counter()
    S = keys.shape[0]
    D = len(devices) if len(devices) > 1 else 1
    pad = (-S) % D
    if pad:  # repeat the last seed; its copies are dropped below
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])
    sig = ("scan", tuple(str(d) for d in devices) if D > 1 else None) + _signature(cfg, keys, images, labels)
    compiled = _COMPILED.get(sig)
    idx = jnp.arange(keys.shape[0])
    if D > 1:
        fn, sharding = _sharded_search_fn(cfg, devices)
        keys, idx = jax.device_put(keys, sharding), jax.device_put(idx, sharding)
        if compiled is None:
            compiled = _COMPILED[sig] = fn.lower(keys, images, labels, idx).compile()
        args = (keys, images, labels, idx)
    else:
        if compiled is None:
            compiled = _COMPILED[sig] = search_fn.lower(cfg, keys, images, labels).compile()
        args = (keys, images, labels)
    compile_time = time.perf_counter() - t0
    if memory_budget is not None:
        memory.check_fits(compiled, memory_budget, "the search", _MEMORY_HINT)
    if hasattr(hook, "start"):
        hook.start()
    _progress_hook[0] = hook
    try:
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        jax.effects_barrier()
        run_time = time.perf_counter() - t0
    finally:
        _progress_hook[0] = None
    if D > 1 and not all(a.is_fully_addressable for a in jax.tree_util.tree_leaves(out)):
        from jax.experimental import multihost_utils  # several hosts: every process gets all seeds
        out = multihost_utils.process_allgather(out, tiled=True)
    if pad:
        out = jax.tree_util.tree_map(lambda a: a[:S], out)
    return out, compile_time, run_time


def compiled_host_step(cfg: SearchConfig, num_seeds: int = 1, images=None, labels=None):
    """Compiled ``(init, step, finalize)`` of the host loop, cached.

    ``step(state, t, images, labels) -> (state, StepMetrics)`` is one step of Algorithm 1 for
    one seed (``num_seeds`` seeds batched when ``cfg.seed_batching == 'vmap'``). The cache
    key leaves out what the step does not depend on (``steps``; ``map`` vs ``threads``; the
    preset's name), so runs that differ only there share one compilation.
    """
    batched = cfg.seed_batching == "vmap"
    # (the preset's name is left out too: only the values it resolved to matter)
    key_cfg = dataclasses.replace(cfg, steps=1, seed_batching="vmap" if batched else "map", loop="host",
                                  preset=None)
    k = jnp.zeros((num_seeds if batched else 1, 2), jnp.uint32)
    sig = ("host",) + _signature(key_cfg, k, images, labels)
    fns = _COMPILED.get(sig)
    if fns is None:
        init, step, fin = _host_fns(cfg)
        k = k if batched else k[0]
        init_c = init.lower(k).compile()
        st = jax.eval_shape(init, k)
        t = jnp.zeros((), jnp.int32)
        if resolve_step_impl(cfg) == "staged":  # compiled stage by stage on first use
            step_c = _staged_fns(cfg)
        else:
            step_c = step.lower(st, t, images, labels).compile()
        fns = _COMPILED[sig] = (init_c, step_c, fin.lower(st).compile())
    return fns


def _run_host(cfg, keys, images, labels, hook, seeds, memory_budget=None):
    """Python loop over steps (and, with ``seed_batching='map'``, seeds) of compiled steps."""
    batched = cfg.seed_batching == "vmap"
    t0 = time.perf_counter()
    init_c, step_c, fin_c = compiled_host_step(cfg, len(keys), images, labels)
    if memory_budget is not None:
        if not hasattr(step_c, "memory_analysis"):
            raise ValueError("memory_budget needs a step compiled as one program; pass "
                             "step_impl='one-program' (the staged DARTS step compiles cell by cell)")
        memory.check_fits(step_c, memory_budget, "the search step", _MEMORY_HINT)
    compile_time = time.perf_counter() - t0
    if hasattr(hook, "start"):
        hook.start()

    t0 = time.perf_counter()
    groups = [(list(range(len(keys))), keys)] if batched else [([i], keys[i]) for i in range(len(keys))]
    lock = threading.Lock()

    def run_group(group):
        idx, k = group
        state, hist = init_c(k), []
        for t in range(cfg.steps):
            state, metrics = step_c(state, jnp.asarray(t, jnp.int32), images, labels)
            metrics = jax.tree_util.tree_map(np.asarray, metrics)
            _check_finite(metrics.s, metrics.grad_norm, [seeds[i] for i in idx], t)  # fail early
            hist.append(metrics)
            if hook is not None:
                with lock:
                    for i in idx:
                        hook(i, t)
        alpha_star, ops = fin_c(state)
        history = StepMetrics(*[np.stack(field, axis=1 if batched else 0) for field in zip(*hist)])
        return SeedOutput(np.asarray(alpha_star), np.asarray(ops), history)

    if cfg.seed_batching == "threads" and len(groups) > 1:
        with ThreadPoolExecutor(_SEED_THREADS) as ex:
            futures = [ex.submit(run_group, g) for g in groups]
            try:
                outs = [f.result() for f in futures]
            finally:
                for f in futures:
                    f.cancel()
    else:
        outs = [run_group(g) for g in groups]
    if batched:
        out = outs[0]
    else:
        out = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *outs)
    return out, compile_time, time.perf_counter() - t0
