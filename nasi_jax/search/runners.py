"""Running Algorithm 1 for many seeds: one compilation per search, whatever the number of seeds.

Two loops (:class:`~nasi_jax.search.config.Execution`): on GPU/TPU the T steps run in one
``lax.scan`` and the seeds in the same program (``lax.map``, or ``vmap`` on request,
optionally sharded over devices); on CPU one compiled step is called from Python for every
seed and step (XLA:CPU convolutions are far slower inside loop bodies), the seeds one after
another or two at a time in threads, and for spaces whose step is too large to compile at
once, stage by stage (:mod:`nasi_jax.search.staged`). Every way gives the same cells.

Example:
    >>> from nasi_jax.search import SearchConfig
    >>> cfg = SearchConfig(steps=2, batch_size=4, channels=2, cells_per_stage=1, image_size=8)
    >>> res = run_search(cfg, seeds=[0, 1])
    >>> res.ops.shape, len(res.arch_strs), res.execution.loop
    ((2, 6), 2, 'host')
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import records
from nasi_jax.core import memory, relax
from nasi_jax.search.algorithm import (SeedOutput, StepMetrics, eq18_delta, finalize, init_state,
                                       knobs_of, make_network, record_step, sample_step_inputs,
                                       search_step)
from nasi_jax.search.config import Execution, NonFiniteScoreError, SearchConfig, check_seeds
from nasi_jax.spaces import get_space

__all__ = ["SearchResult", "run_search", "search_fn", "compiled_host_step", "clear_cache",
           "resolve_loop", "resolve_seed_batching", "resolve_step_impl"]

_SEED_THREADS = 2  # seeds in flight with seed_batching='threads'
_MEMORY_HINT = "lower the batch size, the channels or (with vmap) the number of seeds"


@dataclasses.dataclass
class SearchResult:
    """Outcome of :func:`run_search` (numpy arrays, leading axis = seeds)."""

    config: SearchConfig
    seeds: list[int]
    alpha_star: np.ndarray       # [S, *alpha_shape]
    ops: np.ndarray              # [S, *alpha_shape[:-1]]
    arch_strs: list[str]
    history: dict[str, np.ndarray]  # s, R, nu, grad_norm: [S, T]; sampled: [S, T, *cell]; G: [S, T, *alpha_shape]
    compile_time_s: float   # 0 when a compiled search was reused
    run_time_s: float
    execution: Execution = dataclasses.field(default_factory=Execution)  # resolved: what ran

    @property
    def loop(self) -> str:
        """The loop that ran (``scan`` or ``host``)."""
        return self.execution.loop


# --------------------------------------------------------------------------- resolution helpers

def resolve_loop(cfg: SearchConfig, execution: Execution | None = None) -> str:
    """``auto`` -> ``host`` on CPU, ``scan`` elsewhere."""
    return (execution or Execution()).resolve(cfg).loop


def resolve_seed_batching(cfg: SearchConfig, execution: Execution | None = None) -> str:
    """The seed strategy that ``seed_batching='auto'`` means on this backend and loop."""
    return (execution or Execution()).resolve(cfg).seed_batching


def resolve_step_impl(cfg: SearchConfig, execution: Execution | None = None) -> str:
    """``auto`` -> ``staged`` where the space offers it on the CPU host loop, else ``one-program``."""
    return (execution or Execution()).resolve(cfg).step_impl


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


def _signature(cfg, exe, keys, images, labels):
    return (cfg, exe, keys.shape, None if images is None else (images.shape, str(images.dtype)),
            None if labels is None else (labels.shape, str(labels.dtype)))


_COMPILED: dict = {}


def clear_cache() -> None:
    """Forget the compiled searches kept by :func:`run_search` (keyed by config and shapes)."""
    _COMPILED.clear()


# --------------------------------------------------------------------------- the scan loop

class _Reporter:
    """The progress callback of one compiled scan program (``jax.debug.callback`` calls it
    with ``(seed_index, step)``); a run sets ``hook`` while it runs."""

    def __init__(self):
        self.hook = None

    def __call__(self, seed_index, step):
        if self.hook is not None:
            self.hook(int(seed_index), int(step))


def _search_one(cfg, exe, key, seed_index, images, labels, report) -> SeedOutput:
    """All T steps of one seed in one ``lax.scan`` (the accelerator path)."""
    def body(state, t):
        state, metrics = search_step(cfg, exe, state, t, images, labels)
        jax.debug.callback(report, seed_index, t)
        return state, metrics

    state, history = jax.lax.scan(body, init_state(cfg, exe, key), jnp.arange(cfg.steps))
    return SeedOutput(*finalize(cfg, state), history)


def _search_many(cfg, exe, keys, images, labels, idx, report) -> SeedOutput:
    if exe.seed_batching == "vmap":
        return jax.vmap(lambda k, i: _search_one(cfg, exe, k, i, images, labels, report))(keys, idx)
    return jax.lax.map(lambda ki: _search_one(cfg, exe, ki[0], ki[1], images, labels, report), (keys, idx))


def search_fn(cfg: SearchConfig, exe: Execution, keys, images, labels, report=None) -> SeedOutput:
    """The whole search for keys ``[S, 2]`` as one jitted program (``exe.loop == 'scan'``)."""
    report = report or _Reporter()
    fn = jax.jit(lambda k, im, lb, i: _search_many(cfg, exe, k, im, lb, i, report))
    return fn(keys, images, labels, jnp.arange(keys.shape[0]))


def _scan_program(cfg, exe, devices, report):
    """``(jitted fn(keys, images, labels, idx), sharding or None)``."""
    body = lambda k, im, lb, i: _search_many(cfg, exe, k, im, lb, i, report)
    if len(devices) <= 1:
        return jax.jit(body), None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    mesh = Mesh(np.asarray(devices), ("seeds",))
    sharded = jax.shard_map(body, mesh=mesh, in_specs=(P("seeds"), P(), P(), P("seeds")),
                            out_specs=P("seeds"), check_vma=False)
    return jax.jit(sharded), NamedSharding(mesh, P("seeds"))


def _run_scan(cfg, exe, keys, images, labels, hook, devices=(), memory_budget=None):
    t0 = time.perf_counter()
    S = keys.shape[0]
    D = len(devices) if len(devices) > 1 else 1
    pad = (-S) % D
    if pad:  # repeat the last seed; its copies are dropped below
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])
    sig = ("scan", tuple(str(d) for d in devices) if D > 1 else None) + _signature(cfg, exe, keys, images, labels)
    idx = jnp.arange(keys.shape[0])
    if sig not in _COMPILED:
        report = _Reporter()
        fn, sharding = _scan_program(cfg, exe, devices, report)
        k, i = (keys, idx) if sharding is None else (jax.device_put(keys, sharding), jax.device_put(idx, sharding))
        _COMPILED[sig] = (fn.lower(k, images, labels, i).compile(), sharding, report)
    compiled, sharding, report = _COMPILED[sig]
    if sharding is not None:
        keys, idx = jax.device_put(keys, sharding), jax.device_put(idx, sharding)
    compile_time = time.perf_counter() - t0
    if memory_budget is not None:
        memory.check_fits(compiled, memory_budget, "the search", _MEMORY_HINT)
    if hasattr(hook, "start"):
        hook.start()
    report.hook = hook
    try:
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(keys, images, labels, idx))
        jax.effects_barrier()
        run_time = time.perf_counter() - t0
    finally:
        report.hook = None
    if D > 1 and not all(a.is_fully_addressable for a in jax.tree_util.tree_leaves(out)):
        from jax.experimental import multihost_utils  # several hosts: every process gets all seeds
        out = multihost_utils.process_allgather(out, tiled=True)
    if pad:
        out = jax.tree_util.tree_map(lambda a: a[:S], out)
    return out, compile_time, run_time


# --------------------------------------------------------------------------- the host loop

def _staged_step(cfg: SearchConfig, exe: Execution):
    """``step(state, t, images, labels, knobs)`` computing :func:`search_step`'s result with
    ``(s, grad_A s)`` taken stage by stage (:mod:`nasi_jax.search.staged`)."""
    from nasi_jax.core import objective
    from nasi_jax.search import staged
    net = make_network(cfg, exe)
    sts = get_space(cfg.space).stages(net)

    @jax.jit
    def pre(state, t, images, labels, knobs):
        x, y, g = sample_step_inputs(cfg, state, t, images, labels)
        A = relax.relaxed_sample(jnp.zeros(cfg.alpha_shape, jnp.float32), g, tau=knobs.tau, hard=cfg.hard)
        return x, y, g, A

    @jax.jit
    def post(state, g, s, ds_dA, knobs):
        nu = objective.current_nu(state.nu, knobs.adaptive)
        _, sample_vjp = jax.vjp(lambda a: relax.relaxed_sample(a, g, tau=knobs.tau, hard=cfg.hard),
                                jnp.zeros(cfg.alpha_shape, jnp.float32))
        (G,) = sample_vjp(objective.dR_ds(s, knobs.mu, nu) * ds_dA)
        return record_step(cfg, state, g, s, G, knobs)

    def step(state, t, images, labels, knobs):
        x, y, g, A = pre(state, t, images, labels, knobs)
        s, ds_dA = staged.chain_trace_and_grad(sts, state.params, x, y, A)
        return post(state, g, s, ds_dA, knobs)

    return step


def _host_fns(cfg: SearchConfig, exe: Execution):
    """``init`` (eager), jitted ``step(state, t, images, labels, knobs)`` and jitted
    ``finalize(state, xi) -> alpha*`` for the host-driven loop. ``cfg`` is the cache key's
    config: its ``mu``, ``tau``, ``nu``, rule, ``xi`` and read-out are not used (they are inputs)."""
    def fin(st, xi):
        return eq18_delta(st.eq18, xi)

    if exe.seed_batching == "vmap":
        step = jax.jit(jax.vmap(lambda st, t, im, lb, kn: search_step(cfg, exe, st, t, im, lb, kn),
                                in_axes=(0, None, None, None, None)))
        fin = jax.jit(jax.vmap(fin, in_axes=(0, None)))
    else:
        step = jax.jit(lambda st, t, im, lb, kn: search_step(cfg, exe, st, t, im, lb, kn))
        fin = jax.jit(fin)
    return _eager_init(cfg, exe), step, fin


def _eager_init(cfg: SearchConfig, exe: Execution):
    """``init(key) -> state`` run eagerly (vmapped over keys with ``seed_batching='vmap'``)."""
    init = lambda k: init_state(cfg, exe, k)  # noqa: E731
    return jax.vmap(init) if exe.seed_batching == "vmap" else init


def _key_config(cfg: SearchConfig) -> SearchConfig:
    """``cfg`` without what the host programs take as inputs or do not depend on (``steps``;
    ``mu``, ``tau``, ``nu`` and its rule, ``xi``; the read-out; the preset's name), so that
    searches differing only there share one compilation."""
    space = get_space(cfg.space)
    return dataclasses.replace(cfg, steps=1, preset=None, mu=1.0, tau=1.0, nu=1.0, nu_mode="fixed", xi=1.0,
                               readout=space.readouts[0])


def compiled_host_step(cfg: SearchConfig, execution: Execution, num_seeds: int = 1, images=None,
                       labels=None):
    """``(init, step, finalize)`` of the host loop, compiled once and cached.

    ``init(key) -> state`` draws ``theta_0`` eagerly (the values of a jitted init, bit for
    bit, without compiling the network's forward pass); ``step(state, t, images, labels,
    knobs) -> (state, StepMetrics)`` is one step of Algorithm 1 for one seed (``num_seeds``
    seeds batched when ``seed_batching == 'vmap'``), with ``knobs =``
    :func:`~nasi_jax.search.algorithm.knobs_of` ``(cfg)``; ``finalize(state, xi) -> alpha*``.
    With the staged step both compile on first use (its stages one by one; ``finalize``, a
    jitted function, at its first call), so nothing here traces the whole supernet.
    The cache key leaves out what the step does not depend on or takes as an input
    (:func:`_key_config`; ``map`` vs ``threads``), so runs that differ only there share
    one compilation.
    """
    exe = execution
    batched = exe.seed_batching == "vmap"
    key_cfg = _key_config(cfg)
    key_exe = dataclasses.replace(exe, seed_batching="vmap" if batched else "map", loop="host")
    k = jnp.zeros((num_seeds if batched else 1, 2), jnp.uint32)
    sig = ("host",) + _signature(key_cfg, key_exe, k, images, labels)
    fns = _COMPILED.get(sig)
    if fns is None:
        init, step, fin = _host_fns(key_cfg, exe)
        if exe.step_impl == "staged":  # compiled stage by stage on first use, and so is finalize:
            fns = (_staged_step(key_cfg, exe), fin)  # no abstract init (a trace of the whole supernet)
        else:
            st = jax.eval_shape(init, k if batched else k[0])
            step_c = step.lower(st, jnp.zeros((), jnp.int32), images, labels, knobs_of(key_cfg)).compile()
            fns = (step_c, fin.lower(st, jnp.zeros((), jnp.float32)).compile())
        _COMPILED[sig] = fns
    step_c, fin_c = fns
    return _eager_init(cfg, exe), step_c, fin_c  # this cfg's init: nu_init is not in the key


def _run_host(cfg, exe, keys, images, labels, hook, seeds, memory_budget=None):
    """Python loop over steps (and, with ``map``/``threads``, seeds) of compiled steps."""
    batched = exe.seed_batching == "vmap"
    t0 = time.perf_counter()
    init_c, step_c, fin_c = compiled_host_step(cfg, exe, len(keys), images, labels)
    knobs, xi = knobs_of(cfg), jnp.asarray(cfg.xi, jnp.float32)
    space = get_space(cfg.space)
    if memory_budget is not None:
        if not hasattr(step_c, "memory_analysis"):
            raise ValueError("memory_budget needs a step compiled as one program; pass "
                             "Execution(step_impl='one-program') (the staged step compiles stage by stage)")
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
            state, metrics = step_c(state, jnp.asarray(t, jnp.int32), images, labels, knobs)
            metrics = jax.tree_util.tree_map(np.asarray, metrics)
            _check_finite(metrics.s, metrics.grad_norm, [seeds[i] for i in idx], t)  # fail early
            hist.append(metrics)
            if hook is not None:
                with lock:
                    for i in idx:
                        hook(i, t)
        alpha_star = fin_c(state, xi)
        ops = space.read_out(alpha_star, cfg.readout)
        history = StepMetrics(*[np.stack(field, axis=1 if batched else 0) for field in zip(*hist)])
        return SeedOutput(np.asarray(alpha_star), np.asarray(ops), history)

    if exe.seed_batching == "threads" and len(groups) > 1:
        with ThreadPoolExecutor(_SEED_THREADS) as ex:
            futures = [ex.submit(run_group, g) for g in groups]
            try:
                outs = [f.result() for f in futures]
            finally:
                for f in futures:
                    f.cancel()
    else:
        outs = [run_group(g) for g in groups]
    out = outs[0] if batched else jax.tree_util.tree_map(lambda *xs: np.stack(xs), *outs)
    return out, compile_time, time.perf_counter() - t0


# --------------------------------------------------------------------------- the entry point

class _StepProgress:
    """``hook(seed_index, step)`` over :class:`nasi_jax.records.Progress` (steps of all seeds)."""

    def __init__(self, total: int):
        self.bar = records.Progress(total, unit="steps", label="[nasi]")
        self.last = (0, 0)

    def start(self):
        self.bar.start()

    def __call__(self, seed_index: int, step: int):
        self.bar.update(1, note=f"seed #{seed_index} step {step + 1}")
        if self.bar.done >= self.bar.total:
            self.bar.close()


def _check_data(cfg, images, labels):
    if cfg.data == "random":
        return None, None
    if images is None or (labels is None and cfg.data == "real"):
        raise ValueError(f"data={cfg.data!r} needs images{' and labels' if cfg.data == 'real' else ''}; "
                         "load them with nasi_jax.data.load_data_for_mode(mode, data_dir)")
    images = jnp.asarray(images)
    labels = None if cfg.data == "random-labels" else jnp.asarray(labels)
    if cfg.batch_size > images.shape[0]:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {images.shape[0]} examples available")
    return images, labels


def run_search(cfg: SearchConfig, seeds: Sequence[int], *, execution: Execution | None = None,
               images=None, labels=None, progress: bool | Callable[[int, int], None] = False,
               devices: Sequence | None = None,
               memory_budget: int | str | None = None) -> SearchResult:
    """Run NASI for every seed in one compiled call.

    Args:
        cfg: the search configuration (the maths; validated here).
        seeds: integer seeds; seed ``s`` uses ``jax.random.PRNGKey(s)``.
        execution: how to run it (:class:`Execution`; default: every choice ``auto``),
            resolved once for the backend; the result's ``execution`` holds what ran.
        images, labels: the data pool for ``data='real'``/``'random-labels'``
            (from :func:`nasi_jax.data.load_data_for_mode`); ignored for ``random``.
        progress: True for a progress line on stderr, or a callable ``(seed_index, step)``.
        devices: shard the seeds over these devices (``jax.shard_map`` over a 1-D mesh;
            the scan loop; seeds padded to a multiple of the device count). Default: one
            device. Results equal the one-device results.
        memory_budget: bytes (or a string such as ``'2GiB'``) the compiled search may use
            on a device, by XLA's estimate of the compiled program
            (:func:`nasi_jax.core.memory.compiled_peak_bytes`); over it, a
            :class:`nasi_jax.core.memory.MemoryBudgetError` is raised after compiling and
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
    exe = (execution or Execution()).resolve(cfg, devices=len(devices))
    images, labels = _check_data(cfg, images, labels)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])

    hook = progress if callable(progress) else (_StepProgress(len(seeds) * cfg.steps) if progress else None)
    if exe.loop == "scan":
        out, compile_time, run_time = _run_scan(cfg, exe, keys, images, labels, hook, devices, memory_budget)
        _check_finite(out.history.s, out.history.grad_norm, seeds, 0)
    else:  # checks every step as it goes
        out, compile_time, run_time = _run_host(cfg, exe, keys, images, labels, hook, seeds, memory_budget)

    hist = {k: np.asarray(v) for k, v in out.history._asdict().items()}
    ops = np.asarray(out.ops)
    space = get_space(cfg.space)
    return SearchResult(cfg, seeds, np.asarray(out.alpha_star), ops, [space.to_text(o) for o in ops], hist,
                        compile_time, run_time, exe)
