"""Search spaces built from ``neural_tangents.stax``: every architecture has an exact NTK.

Two small spaces, each given by one op per layer (MLP) or per edge (convolutional cell), in
the NTK parameterisation (``W ~ N(0, 1)``, a layer computes ``W x / sqrt(fan_in)``; no
biases, so that Proposition 2's ``|sigma(x)| <= |x|`` setting applies to ReLU/linear nets):

* ``"mlp"``: ``x -> Dense(w) -> op_1 -> Dense(w) -> op_2 -> Dense(w) -> op_3 -> Dense(K)``,
  ``op_l`` in :data:`MLP_OPS` (``relu``, ``erf``, ``gelu``, ``linear``); 4^3 = 64 nets.
  Written ``"relu-erf-linear"``. Inputs are flattened.
* ``"conv"``: a 3-node NB201-style cell between a 3x3 stem convolution and a readout
  (``ReLU -> global average pool -> Dense(K)``). Node 1 = ``op_01(node 0)``, node 2 =
  ``op_02(node 0) + op_12(node 1)`` (the cell's output). Ops in :data:`CONV_OPS`:
  ``nor_conv_3x3`` / ``nor_conv_1x1`` (ReLU -> conv, NB201's order without BatchNorm, which
  has no infinite-width limit here), ``skip_connect``, ``avg_pool_3x3``. Written in NB201's
  string form, ``"|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"``. The analytic kernel
  of a sum assumes independent branches, so the 8 cells whose two branches are both free of
  convolutions (e.g. ``skip + skip``) have no exact NTK and are rejected; 56 remain.

Each architecture gives neural-tangents' triple ``(init_fn, apply_fn, kernel_fn)``: the
finite network of width ``w`` (hidden units or channels) and its infinite-width kernels,
``kernel_fn(x1, x2, "ntk")`` of shape ``[N1, N2]`` (one output's kernel; the full
``[N1*K, N2*K]`` NTK is that times ``I_K``).

Example:
    >>> import jax
    >>> from nasi_jax.theory import spaces
    >>> init_fn, apply_fn, kernel_fn = spaces.build("mlp", "relu-erf-linear", width=32)
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
    >>> _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    >>> apply_fn(params, x).shape, kernel_fn(x, None, "ntk").shape
    ((4, 10), (4, 4))
"""

from __future__ import annotations

import itertools
import warnings
from typing import Callable, NamedTuple

__all__ = ["CONV_OPS", "MLP_OPS", "SPACES", "SpaceError", "StaxNet", "architectures", "build",
           "parse"]

MLP_OPS = ("relu", "erf", "gelu", "linear")
MLP_DEPTH = 3
CONV_OPS = ("nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3")
CONV_EDGES = ((0, 1), (0, 2), (1, 2))  # (from, to), in the string's order
CONV_FREE = {"skip_connect", "avg_pool_3x3"}
SPACES = ("mlp", "conv")
NUM_CLASSES = 10


class SpaceError(ValueError):
    """An unknown space, op or malformed architecture string."""


class StaxNet(NamedTuple):
    """neural-tangents' ``(init_fn, apply_fn, kernel_fn)`` of one architecture."""
    init_fn: Callable
    apply_fn: Callable
    kernel_fn: Callable


def _stax():
    from nasi_jax.nt_compat import import_neural_tangents
    # parse() has already rejected sums of two convolution-free branches, the case this
    # warning is about; a skip branch beside a convolution branch is independent of it.
    warnings.filterwarnings("ignore", message="`FanIn` layers assume independent inputs")
    # AvgPool says channel_axis=-1 and Conv says 3: the same axis of NHWC inputs.
    warnings.filterwarnings("ignore", message="Got potentially mismatching `channel_axis`")
    return import_neural_tangents().stax


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise SpaceError(f"unknown theory space {space!r}; choose one of {SPACES}")


