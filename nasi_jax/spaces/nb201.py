"""The NAS-Bench-201 search space: ops, cell, macro network, supernet and codec.

NB201 (Dong & Yang, ICLR 2020) searches one cell, a DAG of 4 nodes whose 6 edges
``j -> i`` (``j < i``) each carry one of 5 ops::

    none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3

``nor_conv_kxk`` is ReLU -> Conv(k, bias=False) -> BatchNorm; ``avg_pool_3x3`` is a
3x3/stride-1 average pool that does not count the padding. Node ``i`` is the sum of
its incoming edges; node 0 is the cell input and node 3 its output. There are
``5**6 = 15 625`` cells.

The macro network (``C=16, N=5``, 10 classes for CIFAR-10)::

    stem: Conv3x3(3 -> C) + BN
    N cells at C  | ResBlock(C -> 2C, stride 2)  | N cells at 2C
                  | ResBlock(2C -> 4C, stride 2) | N cells at 4C
    BN + ReLU, global average pool, Linear(4C -> classes)

The ResBlock is NB201's basic block: ReLUConvBN(3x3, stride 2) -> ReLUConvBN(3x3)
plus the shortcut AvgPool(2, 2) -> Conv1x1(bias=False).

Architectures are represented three ways (the *codec*):

* the official string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (incoming edges of
  nodes 1, 2, 3; ``op~j`` is the edge from node j);
* op indices, a tuple of 6 ints in the string's edge order
  ``0->1, 0->2, 1->2, 0->3, 1->3, 2->3`` (:data:`EDGES`), each indexing :data:`OPS`;
* the benchmark index (0 ... 15 624), which is the row of the NB201 table; the
  order is the benchmark's own, so it needs the table (:mod:`nasi_jax.bench`).

The supernet takes the architecture as an input array ``arch_weights`` of shape
``[6, 5]`` (edges x ops): edge ``e`` computes ``sum_k arch_weights[e, k] * op_k``.
A one-hot ``arch_weights`` gives exactly the discrete cell's output, so one compiled
function serves every architecture, Gumbel sample and seed.

When the ``relu_codes`` collection (:data:`RELU_CODES`) is mutable, every ReLU the
network runs sows the binary-code kernel of its input (:func:`relu_code_kernel`, NASWOT's
``K_H`` term), scaled by its edge's architecture weight inside a cell (so with one-hot
weights the ops a cell does not use add 0) and by 1 elsewhere; their sum is NASWOT's
kernel (:func:`nasi_jax.proxies.naswot`). When it is not mutable nothing is computed.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.spaces import nb201
    >>> ops = nb201.parse_arch("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    >>> ops
    (3, 0, 3, 1, 0, 1)
    >>> net = nb201.NB201Network()
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> variables = net.init(jax.random.PRNGKey(0), x, nb201.one_hot(ops), train=False)
    >>> net.apply(variables, x, nb201.one_hot(ops), train=False).shape
    (2, 10)
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import conv as _conv

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_OPS", "NUM_ARCHS", "ArchError",
    "parse_arch", "arch_to_str", "ops_to_code", "code_to_ops", "all_arch_strs", "one_hot",
    "is_degenerate", "NB201Network", "count_params", "count_flops", "RELU_CODES", "relu_code_kernel",
]

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)
NUM_ARCHS = NUM_OPS ** NUM_EDGES
_NODES_IN = ((0,), (0, 1), (0, 1, 2))  # sources of nodes 1, 2, 3
_TOKEN = re.compile(r"^([a-z0-9_]+)~(\d+)$")
EXAMPLE_ARCH = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


class ArchError(ValueError):
    """A malformed NB201 architecture (string, op indices or weights)."""


# --------------------------------------------------------------------------- codec

def parse_arch(arch: str) -> tuple[int, ...]:
    """NB201 string -> op indices (6 ints, edge order :data:`EDGES`).

    Raises :class:`ArchError` naming the problem and showing a valid example.
    """
    hint = f"expected 3 '+'-separated groups like {EXAMPLE_ARCH!r} with ops from {OPS}"
    if not isinstance(arch, str):
        raise ArchError(f"architecture must be a string, got {type(arch).__name__}; {hint}")
    groups = arch.strip().split("+")
    if len(groups) != 3:
        raise ArchError(f"malformed NB201 architecture {arch!r}: {len(groups)} node groups; {hint}")
    ops: list[int] = []
    for node, (group, sources) in enumerate(zip(groups, _NODES_IN), start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise ArchError(f"malformed NB201 architecture {arch!r}: group {group!r} of node {node} "
                            f"must be wrapped in '|'; {hint}")
        tokens = group[1:-1].split("|")
        if len(tokens) != len(sources):
            raise ArchError(f"malformed NB201 architecture {arch!r}: node {node} needs {len(sources)} "
                            f"incoming edges, got {len(tokens)}; {hint}")
        for src, token in zip(sources, tokens):
            m = _TOKEN.match(token)
            if not m:
                raise ArchError(f"malformed NB201 architecture {arch!r}: edge token {token!r} is not "
                                f"'op~source'; {hint}")
            name, j = m.group(1), int(m.group(2))
            if name not in OPS:
                raise ArchError(f"unknown op {name!r} in {arch!r}; NB201 ops are {OPS}")
            if j != src:
                raise ArchError(f"malformed NB201 architecture {arch!r}: node {node}'s edges must come "
                                f"from nodes {sources} in order, got '~{j}' where '~{src}' was expected")
            ops.append(OPS.index(name))
    # string order is per destination node: (0,1) | (0,2),(1,2) | (0,3),(1,3),(2,3) == EDGES
    return tuple(ops)


def _check_ops(ops: Sequence[int]) -> tuple[int, ...]:
    ops = tuple(ops)
    if any(isinstance(o, bool) or not isinstance(o, (int, np.integer)) for o in ops):
        raise ArchError(f"NB201 op indices must be integers, got {ops}")
    ops = tuple(int(o) for o in ops)
    if len(ops) != NUM_EDGES or any(not 0 <= o < NUM_OPS for o in ops):
        raise ArchError(f"NB201 op indices must be {NUM_EDGES} ints in [0, {NUM_OPS}), got {ops}")
    return ops


def arch_to_str(ops: Sequence[int]) -> str:
    """Op indices -> NB201 string (inverse of :func:`parse_arch`)."""
    ops = _check_ops(ops)
    it = iter(ops)
    groups = ["|" + "|".join(f"{OPS[next(it)]}~{j}" for j in sources) + "|" for sources in _NODES_IN]
    return "+".join(groups)


def ops_to_code(ops: Sequence[int]) -> int:
    """Op indices -> base-5 integer code (0 ... 15 624). Not the benchmark index."""
    code = 0
    for o in _check_ops(ops):
        code = code * NUM_OPS + o
    return code


def code_to_ops(code: int) -> tuple[int, ...]:
    """Base-5 code -> op indices (inverse of :func:`ops_to_code`)."""
    if isinstance(code, bool) or not isinstance(code, (int, np.integer)) or not 0 <= code < NUM_ARCHS:
        raise ArchError(f"NB201 code must be in [0, {NUM_ARCHS}), got {code}")
    digits = []
    for _ in range(NUM_EDGES):
        code, d = divmod(code, NUM_OPS)
        digits.append(d)
    return tuple(reversed(digits))


def all_arch_strs() -> Iterator[str]:
    """All 15 625 NB201 strings in base-5 code order (not the benchmark's order)."""
    for code in range(NUM_ARCHS):
        yield arch_to_str(code_to_ops(code))


def one_hot(ops: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Op indices -> architecture weights ``[6, 5]`` (one-hot rows)."""
    return jax.nn.one_hot(jnp.asarray(_check_ops(ops)), NUM_OPS, dtype=dtype)


def is_degenerate(ops: Sequence[int]) -> bool:
    """True when no path of non-``none`` edges joins node 0 to node 3 (constant output)."""
    ops = _check_ops(ops)
    reach = {0}
    for (j, i), o in zip(EDGES, ops):  # EDGES is topologically ordered by destination
        if o != 0 and j in reach:
            reach.add(i)
    return 3 not in reach


# --------------------------------------------------------------------------- init

def _torch_uniform(fan_in: int):
    """PyTorch's default Conv/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv_fn(conv_impl: str):
    if conv_impl == "xla":
        return jax.lax.conv_general_dilated
    if conv_impl == "loop-safe":
        return _conv.conv_general_dilated
    raise ValueError(f"unknown conv_impl {conv_impl!r}; choose one of {_conv.CONV_IMPLS}")


def _kernel_init(init: str):
    if init == "pytorch":  # kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    if init == "flax":
        return nn.initializers.lecun_normal()
    raise ValueError(f"unknown init {init!r}; choose 'pytorch' (the paper's scale) or 'flax'")


# --------------------------------------------------------------------------- modules

RELU_CODES = "relu_codes"


def relu_code_kernel(z: jax.Array) -> jax.Array:
    """NASWOT's kernel of one ReLU: ``c c^T + (1 - c)(1 - c)^T`` with ``c = (z > 0)``.

    ``z``: the ReLU's input ``[B, ...]``, flattened per example to ``[B, n]``; entry
    ``(i, j)`` is ``n`` minus the Hamming distance of the codes of examples ``i`` and ``j``
    (an integer, exact in float32 for ``n < 2**24``).

    Example:
        >>> import jax.numpy as jnp
        >>> relu_code_kernel(jnp.array([[1., -2., 3.], [-1., -2., 3.]]))
        Array([[3., 2.],
               [2., 3.]], dtype=float32)
    """
    c = (z > 0).reshape(z.shape[0], -1).astype(z.dtype)
    return c @ c.T + (1 - c) @ (1 - c).T


def _relu(mdl: nn.Module, x, weight=None):
    """``relu(x)``; sows :func:`relu_code_kernel` (times ``weight``) into ``relu_codes``
    when that collection is mutable."""
    if mdl.is_mutable_collection(RELU_CODES):
        k = relu_code_kernel(x)
        mdl.sow(RELU_CODES, "kernel", k if weight is None else k * jnp.asarray(weight).astype(k.dtype))
    return nn.relu(x)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv(k x k, stride, padding (k-1)//2, no bias) -> BatchNorm (affine).

    ``code_weight`` scales the ReLU's sown code kernel (module docstring); None means 1.
    """

    features: int
    kernel: int
    stride: int = 1
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, train: bool, code_weight=None):
        p = (self.kernel - 1) // 2
        x = _relu(self, x, code_weight)
        x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                    padding=((p, p), (p, p)), use_bias=False, kernel_init=_kernel_init(self.init_scheme),
                    dtype=self.dtype, param_dtype=self.dtype,
                    conv_general_dilated=_conv_fn(self.conv_impl))(x)
        return _bn(x, train, self.dtype)


def _bn(x, train: bool, dtype):
    # PyTorch BatchNorm2d: eps 1e-5, momentum 0.1 (flax: 0.9), affine weight 1 / bias 0.
    # two-pass variance (as PyTorch), steadier in float32 than E[x^2] - E[x]^2
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_fast_variance=False, dtype=dtype, param_dtype=dtype)(x)


def _avg_pool_3x3(x):
    """3x3 / stride 1 / pad 1 average that ignores the padding (``count_include_pad=False``).

    The divisor (9 inside, 6 on edges, 4 in corners) is a NumPy constant: computing it with
    a reduce-window over ones, as generic pooling does, makes XLA constant-fold it slowly.
    """
    h, w = x.shape[-3], x.shape[-2]
    ones = np.ones((h + 2, w + 2), np.float32)
    ones[0, :] = ones[-1, :] = ones[:, 0] = ones[:, -1] = 0
    counts = sum(ones[i:i + h, j:j + w] for i in range(3) for j in range(3))
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1),
                                   (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return summed * jnp.asarray(1.0 / counts, x.dtype)[:, :, None]


class Edge(nn.Module):
    """One edge ``j -> i``.

    ``weights`` is either ``[5]`` floats (the supernet: ``sum_k weights[k] * op_k(x)``) or a
    scalar integer op index (``lax.switch`` runs only that op: one compiled function scores
    any discrete cell with the supernet's weights). ``fixed`` keeps one op only (the
    discrete network, whose parameters are the chosen ops' subset of the supernet's).
    """

    features: int
    fixed: int | None = None
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    def _op(self, mdl, x, k, train, code_weight=None):
        name = OPS[k]
        if name == "none":
            return jnp.zeros_like(x)
        if name == "skip_connect":
            return x
        if name in ("nor_conv_1x1", "nor_conv_3x3"):
            return ReLUConvBN(self.features, 1 if name == "nor_conv_1x1" else 3,
                              init_scheme=self.init_scheme, dtype=self.dtype,
                              conv_impl=self.conv_impl, parent=mdl, name=name)(x, train, code_weight)
        if name == "avg_pool_3x3":
            return _avg_pool_3x3(x)
        raise AssertionError(name)

    @nn.compact
    def __call__(self, x, weights, train: bool):
        if self.fixed is not None:
            return None if self.fixed == 0 else self._op(self, x, self.fixed, train)
        if jnp.issubdtype(jnp.asarray(weights).dtype, jnp.integer):
            if self.is_initializing():
                raise ArchError("initialise with arch_weights [6, 5] (the supernet creates every "
                                "op's weights); op indices only select among them")
            if self.is_mutable_collection(RELU_CODES):
                raise ArchError("relu_codes needs float arch_weights (e.g. nb201.one_hot(ops)) or "
                                "a fixed network, not integer op indices")
            branches = [functools.partial(self._op, k=k, train=train) for k in range(NUM_OPS)]
            return nn.switch(jnp.asarray(weights), branches, self, x)
        # 'none' is the zero op: weights[0] * 0 adds nothing, so it is skipped.
        out = None
        for k in range(1, NUM_OPS):
            y = weights[k].astype(x.dtype) * self._op(self, x, k, train, code_weight=weights[k])
            out = y if out is None else out + y
        return out


class Cell(nn.Module):
    """NB201 cell: node_i = sum_{j<i} edge_{j->i}(node_j); output node 3. ``x``: [B,H,W,C]."""

    features: int
    fixed: tuple[int, ...] | None = None
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, arch_weights, train: bool):
        nodes = [x]
        e = 0
        for i, sources in enumerate(_NODES_IN, start=1):
            total = None
            for j in sources:
                fixed = None if self.fixed is None else self.fixed[e]
                w = None if arch_weights is None else arch_weights[e]
                y = Edge(self.features, fixed, self.init_scheme, self.dtype, self.conv_impl,
                         name=f"edge_{j}_{i}")(nodes[j], w, train)
                if y is not None:
                    total = y if total is None else total + y
                e += 1
            nodes.append(jnp.zeros_like(x) if total is None else total)
        return nodes[3]


class ResBlock(nn.Module):
    """NB201's basic residual block with stride 2 (the reduction between stages)."""

    features: int
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, train: bool):
        y = ReLUConvBN(self.features, 3, 2, self.init_scheme, self.dtype, self.conv_impl, name="conv_a")(x, train)
        y = ReLUConvBN(self.features, 3, 1, self.init_scheme, self.dtype, self.conv_impl, name="conv_b")(y, train)
        s = nn.avg_pool(x, (2, 2), (2, 2))
        s = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=_kernel_init(self.init_scheme),
                    dtype=self.dtype, param_dtype=self.dtype, name="shortcut",
                    conv_general_dilated=_conv_fn(self.conv_impl))(s)
        return s + y


class NB201Network(nn.Module):
    """NB201 macro network / supernet.

    Attributes:
        channels: C, the first stage's width (NB201: 16).
        cells_per_stage: N (NB201: 5).
        num_classes: logits K (CIFAR-10: 10).
        fixed: op indices of one cell to build the discrete network (only the chosen
            ops' weights exist; ``arch_weights`` is then ignored and may be None).
            None builds the supernet, whose edges mix all ops by ``arch_weights``.
        init_scheme: 'pytorch' (default; PyTorch's default init, the scale of the paper's nu
            values) or 'flax' (lecun normal, zero bias).
        dtype: parameter and computation dtype.
        conv_impl: 'xla' (``lax.conv_general_dilated``) or 'loop-safe'
            (:mod:`nasi_jax.conv`: same values, a derivative that stays fast inside
            XLA:CPU loops and conditionals).

    ``__call__(x [B,H,W,3], arch_weights, train) -> logits [B,K]``. ``arch_weights`` is
    ``[6,5]`` floats (the supernet's mixture), ``[6]`` integer op indices (the supernet's
    weights, only the chosen op run on each edge through ``lax.switch``; the parameters
    must come from a supernet ``init``), or None with ``fixed``. With ``train=True``
    BatchNorm uses batch statistics (apply with ``mutable=['batch_stats']``).
    """

    channels: int = 16
    cells_per_stage: int = 5
    num_classes: int = 10
    fixed: tuple[int, ...] | None = None
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, arch_weights=None, train: bool = True):
        if self.fixed is None:
            if arch_weights is None:
                raise ArchError("the supernet needs arch_weights of shape [6, 5]; "
                                "pass nb201.one_hot(ops) for a single cell")
            arch_weights = jnp.asarray(arch_weights)
            if jnp.issubdtype(arch_weights.dtype, jnp.integer):
                if arch_weights.shape != (NUM_EDGES,):
                    raise ArchError(f"integer arch_weights are op indices of shape ({NUM_EDGES},), "
                                    f"got {arch_weights.shape}")
            elif arch_weights.shape != (NUM_EDGES, NUM_OPS):
                raise ArchError(f"arch_weights must have shape {(NUM_EDGES, NUM_OPS)}, "
                                f"got {arch_weights.shape}")
        else:
            _check_ops(self.fixed)
        x = x.astype(self.dtype)
        C = self.channels
        x = nn.Conv(C, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=_kernel_init(self.init_scheme), dtype=self.dtype,
                    param_dtype=self.dtype, name="stem_conv",
                    conv_general_dilated=_conv_fn(self.conv_impl))(x)
        x = _bn(x, train, self.dtype)
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                x = ResBlock(width, self.init_scheme, self.dtype, self.conv_impl, name=f"reduce_{stage}")(x, train)
            for n in range(self.cells_per_stage):
                x = Cell(width, self.fixed, self.init_scheme, self.dtype, self.conv_impl,
                         name=f"cell_{stage}_{n}")(
                    x, arch_weights, train)
        x = _relu(self, _bn(x, train, self.dtype))
        x = jnp.mean(x, axis=(1, 2))
        fan_in = x.shape[-1]
        if self.init_scheme == "pytorch":
            k_init, b_init = _torch_uniform(fan_in), _torch_uniform(fan_in)
        else:
            k_init, b_init = _kernel_init(self.init_scheme), nn.initializers.zeros
        return nn.Dense(self.num_classes, kernel_init=k_init, bias_init=b_init,
                        dtype=self.dtype, param_dtype=self.dtype, name="classifier")(x)


