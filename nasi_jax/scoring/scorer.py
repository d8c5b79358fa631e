"""Training-free scores of discrete cells at benchmark scale: one compilation for all cells.

A cell is scored with the **supernet's** initial weights ``theta_0`` and the architecture
as an *input*: integer op indices (``alpha_shape[:-1]``, NB201: ``[6]``), and on each edge
``lax.switch`` runs only the chosen op (the space's :meth:`scoring_network`; NB201:
:class:`nasi_jax.spaces.nb201.Edge`). Any scorable space works the same way
(:class:`nasi_jax.spaces.Space`). For NB201, because the discrete network
``NB201Network(fixed=ops)`` names its parameters as the supernet does, a cell's score with
seed ``K`` equals the score of the discrete network initialised with the same key (tested
exactly): ``init_key, data_key = split(PRNGKey(K))``; ``theta_0 = init(init_key)``; the
batch ``(x, y) = sample_batch(data_key, b)`` is the same for every cell.

Proxies (:data:`PROXIES`, the registry of :mod:`nasi_jax.scoring.proxies`, where each is a pure
function with its paper and maths; sign +1: larger is better, -1: smaller is better):

* ``nasi`` (+1): NASI's estimator (eq. 12), ``||grad_theta (1/b) sum_i l(f(x_i), y_i)||^2``;
* ``ntk_trace`` (+1): the exact empirical NTK trace ``sum_{i,k} ||d f_k(x_i)/d theta||^2``
  (``b*K`` VJPs per cell; chunked by ``chunk_size``);
* ``nasi_objective`` (+1): NASI's eq. 13 ``s - mu max(0, s - nu)`` (``mu``, ``nu`` below);
* ``grad_norm`` (+1), ``snip`` (+1), ``grasp`` (+1): loss-gradient scores over the weights
  (conv and classifier kernels);
* ``synflow`` (+1): natural log of SynFlow, ``train=False`` BatchNorm, all-ones input;
* ``jacob_cov`` (+1): correlation of the input Jacobian's rows;
* ``naswot`` (+1): ``log|det K_H|`` of the ReLU code kernel (through the float one-hot
  supernet path, which sows the codes; the forward equals the discrete network's);
* ``te_nas_cond`` (-1): condition number of the per-example NTK ``J J^T``;
* ``zico`` (+1): ZiCo, gradient mean over standard deviation across two half-batches;
* ``meco`` (+1), ``swap`` (+1): MeCo's least eigenvalues of one example's channel
  correlations, SWAP's distinct sample-wise ReLU patterns (forward only, through the float
  one-hot supernet path, which sows every layer's output with its op's weight);
* ``az_expressivity``, ``az_progressivity``, ``az_trainability`` (+1): AZ-NAS's scores of
  the block outputs (stem, every cell and reduction) and of each block's own Jacobian
  (Rademacher probes from the scoring seed); its fourth, complexity, is ``flops``;
* ``params`` (+1), ``flops`` (+1): the discrete network's parameters and multiply-accumulates
  (a lookup per op; no network is run).

:func:`score_cells` streams ``index,arch_str,<proxy>`` rows to a CSV as cells finish; a
run that is killed resumes from that file without redoing finished cells; its settings are
kept beside it in ``<output>.meta.json`` and a resume with other settings is refused.

Example:
    >>> from nasi_jax import scoring as score
    >>> cfg = score.ScoreConfig(batch_size=2, channels=2, cells_per_stage=1, image_size=8)
    >>> s = score.score_cells(cfg, [(3, 0, 3, 1, 0, 1), (1, 1, 1, 1, 1, 1)], seed=0,
    ...                       progress=False)
    >>> s.shape, bool((s > 0).all())
    ((2,), True)
"""


from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import data as data_lib
from nasi_jax import presets, records
from nasi_jax.core import memory
from nasi_jax.scoring import proxies
from nasi_jax.scoring.cells import ScoreError, cells_digest, meta_path, parse_cells, read_scores
from nasi_jax.search.config import NonFiniteScoreError
from nasi_jax.spaces import get_space, names
from nasi_jax.spaces._init import INIT_SCHEMES

