"""Algorithm 1 of NASI for one seed, as pure functions: init, step, finalize.

For each seed: one initialisation ``theta_0`` of the supernet, logits ``alpha_0 = 0``
(``alpha_shape``, e.g. ``[E, K]`` edges x ops) and, for ``t = 1 .. T``::

    D_t ~ batch (b examples, per the data mode),   g_t ~ Gumbel(0, 1)^{alpha_shape}
    A_t = A(alpha_0, g_t)                         (Gumbel-softmax, hard straight-through)
    G_t = grad_alpha R(A_t) at alpha_0,   R = s - mu * max(0, s - nu_t)        (13)

where ``s = ||grad_theta mean_b l||^2`` (eq. 12) at ``theta_0`` — so ``G_t`` is a
second-order gradient through the inner ``grad_theta`` (:func:`objective_and_grad`). Then
(eq. 18, :func:`eq18_update`)::

    Delta* = (xi / T) sum_t G_t / max(||G_1||, ..., ||G_t||),   alpha* = alpha_0 + Delta*

and the selected cell is the space's read-out of ``alpha*``. ``alpha`` is not updated inside
the loop: every ``G_t`` is taken at ``alpha_0``. Keys: seed ``s`` uses ``PRNGKey(s)`` split
into (init, loop); step ``t`` uses ``fold_in(loop, t)``.

Example (one step of a tiny NB201 supernet):
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.search import SearchConfig, Execution
    >>> cfg = SearchConfig(steps=1, batch_size=2, channels=2, cells_per_stage=1, image_size=8)
    >>> ex = Execution().resolve(cfg, backend="cpu")
    >>> state = init_state(cfg, ex, jax.random.PRNGKey(0))
    >>> state, m = search_step(cfg, ex, state, jnp.asarray(0), None, None)
    >>> m.G.shape, bool(m.s > 0)
    ((6, 5), True)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from nasi_jax import data as data_lib
from nasi_jax.core import ntk, objective, relax
from nasi_jax.search.config import Execution, SearchConfig
from nasi_jax.spaces import get_space

__all__ = ["Knobs", "knobs_of", "Eq18State", "eq18_init", "eq18_update", "eq18_delta", "StepMetrics", "SeedOutput",
           "SeedState", "make_network", "make_apply", "objective_and_grad", "init_state",
           "search_step", "finalize", "read_out", "arch_str", "alpha_shape", "TRACE_COUNT"]

# Incremented each time the per-seed search step is traced (== compiled): tests read it.
TRACE_COUNT = {"search": 0}


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

class Knobs(NamedTuple):
    """The search values a compiled step takes as inputs rather than constants, so that one
    compilation serves every ``mu``, ``tau`` and ceiling rule (and ``nu``, which lives in the
    state): ``mu``, ``tau`` (float32 scalars) and ``adaptive`` (bool, NASI-ADA's rule)."""

    mu: jax.Array
    tau: jax.Array
    adaptive: jax.Array


def knobs_of(cfg: SearchConfig) -> Knobs:
    """The :class:`Knobs` of ``cfg``."""
    return Knobs(jnp.asarray(cfg.mu, jnp.float32), jnp.asarray(cfg.tau, jnp.float32),
                 jnp.asarray(cfg.nu_mode == "adaptive"))


class StepMetrics(NamedTuple):
    """Per-step record (``alpha_shape = [*cell, K]``)."""

    s: jax.Array          # trace estimate s(A_t)
    R: jax.Array          # penalised objective
    nu: jax.Array         # ceiling used at step t
    grad_norm: jax.Array  # ||G_t||
    sampled: jax.Array    # [*cell] op indices of A_t
    G: jax.Array          # alpha_shape: the gradient G_t itself (what replay re-weights)


class SeedOutput(NamedTuple):
    alpha_star: jax.Array  # alpha_shape
    ops: jax.Array         # alpha_shape[:-1]
    history: StepMetrics   # each [T, ...]


class SeedState(NamedTuple):
    """Per-seed search state (a pytree): theta_0, BN statistics, keys and accumulators."""

    params: Any
    batch_stats: Any
    loop_key: jax.Array
    eq18: Eq18State
    nu: objective.NuState


def alpha_shape(space: str) -> tuple[int, ...]:
    """Architecture logits of a space: NB201 ``[6, 5]``; DARTS ``[2, 14, 8]`` (normal, reduce)."""
    return get_space(space).alpha_shape


def make_network(cfg: SearchConfig, execution: Execution | None = None):
    """The supernet of ``cfg`` (a Flax module taking ``arch_weights`` of ``cfg.alpha_shape``),
    with the convolutions of ``execution`` (default: resolved for this backend)."""
    execution = execution or Execution().resolve(cfg)
    return get_space(cfg.space).supernet(channels=cfg.channels, cells_per_stage=cfg.cells_per_stage,
                                         num_classes=cfg.num_classes, init_scheme=cfg.init_scheme,
                                         conv_impl=execution.conv_impl)


def make_apply(net, batch_stats, bn_mode: str) -> Callable:
    """Pure ``f(params, x, arch_weights) -> logits`` with BatchNorm in ``bn_mode``."""
    def f(params, x, arch_weights):
        variables = {"params": params, "batch_stats": batch_stats}
        if bn_mode == "train":
            logits, _ = net.apply(variables, x, arch_weights, train=True, mutable=["batch_stats"])
            return logits
        return net.apply(variables, x, arch_weights, train=False)
    return f


def objective_and_grad(f: Callable, params, alpha: jax.Array, g: jax.Array, x: jax.Array,
                       y: jax.Array, nu: jax.Array, cfg: SearchConfig, grad_mode: str = "fwd-rev",
                       knobs: Knobs | None = None):
    """``(R, s, G)`` with ``G = grad_alpha R(A(alpha, g))`` (one step of Algorithm 1).

    ``f(params, x, arch_weights) -> logits``. With ``grad_mode='fwd-rev'`` (default) the
    second-order term uses ``grad_A s = 2 grad_A <grad_theta L(theta, A), v>`` at
    ``v = grad_theta L`` held fixed: a reverse pass over a forward-mode directional
    derivative (one JVP in theta), cheaper than differentiating the backward pass.
    ``'rev-rev'`` is the literal ``jax.grad`` of a function that calls ``jax.grad``; both
    give the same G (tested). ``knobs`` (default: ``cfg``'s) supplies ``mu`` and ``tau``.
    """
    mu, tau = (cfg.mu, cfg.tau) if knobs is None else (knobs.mu, knobs.tau)
    sample = lambda a: relax.relaxed_sample(a, g, tau=tau, hard=cfg.hard)
    loss = lambda p, A: ntk.cross_entropy(f(p, x, A), y)
    if grad_mode == "rev-rev":
        def obj(a):
            s = ntk.tree_sq_norm(jax.grad(loss)(params, sample(a)))
            return objective.penalised(s, mu, nu), s
        (R, s), G = jax.value_and_grad(obj, has_aux=True)(alpha)
        return R, s, G
    A, sample_vjp = jax.vjp(sample, alpha)
    v = jax.grad(loss)(params, A)
    s = ntk.tree_sq_norm(v)
    directional = lambda A_: jax.jvp(lambda p: loss(p, A_), (params,), (v,))[1]
    ds_dA = 2.0 * jax.grad(directional)(A)
    (G,) = sample_vjp(objective.dR_ds(s, mu, nu) * ds_dA)  # d/ds [s - mu * max(0, s - nu)]
    return objective.penalised(s, mu, nu), s, G


def init_state(cfg: SearchConfig, execution: Execution, key: jax.Array) -> SeedState:
    """Initialise ``theta_0`` of the supernet from ``key`` (split into init / loop keys)."""
    shape = cfg.alpha_shape
    init_key, loop_key = jax.random.split(key)
    net = make_network(cfg, execution)
    x0 = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
    variables = net.init(init_key, x0, jnp.zeros(shape), train=False)
    return SeedState(variables["params"], variables["batch_stats"], loop_key,
                     eq18_init(jnp.zeros(shape, jnp.float32)), objective.nu_init(cfg.nu))


def sample_step_inputs(cfg: SearchConfig, state: SeedState, t: jax.Array, images, labels):
    """The batch ``(x, y)`` and the Gumbel noise ``g`` of step ``t`` (pure in the keys)."""
    data_key, gumbel_key = jax.random.split(jax.random.fold_in(state.loop_key, t))
    x, y = data_lib.sample_batch(data_key, cfg.batch_size, mode=cfg.data, images=images,
                                 labels=labels, num_classes=cfg.num_classes,
                                 image_shape=(cfg.image_size, cfg.image_size, 3))
    return x, y, relax.gumbel_noise(gumbel_key, cfg.alpha_shape)


def record_step(cfg: SearchConfig, state: SeedState, g, s, G, knobs: Knobs | None = None
                ) -> tuple[SeedState, StepMetrics]:
    """Fold ``G_t`` into eq. 18 and ``s_t`` into the ceiling rule; the step's metrics."""
    knobs = knobs_of(cfg) if knobs is None else knobs
    nu = objective.current_nu(state.nu, knobs.adaptive)
    metrics = StepMetrics(s, objective.penalised(s, knobs.mu, nu), nu, jnp.linalg.norm(G),
                          jnp.argmax(g, axis=-1), G)
    return state._replace(eq18=eq18_update(state.eq18, G), nu=objective.nu_update(state.nu, s)), metrics


def search_step(cfg: SearchConfig, execution: Execution, state: SeedState, t: jax.Array, images, labels,
                knobs: Knobs | None = None) -> tuple[SeedState, StepMetrics]:
    """Step ``t`` of Algorithm 1 for one seed: sample D_t and g_t, take G_t at alpha_0 = 0.
    ``knobs`` (default: ``cfg``'s values as constants) may be traced inputs."""
    TRACE_COUNT["search"] += 1
    knobs = knobs_of(cfg) if knobs is None else knobs
    f = make_apply(make_network(cfg, execution), state.batch_stats, cfg.bn_mode)
    x, y, g = sample_step_inputs(cfg, state, t, images, labels)
    nu = objective.current_nu(state.nu, knobs.adaptive)
    _, s, G = objective_and_grad(f, state.params, jnp.zeros(cfg.alpha_shape, jnp.float32), g, x, y, nu,
                                 cfg, execution.grad_mode, knobs)
    return record_step(cfg, state, g, s, G, knobs)


def read_out(alpha_star: jax.Array, readout: str = "argmax", space: str | None = None) -> jax.Array:
    """Op indices of the cell selected by ``alpha*`` under the read-out rule ``readout`` of
    ``space`` (default: the registered space that defines that rule; see each space's
    ``read_out``: ``argmax``, ``argmax-no-none`` per edge, DARTS' ``darts``)."""
    from nasi_jax import spaces
    if space is None:
        space = next((n for n in spaces.names() if readout in spaces.get_space(n).readouts), "nb201")
    return spaces.get_space(space).read_out(alpha_star, readout)


def finalize(cfg: SearchConfig, state: SeedState) -> tuple[jax.Array, jax.Array]:
    """``alpha* = alpha_0 + Delta*`` (eq. 18) and the selected cell's op indices."""
    alpha_star = eq18_delta(state.eq18, cfg.xi)
    return alpha_star, get_space(cfg.space).read_out(alpha_star, cfg.readout)


def arch_str(space: str, ops) -> str:
    """Text form of a selected cell (the space's codec)."""
    return get_space(space).to_text(ops)
