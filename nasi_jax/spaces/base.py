"""The :class:`Space` interface: everything the search, the scorer and the CLI ask of a space.

A search space is an object, not a set of ``if space == ...`` branches: NAS-Bench-201
(:mod:`nasi_jax.spaces.nb201`) and DARTS (:mod:`nasi_jax.spaces.darts`) each implement
:class:`Space`, and :func:`nasi_jax.spaces.register` adds a third one from outside the
package. The contract:

* **Architecture logits** ``alpha`` have shape :attr:`Space.alpha_shape` (NB201 ``[6, 5]``:
  edges x ops; DARTS ``[2, 14, 8]``: normal and reduction cell). A discrete architecture is
  an integer array of op indices of shape ``alpha_shape[:-1]`` (its *ops*).
* **Supernet** (:meth:`Space.supernet`): a Flax module ``net(x [B, H, W, 3], arch_weights,
  train) -> logits [B, K]`` whose architecture weights have ``alpha_shape``; a one-hot
  weight gives the discrete architecture's output. One compiled search step serves every
  architecture, sample and seed.
* **Read-out** (:meth:`Space.read_out`): ``alpha* -> ops``, traceable; :attr:`readouts`
  names the rules the space allows.
* **Codec**: :meth:`to_text` / :meth:`parse` between ops and the space's text form.
* **Size**: :meth:`describe` gives what a result reports of a selected architecture
  (parameters, FLOPs, ...).
* **Execution** (not the maths): :meth:`resolve_conv_impl` and :meth:`step_impls`; the
  staged step (:mod:`nasi_jax.search.staged`) asks :meth:`stages` for the supernet's graph.
* **Scoring discrete cells** (optional, :attr:`scorable`): :meth:`scoring_network` (integer
  ops select one op per edge with ``lax.switch``), :meth:`cost` (parameter and FLOP counts as
  jit-able functions of the ops), the cell codes :meth:`code_to_ops` / :meth:`ops_to_code`
  and :attr:`num_archs`.

Defaults here serve a cell space whose ops are one categorical per edge: read-outs ``argmax``
and ``argmax-no-none`` over the last axis, codes in base ``K``, convolution ``xla``, one
compiled step program.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

__all__ = ["Space", "Stage", "ArchitectureError", "CELL_READOUTS"]

CELL_READOUTS = ("argmax", "argmax-no-none")
"""Read-outs of a space whose ops are one categorical per edge (op 0 is ``none``)."""


class ArchitectureError(ValueError):
    """A malformed architecture (text, op indices or weights) for a space."""


class Stage(NamedTuple):
    """One node of a supernet written as a graph of small programs (:meth:`Space.stages`).

    ``apply(params_i, carry, a, y) -> value``; the last stage returns the scalar loss.

    * ``carry``: the value of the one stage named by ``inputs`` (or a tuple of the values of
      several); ``inputs=None`` means the previous stage's output (a chain), ``-1`` the input
      images ``x``. Inputs come before the stage in the list.
    * ``params_i``: ``{k: params[k] for k in keys}`` (top-level collections), or, when ``path``
      is given, the subtree ``params[path[0]][path[1]]...`` itself, so that stages of one shape
      (the edges of a cell) share their compiled programs.
    * ``a``: ``A[a_index]`` (``a_index=None``: all of ``A``).
    * ``vjp_apply``: the same function in a form for reverse mode alone (``jax.vjp``), used by
      the staged step's first reverse pass; None: ``apply``. ``apply`` itself must allow
      ``jax.jvp`` and reverse mode over it (DARTS: depthwise convolutions with hand-written
      rules, :mod:`nasi_jax.spaces.darts.taps`, one form per mode).
    * ``linear_in_a``: ``a`` is a scalar and ``apply`` is linear in it,
      ``apply(p, c, a, y) == a * apply(p, c, 1, y)`` (DARTS: one op of a mixed edge, weighted
      by its entry of ``A``). Where that entry is exactly 0 (a hard sample's unchosen ops) the
      stage's value, its ``grad_theta``, its tangent and what it passes back are exactly
      zero, so the staged step skips those programs and takes ``d/da`` from one forward-mode
      program (:func:`nasi_jax.search.staged.chain_trace_and_grad`).

    Every parameter belongs to exactly one stage (checked by the staged step).
    """

    name: str
    keys: tuple[str, ...]
    apply: Callable
    inputs: tuple[int, ...] | None = None
    a_index: tuple[int, ...] | None = None
    path: tuple[str, ...] | None = None
    vjp_apply: Callable | None = None
    linear_in_a: bool = False


class Space(abc.ABC):
    """A search space (see the module docstring for the contract).

    Attributes:
        name: the name used by ``--space`` and ``SearchConfig(space=...)``.
        alpha_shape: shape of the architecture logits; ops have shape ``alpha_shape[:-1]``.
        readouts: the read-out rules this space allows.
        conv_impls: the convolution implementations its supernet offers (``auto`` aside).
        example: one architecture in text form, for messages.
        scorable: whether :mod:`nasi_jax.scoring` can score its discrete architectures.
        relu_codes: the Flax collection into which the scoring network sows NASWOT's ReLU
            code kernels (None: the space does not; ``naswot`` is then unavailable).
        probes: the collection into which the network, given float one-hot architecture
            weights, sows its layers' outputs ``{"x", "w"}`` under ``relu`` / ``layer`` (the
            op's weight ``w``: 0 for ops a cell does not use); None: ``meco``/``swap``
            are unavailable.
        blocks: the collection into which it sows its blocks' outputs ``f_0`` (stem),
            ``f_1, ...`` (names sort in order), and ``block_taps``: the collection whose
            variables ``in{i:03d}`` make block ``i+1`` see ``stop_gradient(f_i) + tap``
            (:func:`nasi_jax.scoring.proxies.block_vjps`); None: the AZ-NAS scores are
            unavailable.
        benchmark: the accuracy table ``--benchmark`` reads for this space (``nb201``:
            :mod:`nasi_jax.nb201_table`), or None.
    """

    name: str
    alpha_shape: tuple[int, ...]
    readouts: tuple[str, ...] = CELL_READOUTS
    conv_impls: tuple[str, ...] = ("xla",)
    example: str = ""
    scorable: bool = False
    relu_codes: str | None = None
    probes: str | None = None
    blocks: str | None = None
    block_taps: str | None = None
    benchmark: str | None = None

    def __repr__(self) -> str:
        return f"<space {self.name}: alpha {list(self.alpha_shape)}>"

    # ----------------------------------------------------------------- networks
    @abc.abstractmethod
    def supernet(self, *, channels: int, cells_per_stage: int, num_classes: int, init_scheme: str,
                 conv_impl: str, dtype: Any = jnp.float32):
        """The supernet module: ``net(x, arch_weights [alpha_shape], train) -> logits``."""

    def stages(self, net) -> list[Stage]:
        """The supernet ``net`` as a graph of :class:`Stage` (train-mode BatchNorm, mean
        cross-entropy at the end), for the staged step (:mod:`nasi_jax.search.staged`);
        spaces without one raise."""
        raise NotImplementedError(f"space {self.name!r} has no staged step")

    # ----------------------------------------------------------------- execution
    def resolve_conv_impl(self, conv_impl: str, backend: str, step_impl: str = "one-program") -> str:
        """``auto`` -> the implementation to use on ``backend`` for the search step ``step_impl``
        (``one-program`` or ``staged``); others are checked."""
        if conv_impl == "auto":
            return self.conv_impls[0]
        if conv_impl not in self.conv_impls:
            raise ValueError(f"conv_impl for space {self.name!r} must be one of {self.conv_impls} "
                             f"(or 'auto'), got {conv_impl!r}")
        return conv_impl

    def step_impls(self) -> tuple[str, ...]:
        """The step implementations this space offers; the first is the default where the
        runner can use it."""
        return ("one-program",)

    # ----------------------------------------------------------------- read-out and codec
    def read_out(self, alpha_star, readout: str):
        """``alpha* [..., *alpha_shape] -> ops [..., *alpha_shape[:-1]]`` (traceable).

        ``argmax``: per edge the largest logit; ``argmax-no-none``: the same without op 0.
        """
        if readout not in self.readouts:
            raise ValueError(f"readout for space {self.name!r} must be one of {self.readouts}, "
                             f"got {readout!r}")
        if readout == "argmax":
            return jnp.argmax(alpha_star, axis=-1)
        if readout == "argmax-no-none":
            return 1 + jnp.argmax(alpha_star[..., 1:], axis=-1)
        raise NotImplementedError(f"space {self.name!r} lists read-out {readout!r} but does not define it")

    @abc.abstractmethod
    def to_text(self, ops) -> str:
        """Op indices -> the space's text form."""

    @abc.abstractmethod
    def parse(self, text: str) -> tuple:
        """The space's text form -> op indices (:class:`ArchitectureError` when malformed)."""

    def check_ops(self, ops) -> tuple[int, ...]:
        """Flat op indices as a tuple of ints, checked against ``alpha_shape``."""
        flat = list(np.asarray(ops, dtype=object).reshape(-1))
        want = math.prod(self.alpha_shape[:-1])
        if (len(flat) != want or any(isinstance(o, (bool, np.bool_)) or not isinstance(o, (int, np.integer))
                                     for o in flat)
                or any(not 0 <= int(o) < self.alpha_shape[-1] for o in flat)):
            raise ArchitectureError(f"{self.name} op indices must be {want} ints in "
                                    f"[0, {self.alpha_shape[-1]}), got {ops}")
        return tuple(int(o) for o in flat)

    def describe(self, ops) -> dict[str, Any]:
        """What a result file and the printed summary report of a selected architecture
        (e.g. ``params_M``, ``flops_M``); empty by default."""
        return {}

    def lookup_hint(self) -> str | None:
        """One line printed after a search: how to learn the selected cells' accuracy."""
        return None

    # ----------------------------------------------------------------- scoring
    @property
    def num_archs(self) -> int:
        """Number of discrete architectures (``K ** edges`` for a cell space)."""
        return self.alpha_shape[-1] ** math.prod(self.alpha_shape[:-1])

    def ops_to_code(self, ops) -> int:
        """Op indices -> base-``K`` integer code (``0 .. num_archs - 1``)."""
        code = 0
        for o in self.check_ops(ops):
            code = code * self.alpha_shape[-1] + o
        return code

    def code_to_ops(self, code: int) -> tuple[int, ...]:
        """Inverse of :meth:`ops_to_code`."""
        if isinstance(code, bool) or not isinstance(code, (int, np.integer)) or not 0 <= code < self.num_archs:
            raise ArchitectureError(f"{self.name} code must be in [0, {self.num_archs}), got {code}")
        digits = []
        for _ in range(math.prod(self.alpha_shape[:-1])):
            code, d = divmod(int(code), self.alpha_shape[-1])
            digits.append(d)
        return tuple(reversed(digits))

    def scoring_network(self, *, channels: int, cells_per_stage: int, num_classes: int,
                        init_scheme: str, conv_impl: str, dtype: Any = jnp.float32):
        """The network that scores discrete cells: the supernet, also taking integer ops
        (only the chosen op runs on each edge). Defaults to :meth:`supernet`."""
        return self.supernet(channels=channels, cells_per_stage=cells_per_stage, num_classes=num_classes,
                             init_scheme=init_scheme, conv_impl=conv_impl, dtype=dtype)

    def resolve_scoring_conv_impl(self, conv_impl: str, backend: str) -> str:
        """``auto`` for the scorer, whose convolutions run inside ``lax.switch``."""
        return self.resolve_conv_impl(conv_impl, backend)

    def cost(self, kind: str, *, channels: int, cells_per_stage: int, num_classes: int,
             image_size: int) -> Callable:
        """A jit-able ``ops -> count`` for ``kind`` in ``('params', 'flops')`` of the discrete
        network; spaces without one raise."""
        raise NotImplementedError(f"space {self.name!r} has no {kind} count for scoring")

    def check_cells(self, cells: Sequence) -> list[tuple[int, ...]]:
        """Cells given as text or op indices -> op tuples (checked)."""
        return [self.parse(c) if isinstance(c, str) else self.check_ops(c) for c in cells]