__all__ = ["PROXIES", "Proxy", "ScoreConfig", "ScoreError", "TRACE_COUNT", "make_score_fn",
           "init_scoring", "score_cells", "parse_cells", "read_scores", "clear_cache"]

TRACE_COUNT = {"score": 0}

Proxy = proxies.Proxy
PROXIES: dict[str, Proxy] = proxies.PROXIES  # name -> Proxy(fn(net, params, x, y, cfg), sign, description)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """What defines a score (hashable; a static jit argument).

    Attributes:
        space: a scorable space (:attr:`nasi_jax.spaces.Space.scorable`; ``nb201``).
        proxy: a key of :data:`PROXIES`.
        batch_size: examples in the one batch shared by all cells.
        data: ``random`` | ``random-labels`` | ``real`` (:mod:`nasi_jax.data`).
        channels, cells_per_stage, num_classes, image_size: network size (NB201: 16, 5, 10, 32).
            The defaults are those of NB201's benchmark network.
        init_scheme: ``pytorch``, ``flax`` or ``kaiming`` (:mod:`nasi_jax.spaces._init`; AZ-NAS
            re-initialises with ``kaiming``).
        bn_mode: ``train`` (batch statistics) or ``eval``.
        conv_impl: ``auto`` (the space's choice for convolutions inside ``lax.switch``:
            NB201 ``loop-safe`` on CPU, ``xla`` elsewhere), ``xla`` or ``loop-safe``.
        chunk_size: Jacobian rows per VJP batch for ``ntk_trace`` (None: all at once).
        dtype: ``float32`` or ``float64`` (needs ``jax_enable_x64``).
        mu, nu: penalty coefficient (``>= 0``) and ceiling (``> 0``) of ``nasi_objective``.
    """

    space: str = "nb201"
    proxy: str = "nasi"
    batch_size: int = 16
    data: str = "random"
    channels: int = 16
    cells_per_stage: int = 5
    num_classes: int = 10
    image_size: int = 32
    init_scheme: str = "pytorch"
    bn_mode: str = "train"
    conv_impl: str = "auto"
    chunk_size: int | None = None
    dtype: str = "float32"
    mu: float = presets.PRESETS["paper"].values["mu"]
    nu: float = presets.PRESETS["paper"].values["nu"]

    def validate(self) -> "ScoreConfig":
        try:
            space = get_space(self.space)
        except ValueError as e:
            raise ScoreError(str(e)) from None
        if not space.scorable:
            raise ScoreError(f"space {self.space!r} cannot score discrete cells; scorable spaces: "
                             f"{[n for n in names() if get_space(n).scorable]}")
        if self.proxy not in PROXIES:
            raise ScoreError(f"unknown proxy {self.proxy!r}; choose one of {sorted(PROXIES)}")
        for name in ("batch_size", "channels", "cells_per_stage", "num_classes", "image_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ScoreError(f"{name} must be a positive integer, got {v!r}")
        if self.image_size % 4:
            raise ScoreError(f"image_size must be a multiple of 4, got {self.image_size}")
        if self.data not in data_lib.DATA_MODES:
            raise ScoreError(f"data must be one of {data_lib.DATA_MODES}, got {self.data!r}")
        if self.bn_mode not in ("train", "eval"):
            raise ScoreError(f"bn_mode must be 'train' or 'eval', got {self.bn_mode!r}")
        if self.init_scheme not in INIT_SCHEMES:
            raise ScoreError(f"init_scheme must be one of {INIT_SCHEMES}, got {self.init_scheme!r}")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise ScoreError(f"chunk_size must be a positive integer, got {self.chunk_size}")
        if self.conv_impl != "auto":
            space.resolve_scoring_conv_impl(self.conv_impl, "cpu")
        if self.dtype not in ("float32", "float64"):
            raise ScoreError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for name, lowest, strict in (("mu", 0.0, False), ("nu", 0.0, True)):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
                    or not math.isfinite(v) or v < lowest or (strict and v == lowest)):
                raise ScoreError(f"{name} must be a finite number {'>' if strict else '>='} 0, got {v!r}")
        if self.data != "random" and self.image_size != data_lib.IMAGE_SHAPE[0]:
            raise ScoreError(f"CIFAR-10 images are 32x32: image_size must be 32 with data={self.data!r}")
        check = PROXIES[self.proxy].check
        problem = check(self) if check is not None else None
        if problem:
            raise ScoreError(problem)
        return self


def _network(cfg: ScoreConfig, conv_impl: str | None = None):
    space = get_space(cfg.space)
    impl = conv_impl or space.resolve_scoring_conv_impl(cfg.conv_impl, jax.default_backend())
    return space.scoring_network(channels=cfg.channels, cells_per_stage=cfg.cells_per_stage,
                                 num_classes=cfg.num_classes, init_scheme=cfg.init_scheme,
                                 conv_impl=impl, dtype=jnp.dtype(cfg.dtype))


def make_score_fn(cfg: ScoreConfig) -> Callable:
    """Pure ``score(params, batch_stats, x, y, key, ops) -> scalar`` (``ops``: int
    ``alpha_shape[:-1]``).

    ``params``/``batch_stats`` are the supernet's and ``key`` the probes' PRNG key
    (:func:`init_scoring`); one trace serves every cell, since ``ops`` is an array input.
    """
    cfg.validate()
    net = _network(cfg)
    space = get_space(cfg.space)
    proxy = PROXIES[cfg.proxy]
    size = dict(channels=cfg.channels, cells_per_stage=cfg.cells_per_stage, num_classes=cfg.num_classes,
                image_size=cfg.image_size)
    train = cfg.bn_mode == "train"

    def score(params, batch_stats, x, y, key, ops):
        TRACE_COUNT["score"] += 1
        extra = ["batch_stats"] if train else []

        def f(p, x_):
            v = {"params": p, "batch_stats": batch_stats}
            if train:
                return net.apply(v, x_, ops, train=True, mutable=["batch_stats"])[0]
            return net.apply(v, x_, ops, train=False)

        def f_eval(p, x_):
            return net.apply({"params": p, "batch_stats": batch_stats}, x_, ops, train=False)

        def relu_kernel(p, x_):
            # each ReLU's code kernel, sown with its op's weight (ops not run weigh 0)
            if space.relu_codes is None:
                raise ScoreError(f"space {space.name!r} sows no ReLU codes: naswot is unavailable")
            _, state = net.apply({"params": p, "batch_stats": batch_stats}, x_, ops, train=train,
                                 mutable=[space.relu_codes] + extra)
            return sum(jax.tree_util.tree_leaves(state[space.relu_codes]))

        def count(kind):
            return space.cost(kind, **size)(ops)

        def probes(p, x_):
            # every layer's output with its op's weight (0 for slots the op does not have)
            if space.probes is None:
                raise ScoreError(f"space {space.name!r} sows no layer outputs: {cfg.proxy} is unavailable")
            _, state = net.apply({"params": p, "batch_stats": batch_stats}, x_, ops, train=train,
                                 mutable=[space.probes] + extra)
            return proxies.collect_probes(state[space.probes])

        def blocks(p, x_, taps=None):
            if space.blocks is None:
                raise ScoreError(f"space {space.name!r} sows no block outputs: {cfg.proxy} is unavailable")
            v = {"params": p, "batch_stats": batch_stats}
            if taps is not None:
                v[space.block_taps] = {f"in{i:03d}": t for i, t in enumerate(taps)}
            _, state = net.apply(v, x_, ops, train=train, mutable=[space.blocks] + extra)
            d = state[space.blocks]
            return [d[k][0] for k in sorted(d)]

        network = proxies.Network(f, f_eval, relu_kernel, count, probes, blocks, key)
        return proxy.fn(network, params, x, y, cfg)

    return score


@functools.lru_cache(maxsize=8)
def _init_fn(net, image_size: int, alpha_shape: tuple[int, ...], dtype: str):
    """The supernet's init, run eagerly (the values of the jitted init, without compiling it)."""
    x0 = jnp.zeros((1, image_size, image_size, 3), dtype)
    return lambda k: net.init(k, x0, jnp.zeros(alpha_shape, dtype), train=False)