# --------------------------------------------------------------------------- cost

def count_params(ops: Sequence[int], *, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = 10, image_size: int = 32) -> int:
    """Trainable parameters of the discrete network (BN affine included, running stats not).

    Computed from the Flax module's own parameter shapes (``jax.eval_shape``, no compute).
    """
    net = NB201Network(channels, cells_per_stage, num_classes, fixed=_check_ops(ops))
    shapes = jax.eval_shape(lambda k: net.init(k, jnp.zeros((1, image_size, image_size, 3)),
                                                None, train=False), jax.random.PRNGKey(0))
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes["params"])))


def count_flops(ops: Sequence[int], *, channels: int = 16, cells_per_stage: int = 5,
                num_classes: int = 10, image_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass of the discrete network, for one image.

    Counted: per convolution ``H_out*W_out*C_out*C_in*k*k``, and the classifier's
    ``in*out + out``. Not counted: BatchNorm, ReLU, pooling and additions. The NB201 API's
    ``flops`` (e.g. NAS-Bench-Suite-Zero's column) also count those element-wise ops; over
    400 cells its value minus ours was ``0.1608 + 0.4301 * n_conv + 1.2902 * n_pool`` MFLOPs
    (``n_conv``/``n_pool``: conv / avg-pool edges of the cell; residual < 1e-6), e.g. the
    ResNet-like cell: 78.562 here, 79.583 there.
    """
    ops = _check_ops(ops)
    C, hw = channels, image_size
    macs = hw * hw * C * 3 * 9  # stem
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage > 0:
            cin = width // 2
            hw //= 2
            macs += hw * hw * width * cin * 9 + hw * hw * width * width * 9 + hw * hw * width * cin
        per_cell = sum(hw * hw * width * width * (1 if OPS[o] == "nor_conv_1x1" else 9)
                       for o in ops if OPS[o] in ("nor_conv_1x1", "nor_conv_3x3"))
        macs += cells_per_stage * per_cell
    macs += 4 * C * num_classes + num_classes
    return int(macs)