def parse(space: str, arch: str) -> tuple[str, ...]:
    """Architecture string -> op names (one per layer or edge), with clear errors.

    >>> parse("conv", "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|")
    ('nor_conv_3x3', 'skip_connect', 'nor_conv_1x1')
    """
    _check_space(space)
    if not isinstance(arch, str):
        raise SpaceError(f"architecture must be a string, got {type(arch).__name__}")
    if space == "mlp":
        ops = tuple(arch.split("-"))
        bad = [o for o in ops if o not in MLP_OPS]
        if len(ops) != MLP_DEPTH or bad:
            raise SpaceError(f"malformed mlp architecture {arch!r}: expected {MLP_DEPTH} ops from "
                             f"{MLP_OPS} joined by '-', e.g. 'relu-erf-linear'")
        return ops
    nodes = arch.split("+")
    want = "'|op~0|+|op~0|op~1|' with ops from " + str(CONV_OPS)
    if len(nodes) != 2:
        raise SpaceError(f"malformed conv architecture {arch!r}: expected {want}")
    ops = []
    for node, inputs in zip(nodes, ((0,), (0, 1))):
        parts = node.split("|")
        if len(parts) != len(inputs) + 2 or parts[0] or parts[-1]:
            raise SpaceError(f"malformed conv architecture {arch!r}: expected {want}")
        for tok, j in zip(parts[1:-1], inputs):
            op, _, src = tok.partition("~")
            if op not in CONV_OPS:
                raise SpaceError(f"unknown op {op!r} in {arch!r}; ops are {CONV_OPS}")
            if src != str(j):
                raise SpaceError(f"malformed conv architecture {arch!r}: edge {tok!r} should "
                                 f"read from node {j}; expected {want}")
            ops.append(op)
    ops = (ops[0], ops[1], ops[2])
    if ops[1] in CONV_FREE and ops[0] in CONV_FREE and ops[2] in CONV_FREE:
        raise SpaceError(f"{arch!r} sums two branches without a convolution, whose outputs are "
                         "not independent: neural-tangents' infinite-width kernel would be wrong. "
                         "Put a nor_conv op on at least one branch")
    return ops


def to_string(space: str, ops) -> str:
    """Op names -> the architecture string (inverse of :func:`parse`)."""
    _check_space(space)
    if space == "mlp":
        return "-".join(ops)
    return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|"


def architectures(space: str) -> list[str]:
    """Every valid architecture of ``space`` (64 for mlp, 56 for conv), in a fixed order."""
    _check_space(space)
    ops = MLP_OPS if space == "mlp" else CONV_OPS
    out = []
    for combo in itertools.product(ops, repeat=3):
        s = to_string(space, combo)
        try:
            parse(space, s)
        except SpaceError:
            continue
        out.append(s)
    return out


def _mlp_op(stax, name: str, width: int):
    act = {"relu": stax.Relu, "erf": stax.Erf, "gelu": lambda: stax.Gelu(approximate=False),
           "linear": stax.Identity}[name]
    return stax.serial(stax.Dense(width, W_std=1.0, b_std=None), act())


def _conv_op(stax, name: str, width: int):
    if name == "nor_conv_3x3":
        return stax.serial(stax.Relu(), stax.Conv(width, (3, 3), padding="SAME", b_std=None))
    if name == "nor_conv_1x1":
        return stax.serial(stax.Relu(), stax.Conv(width, (1, 1), padding="SAME", b_std=None))
    if name == "skip_connect":
        return stax.Identity()
    return stax.AvgPool((3, 3), strides=(1, 1), padding="SAME")


def build(space: str, arch: str, width: int, num_classes: int = NUM_CLASSES) -> StaxNet:
    """The network ``arch`` of ``space`` at ``width``: ``(init_fn, apply_fn, kernel_fn)``.

    ``apply_fn(params, x) -> [N, num_classes]``; inputs are ``[N, d]`` (mlp; images are
    flattened) or ``[N, H, W, C]`` (conv). The kernel does not depend on ``width``.
    """
    ops = parse(space, arch)
    if int(width) != width or width < 1:
        raise SpaceError(f"width must be a positive integer, got {width!r}")
    width = int(width)
    stax = _stax()
    if space == "mlp":
        layers = [stax.Flatten()] + [_mlp_op(stax, o, width) for o in ops]
        layers.append(stax.Dense(num_classes, W_std=1.0, b_std=None))
        return StaxNet(*stax.serial(*layers))
    op01, op02, op12 = (_conv_op(stax, o, width) for o in ops)
    cell = stax.serial(stax.FanOut(2), stax.parallel(op02, stax.serial(op01, op12)),
                       stax.FanInSum())
    return StaxNet(*stax.serial(
        stax.Conv(width, (3, 3), padding="SAME", b_std=None), cell,
        stax.Relu(), stax.GlobalAvgPool(), stax.Dense(num_classes, W_std=1.0, b_std=None)))