class ScoringInputs(NamedTuple):
    params: Any
    batch_stats: Any
    x: jax.Array
    y: jax.Array
    key: jax.Array  # the proxies' random probes (AZ-NAS's Rademacher vectors)


def init_scoring(cfg: ScoreConfig, seed: int, *, images=None, labels=None) -> ScoringInputs:
    """``theta_0`` of the supernet, the one batch and the probes' key, from ``PRNGKey(seed)``
    (``init_key, data_key = split(PRNGKey(seed))``; the probes' key is ``fold_in(data_key, 1)``)."""
    cfg.validate()
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = _init_fn(_network(cfg, "xla"), cfg.image_size, get_space(cfg.space).alpha_shape,
                         cfg.dtype)(init_key)
    dt = jnp.dtype(cfg.dtype)
    # flax keeps BN running statistics in float32; lax.switch needs every branch's (updated)
    # statistics in one dtype
    variables = jax.tree_util.tree_map(lambda a: a.astype(dt), variables)
    if cfg.data != "random" and images is None:
        raise ScoreError(f"data={cfg.data!r} needs images; load them with "
                         "nasi_jax.data.load_data_for_mode(mode, data_dir)")
    if images is not None and cfg.batch_size > len(images):
        raise ScoreError(f"batch_size {cfg.batch_size} exceeds the {len(images)} examples available")
    x, y = data_lib.sample_batch(data_key, cfg.batch_size, mode=cfg.data,
                                 images=None if cfg.data == "random" else images,
                                 labels=labels if cfg.data == "real" else None,
                                 num_classes=cfg.num_classes,
                                 image_shape=(cfg.image_size, cfg.image_size, 3), dtype=dt)
    return ScoringInputs(variables["params"], variables["batch_stats"], x, y, jax.random.fold_in(data_key, 1))


