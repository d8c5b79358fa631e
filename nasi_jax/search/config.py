"""What a search computes (:class:`SearchConfig`) and how it runs (:class:`Execution`).

The two are kept apart so that a config means the same thing on every machine: a
:class:`SearchConfig` holds the maths (T, b, mu, nu and its rule, tau, xi, the read-out, the
data mode, the supernet's size, initialisation and BatchNorm mode); an :class:`Execution`
holds implementation choices that change speed and memory but not the result (the loop,
how seeds share a program, how the second-order gradient is taken, the convolutions, one
program or stage by stage). :meth:`Execution.resolve` turns ``auto`` choices into concrete
ones once, for a space and a backend; the result file records both.

Example:
    >>> cfg = SearchConfig(preset="paper", steps=3)
    >>> cfg.mu, cfg.nu, cfg.steps
    (2.0, 100.0, 3)
    >>> ex = Execution().resolve(cfg, backend="cpu")
    >>> ex.loop, ex.seed_batching, ex.conv_impl, ex.step_impl
    ('host', 'threads', 'xla', 'one-program')
    >>> Execution().resolve(SearchConfig(space="darts"), backend="cpu").step_impl
    'staged'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from nasi_jax import presets
from nasi_jax.core import objective
from nasi_jax.data import DATA_MODES, IMAGE_SHAPE, NUM_CLASSES
from nasi_jax.spaces import get_space

__all__ = ["SearchConfig", "Execution", "check_seeds", "BN_MODES", "SEED_BATCHING", "LOOPS",
           "GRAD_MODES", "STEP_IMPLS", "NonFiniteScoreError"]

BN_MODES = ("train", "eval")
SEED_BATCHING = ("auto", "map", "vmap", "threads")
LOOPS = ("auto", "scan", "host")
GRAD_MODES = ("fwd-rev", "rev-rev")
STEP_IMPLS = ("auto", "one-program", "staged")


class NonFiniteScoreError(FloatingPointError):
    """A trace estimate or gradient came out NaN/inf."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The maths of a NASI search (hashable: it is a static jit argument).

    Every value left as ``None`` comes from a preset (:mod:`nasi_jax.presets`, the one
    place that holds defaults): ``preset`` if given, else the default preset for ``space``
    and ``data`` (NB201: the values chosen on validation accuracy for that data mode; DARTS:
    the paper's). Values given explicitly override the preset's. After construction every
    field holds a concrete value, so a config (and every result file) records what ran.

    Attributes:
        space: a registered search space (:func:`nasi_jax.spaces.get_space`): ``nb201``
            (architecture logits ``alpha [6, 5]``), ``darts`` (``alpha [2, 14, 8]``: the
            normal and the reduction cell) or one registered from outside.
        preset: the preset the defaults came from (``None``: the default one, recorded here).
        steps: T, number of sampled architectures / gradients.
        batch_size: b, examples per mini-batch.
        mu: penalty coefficient of eq. 13.
        nu: the ceiling (NASI-FIX) or its initial value (NASI-ADA).
        nu_mode: the ceiling rule, ``fixed`` or ``adaptive`` (:mod:`nasi_jax.core.objective`).
        tau: Gumbel-softmax temperature.
        hard: straight-through hard samples or soft samples.
        xi: radius of eq. 17-18 (scales alpha*; does not change the argmax).
        readout: how the cell is read from ``alpha*`` (the space's :meth:`read_out`); NB201:
            ``argmax`` or ``argmax-no-none``; DARTS: ``darts``. ``auto``: the preset's.
        objective: what the search maximises; ``nasi`` (eq. 13 on the estimate of eq. 12)
            or ``nasi+ensemble`` (the same search, then a training-free aggregate chooses
            among the ``candidates`` most probable cells: :mod:`nasi_jax.search.choose`).
        candidates: K, the cells the read-out proposes (1 with objective ``nasi``).
        data: ``random`` | ``random-labels`` | ``real`` (:mod:`nasi_jax.data`).
        channels, cells_per_stage, num_classes, image_size: supernet size (NB201: 16, 5,
            10, 32; DARTS: 16, 2, 10, 32, ``3 N + 2`` cells).
        init_scheme: ``pytorch`` (the scale of the paper's nu) or ``flax``.
        bn_mode: ``train`` (batch statistics) or ``eval`` (running statistics).

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
    candidates: int | None = None
    data: str | None = None
    channels: int | None = None
    cells_per_stage: int | None = None
    num_classes: int | None = None
    image_size: int | None = None
    init_scheme: str | None = None
    bn_mode: str | None = None

    def __post_init__(self):
        # Unset values come from the preset; ``readout='auto'`` means the preset's read-out.
        if self.readout == "auto":
            object.__setattr__(self, "readout", None)
        if self.preset is None or any(getattr(self, f) is None for f in presets.SEARCH_FIELDS):
            get_space(self.space)  # an unknown space is named as such
            for name, value in presets.resolve(self.preset, self.space, self.data).items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)

    @property
    def alpha_shape(self) -> tuple[int, ...]:
        """Shape of the architecture logits (the space's)."""
        return get_space(self.space).alpha_shape

    def preset_overrides(self) -> dict[str, Any]:
        """The search values that differ from the preset's (what explicit arguments changed)."""
        values = presets.resolve(self.preset, self.space, self.data)
        return {f: getattr(self, f) for f in presets.SEARCH_FIELDS if getattr(self, f) != values[f]}

    def preset_record(self) -> dict[str, Any]:
        """What a result file records about the preset: name, version, provenance, overrides."""
        p = presets.get_preset(self.preset)
        return {"name": p.name, "version": p.version, "summary": p.summary,
                "provenance": dict(p.provenance), "overrides": self.preset_overrides()}

    def validate(self) -> "SearchConfig":
        """Raise ValueError with a fix for every impossible setting; return self."""
        space = get_space(self.space)
        presets.get_preset(self.preset)
        for name in ("steps", "batch_size", "channels", "cells_per_stage", "num_classes", "image_size",
                     "candidates"):
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
            (self.readout in space.readouts,
             f"readout for space {self.space!r} must be one of {space.readouts} (or 'auto'), "
             f"got {self.readout!r}"),
            (self.data in DATA_MODES, f"data must be one of {DATA_MODES}, got {self.data!r}"),
            (self.objective in presets.OBJECTIVES,
             f"objective must be one of {presets.OBJECTIVES}, got {self.objective!r}"),
            (self.candidates >= 1 and (self.candidates == 1 or self.objective != "nasi"),
             f"candidates must be 1 with objective 'nasi' (the read-out's cell) and >= 1 with "
             f"'nasi+ensemble'; got {self.candidates!r} with {self.objective!r}"),
            (self.objective != "nasi+ensemble" or get_space(self.space).scorable,
             f"objective 'nasi+ensemble' scores candidate cells: space {self.space!r} cannot score "
             "discrete cells"),
            (isinstance(self.hard, (bool, np.bool_)), f"hard must be True or False, got {self.hard!r}"),
            (self.channels > 0 and self.cells_per_stage >= 1 and self.num_classes > 1,
             f"channels must be > 0, cells_per_stage >= 1 (the searched cell must be in the "
             f"network) and num_classes > 1; got {self.channels}, {self.cells_per_stage}, "
             f"{self.num_classes}"),
            (self.image_size >= 4 and self.image_size % 4 == 0,
             f"image_size must be a multiple of 4 (two stride-2 reductions), got {self.image_size}"),
            (self.init_scheme in ("pytorch", "flax"), f"init_scheme must be 'pytorch' or 'flax', got {self.init_scheme!r}"),
            (self.bn_mode in BN_MODES, f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if self.data == "real" and self.num_classes != NUM_CLASSES:
            raise ValueError(f"data='real' uses CIFAR-10 labels: num_classes must be "
                             f"{NUM_CLASSES}, got {self.num_classes}")
        if self.data != "random" and self.image_size != IMAGE_SHAPE[0]:
            raise ValueError(f"CIFAR-10 images are {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[0]}; "
                             f"image_size must be {IMAGE_SHAPE[0]} with data={self.data!r}")
        return self


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a search runs; never what it computes (every choice gives the same cells).

    Attributes:
        loop: ``scan`` (all T steps and S seeds in one compiled program), ``host`` (one
            compiled step called T times per seed from Python, for XLA:CPU, whose
            convolutions run far slower inside a loop body: jax issue #12868), or ``auto``
            (``host`` on CPU, ``scan`` elsewhere).
        seed_batching: how S seeds share one compiled program. ``map``: one after another
            (``lax.map`` in the scan loop, a Python loop over the compiled step in the host
            loop); ``vmap``: all seeds in one batched program; ``threads`` (host loop): the
            per-seed loops of ``map`` two at a time in threads; ``auto``: ``threads`` on the
            CPU host loop, ``map`` elsewhere (what ``nasi bench`` measured fastest,
            docs/performance.md).
        grad_mode: the second-order gradient: ``fwd-rev`` (a reverse pass over one JVP in
            theta) or ``rev-rev`` (the literal grad of grad); equal results (tested).
        conv_impl: the supernet's convolutions, one of the space's ``conv_impls``
            (:meth:`nasi_jax.spaces.Space.resolve_conv_impl`); ``auto``: the space's choice
            for the backend and step (DARTS on CPU: ``xla-taps`` staged, ``xla-dense`` in one
            program). ``loop-safe`` needs ``grad_mode='rev-rev'``; so does ``xla-taps`` in one
            program.
        step_impl: ``one-program`` or ``staged`` (the same ``(s, grad_A s)`` computed stage
            by stage, :mod:`nasi_jax.search.staged`, for spaces whose one-program step is too
            large to compile on the CPU, or to compile and load it faster); ``auto``: ``staged``
            where the space makes it its default (DARTS; NB201 offers it but defaults to
            ``one-program``, faster per step) and the run is the CPU host loop with
            ``map``/``threads`` seeds and train-mode BatchNorm, else ``one-program``.
    """

    loop: str = "auto"
    seed_batching: str = "auto"
    grad_mode: str = "fwd-rev"
    conv_impl: str = "auto"
    step_impl: str = "auto"

    def resolve(self, cfg: SearchConfig, backend: str | None = None, devices: int = 1) -> "Execution":
        """Every ``auto`` made concrete for ``cfg``'s space on ``backend`` (default: jax's);
        ValueError for impossible combinations."""
        if backend is None:
            import jax
            backend = jax.default_backend()
        space = get_space(cfg.space)
        for name, allowed in (("loop", LOOPS), ("seed_batching", SEED_BATCHING), ("grad_mode", GRAD_MODES),
                              ("step_impl", STEP_IMPLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        loop = self.loop
        if devices > 1:
            if loop == "host":
                raise ValueError("several devices need loop='scan' (or 'auto'): the host loop runs on one device")
            loop = "scan"
        loop = loop if loop != "auto" else ("host" if backend == "cpu" else "scan")
        batching = self.seed_batching
        if batching == "threads" and loop != "host":
            raise ValueError("seed_batching='threads' needs the host loop (loop='host')")
        if batching == "auto":
            batching = "threads" if loop == "host" and backend == "cpu" else "map"
        can_stage = ("staged" in space.step_impls() and loop == "host" and batching != "vmap"
                     and cfg.bn_mode == "train")
        step_impl = self.step_impl if self.step_impl != "auto" else (
            "staged" if can_stage and space.step_impls()[0] == "staged" else "one-program")
        if step_impl == "staged" and not can_stage:
            raise ValueError(f"step_impl='staged' needs a space that offers it (space {cfg.space!r}: "
                             f"{space.step_impls()}) on the host loop (loop 'host' or 'auto' on CPU), "
                             "with seed_batching other than 'vmap' and bn_mode='train'")
        conv_impl = space.resolve_conv_impl(self.conv_impl, backend, step_impl)
        if conv_impl == "loop-safe" and self.grad_mode != "rev-rev":
            raise ValueError("conv_impl='loop-safe' defines reverse-mode derivatives only: use grad_mode='rev-rev'")
        if conv_impl == "xla-taps" and step_impl == "one-program" and self.grad_mode != "rev-rev":
            raise ValueError("conv_impl='xla-taps' runs one program in reverse mode only: use grad_mode='rev-rev' "
                             "or step_impl='staged' (which gives each program the form it needs)")
        return Execution(loop, batching, self.grad_mode, conv_impl, step_impl)


def check_seeds(seeds: Sequence[int]) -> None:
    """Seeds must lie in [0, 2**32): ``PRNGKey(s)`` wraps modulo 2**32, so distinct seeds
    outside that range could share a key."""
    bad = [s for s in seeds if not 0 <= s < 2 ** 32]
    if bad:
        raise ValueError(f"seeds must lie in [0, 2**32); got {bad[:3]}{' ...' if len(bad) > 3 else ''}")