def _default_workers() -> int:
    # XLA:CPU runs the work inside lax.switch on one thread: two cells in flight use both
    # cores (docs/performance.md); on an accelerator the second hides dispatch latency.
    return 2


_COMPILED: dict = {}


def clear_cache() -> None:
    """Forget the compiled scorers kept by :func:`score_cells`."""
    _COMPILED.clear()


def _compiled_scorer(cfg: ScoreConfig, inputs: ScoringInputs, devices):
    """One compiled function ``ops [D, 6] -> scores [D]`` (D = number of devices), cached."""
    sig = (cfg, tuple(str(d) for d in devices),
           tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(inputs)))
    if sig not in _COMPILED:
        _COMPILED[sig] = _compile_scorer(cfg, inputs, devices)
    return _COMPILED[sig]


def _compile_scorer(cfg: ScoreConfig, inputs: ScoringInputs, devices):
    score = make_score_fn(cfg)
    ops0 = jnp.zeros((len(devices), *get_space(cfg.space).alpha_shape[:-1]), jnp.int32)
    if len(devices) == 1:
        fn = jax.jit(lambda p, bs, x, y, k, ops: score(p, bs, x, y, k, ops[0])[None])
        return fn.lower(*inputs, ops0).compile(), None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    mesh = Mesh(np.asarray(devices), ("cells",))
    body = jax.shard_map(lambda p, bs, x, y, k, ops: score(p, bs, x, y, k, ops[0])[None], mesh=mesh,
                         in_specs=(P(), P(), P(), P(), P(), P("cells")), out_specs=P("cells"),
                         check_vma=False)
    fn = jax.jit(body)
    sharding = NamedSharding(mesh, P("cells"))
    return fn.lower(*inputs, jax.device_put(ops0, sharding)).compile(), sharding


def score_cells(cfg: ScoreConfig, cells: Sequence, seed: int = 0, *, output: str | None = None,
                index: Sequence[int] | None = None, index_kind: str = "code", images=None,
                labels=None, progress: bool = True, workers: int | None = None,
                devices: Sequence | None = None, stop_after: int | None = None,
                memory_budget: int | str | None = None,
                extra_meta: dict | None = None) -> np.ndarray:
    """Score ``cells`` (op tuples or arch strings) with one compiled function.

    Args:
        cfg: :class:`ScoreConfig`.
        cells: the cells; ``index`` their ids in the output (default: cell codes).
        seed: ``theta_0`` and the batch come from ``PRNGKey(seed)`` (module docstring).
        output: CSV path, written row by row (``index,arch_str,<proxy>``) and resumed if
            present: finished cells are read back, not recomputed.
        images, labels: the data pool for ``data='real'``/``'random-labels'``.
        progress: a progress line with rate and ETA on stderr.
        workers: threads with cells in flight (default 2).
        devices: shard the cells over these devices (default: one device); each device
            scores its own cell, results equal one device's. Several hosts: pass
            ``jax.devices()`` after ``jax.distributed.initialize()`` on every process; only
            process 0 writes ``output``.
        stop_after: stop after this many new cells (for tests of resumption).
        memory_budget: bytes (or ``'2GiB'``) one compiled cell score may use by XLA's
            estimate; over it :class:`nasi_jax.core.memory.MemoryBudgetError` is raised before
            any cell runs. For ``ntk_trace`` without ``chunk_size`` the largest fitting
            chunk is chosen.

    Returns:
        float64 scores ``[len(cells)]`` in the order of ``cells`` (NaN for cells left
        undone by ``stop_after``). Raises :class:`nasi_jax.search.NonFiniteScoreError`
        naming the first cell whose score is NaN/inf (rows before it are kept).
    """
    cfg.validate()
    space = get_space(cfg.space)
    ops = space.check_cells(cells)
    if index is None:
        index = [space.ops_to_code(c) for c in ops]
    index = [int(i) for i in index]
    if len(index) != len(ops) or len(set(index)) != len(index):
        raise ScoreError("index must give one distinct id per cell")
    devices = list(devices) if devices else jax.local_devices()[:1]
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ScoreError(f"workers must be >= 1, got {workers}")

    if jax.process_index() != 0:
        output = None  # several hosts: process 0 writes
    done: dict[int, float] = {}
    meta = {"config": dataclasses.asdict(cfg), "seed": int(seed), "index_kind": index_kind,
            "cells": len(ops), "cells_sha256_16": cells_digest(index)}
    if output is not None:
        if os.path.exists(meta_path(output)) and os.path.exists(output):
            with open(meta_path(output)) as fh:
                old = json.load(fh)
            keys = ("config", "seed", "index_kind", "cells", "cells_sha256_16")
            diff = [k for k in keys if old.get(k) != meta[k]
                    and not (k == "config" and _same_config(old.get(k), meta[k]))]
            if diff:
                raise ScoreError(f"{output} was written with other settings ({', '.join(diff)} differ); "
                                 "resume with the same settings, or choose another --output")
            done = read_scores(output, cfg.proxy)
        elif os.path.exists(output):
            raise ScoreError(f"{output} exists without {meta_path(output)}; it was not written by "
                             "nasi score: choose another --output or delete it")
    todo = [i for i, ix in enumerate(index) if ix not in done]
    if stop_after is not None:
        todo = todo[:stop_after]
    scores = np.full(len(ops), np.nan)
    for i, ix in enumerate(index):
        if ix in done:
            scores[i] = done[ix]
    if todo:  # compile (and check the memory budget) before anything is written
        inputs = init_scoring(cfg, seed, images=images, labels=labels)
        cfg, (compiled, sharding) = _plan(cfg, inputs, devices, memory_budget)
    if output is not None:
        records.write_json_atomic(meta_path(output), {**meta, "versions": records.versions(),
                                               "chunk_size_used": cfg.chunk_size,
                                               "conv_impl_used": _network(cfg).conv_impl,
                                               "devices": len(devices), "workers": workers,
                                               **(extra_meta or {})})
    fh = None
    if output is not None and todo:
        new = not os.path.exists(output) or os.path.getsize(output) == 0
        fh = open(output, "a", newline="")
        if new:
            fh.write(f"index,arch_str,{cfg.proxy}\n")
    try:
        if todo:
            D = len(devices)
            cell_shape = space.alpha_shape[:-1]
            groups = [todo[k:k + D] for k in range(0, len(todo), D)]

            def run(group):
                g = [ops[i] for i in group] + [ops[group[-1]]] * (D - len(group))  # pad the last
                arr = jnp.asarray(np.asarray(g, np.int32).reshape(len(g), *cell_shape))
                if sharding is not None:
                    arr = jax.device_put(arr, sharding)
                out = compiled(*inputs, arr)
                if not out.is_fully_addressable:  # several hosts: gather every process's cells
                    from jax.experimental import multihost_utils
                    out = multihost_utils.process_allgather(out, tiled=True)
                return np.asarray(out, np.float64)[:len(group)]

            prog = (records.Progress(len(ops), unit="cells", label="[nasi score]", initial=len(ops) - len(todo),
                                     interval=2.0) if progress else None)
            since_sync = 0
            with ThreadPoolExecutor(workers) as ex:
                window: collections.deque = collections.deque()
                pending = iter(groups)
                try:
                    for group in itertools.islice(pending, 2 * workers):
                        window.append((group, ex.submit(run, group)))
                    while window:
                        group, fut = window.popleft()
                        vals = fut.result()
                        nxt = next(pending, None)
                        if nxt is not None:
                            window.append((nxt, ex.submit(run, nxt)))
                        for i, v in zip(group, vals):
                            if not np.isfinite(v):
                                raise NonFiniteScoreError(
                                    f"proxy {cfg.proxy} is {v} for cell {space.to_text(ops[i])} "
                                    f"(index {index[i]}); the rows before it are saved")
                            scores[i] = v
                            if fh is not None:
                                fh.write(f"{index[i]},{space.to_text(ops[i])},{float(v)!r}\n")
                        if fh is not None:
                            fh.flush()
                            since_sync += len(group)
                            if since_sync >= 256:
                                os.fsync(fh.fileno())
                                since_sync = 0
                        if prog:
                            prog.update(len(group))
                finally:
                    for _, fut in window:  # on error or ^C: do not wait for queued cells
                        fut.cancel()
            if prog:
                prog.update(0, force=True)
                prog.close()
    finally:
        if fh is not None:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
    return scores


def _plan(cfg: ScoreConfig, inputs: ScoringInputs, devices, memory_budget):
    """Compile the scorer; with a memory budget check it, and for ``ntk_trace`` without a
    chunk size pick the largest chunk (halving from ``b*K``) whose program fits."""
    if memory_budget is None:
        return cfg, _compiled_scorer(cfg, inputs, devices)
    budget = memory.parse_bytes(memory_budget)
    hint = "lower --batch-size" + (" or --chunk-size" if cfg.proxy == "ntk_trace" else "")
    if cfg.proxy == "ntk_trace" and cfg.chunk_size is None:
        chunk = cfg.batch_size * cfg.num_classes
        while True:
            trial = dataclasses.replace(cfg, chunk_size=chunk)
            compiled = _compiled_scorer(trial, inputs, devices)
            est = memory.compiled_peak_bytes(compiled[0])
            if est is None or est <= budget or chunk == 1:
                memory.check_fits(compiled[0], budget, "scoring one cell (chunk_size 1)", "lower --batch-size")
                return trial, compiled
            chunk = max(1, chunk // 2)
    compiled = _compiled_scorer(cfg, inputs, devices)
    memory.check_fits(compiled[0], budget, "scoring one cell", hint)
    return cfg, compiled


def _same_config(a: dict | None, b: dict) -> bool:
    """Configs agree on everything that changes a score's value beyond rounding."""
    if a is None:
        return False
    # a field an older meta file lacks (e.g. mu, nu) had its default value then
    a = {**{f.name: f.default for f in dataclasses.fields(ScoreConfig)}, **a}
    ignore = {"conv_impl", "chunk_size"}
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}
