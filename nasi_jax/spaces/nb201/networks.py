"""NB201's modules: ops, the cell, the residual reduction block and the macro network.

``NB201Network`` is both the supernet (architecture weights ``[6, 5]`` as an input, or
integer op indices ``[6]`` that select one op per edge with ``lax.switch``) and, with
``fixed``, the discrete network whose parameters are the chosen ops' subset of the supernet's.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces._init import conv_fn, kernel_init, torch_uniform
from nasi_jax.spaces.nb201.codec import _NODES_IN, NUM_EDGES, NUM_OPS, OPS, ArchError, _check_ops

RELU_CODES = "relu_codes"
BLOCKS = "blocks"          # sown block outputs f_0 (stem), f_1 ... (each cell and reduction)
BLOCK_TAPS = "block_taps"  # given: block i+1's input is stop_gradient(f_i) + tap_i
PROBES = "probes"          # sown layer outputs (with their op weight) for forward-only proxies


def _probe(mdl: nn.Module, kind: str, x, weight=None):
    """Sow ``{"x": x, "w": weight}`` under ``kind`` (``relu``: a ReLU's output; ``layer``:
    any other layer's output) into ``probes`` when that collection is mutable; ``weight``
    is the op's architecture weight inside a cell (1 elsewhere)."""
    if mdl.is_mutable_collection(PROBES):
        w = jnp.ones((), x.dtype) if weight is None else jnp.asarray(weight).astype(x.dtype)
        mdl.sow(PROBES, kind, {"x": x, "w": w})
    return x


def _block_out(mdl: nn.Module, i: int, x):
    """Sow block ``i``'s output into ``blocks`` when mutable (names sort in block order)."""
    if mdl.is_mutable_collection(BLOCKS):
        mdl.sow(BLOCKS, f"f{i:03d}", x)
    return x


def _block_in(mdl: nn.Module, i: int, x):
    """Block ``i + 1``'s input: ``stop_gradient(f_i) + tap_i`` when ``block_taps`` holds
    ``in{i}`` (the gradient w.r.t. the tap is then block ``i + 1``'s own VJP), else ``f_i``."""
    name = f"in{i:03d}"
    if mdl.has_variable(BLOCK_TAPS, name):
        return jax.lax.stop_gradient(x) + mdl.get_variable(BLOCK_TAPS, name)
    return x


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
    return _probe(mdl, "relu", nn.relu(x), weight)


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
    def __call__(self, x, train: bool, code_weight=None, taps: bool = False):
        """``taps``: sow nothing and return ``(out, relu_out, conv_out)`` instead of ``out``."""
        p = (self.kernel - 1) // 2
        r = nn.relu(x) if taps else _relu(self, x, code_weight)
        c = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                    padding=((p, p), (p, p)), use_bias=False, kernel_init=kernel_init(self.init_scheme),
                    dtype=self.dtype, param_dtype=self.dtype,
                    conv_general_dilated=conv_fn(self.conv_impl))(r)
        y = _bn(c, train, self.dtype)
        if taps:
            return y, r, c
        _probe(self, "layer", c, code_weight)
        return _probe(self, "layer", y, code_weight)


def _bn(x, train: bool, dtype):
    # PyTorch BatchNorm2d: eps 1e-5, momentum 0.1 (flax: 0.9), affine weight 1 / bias 0.
    # two-pass variance (as PyTorch), steadier in float32 than E[x^2] - E[x]^2
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_fast_variance=False, dtype=dtype, param_dtype=dtype)(x)


def _avg_pool_3x3(x):
    """3x3 / stride 1 / pad 1 average that ignores the padding (``count_include_pad=False``).

    The divisor (9 inside, 6 on edges, 4 in corners) is a NumPy constant: computing it with
    a reduce-window over ones, as generic pooling does, makes XLA constant-fold it slowly.
    The window sum is nine shifted slices of the zero-padded input added in the window's
    row-major order, the order of ``lax.reduce_window``'s sum (the same values, tested):
    XLA:CPU fuses the slices into one loop, several times faster than its reduce-window, in
    the forward pass and in the derivatives (docs/performance.md).
    """
    h, w = x.shape[-3], x.shape[-2]
    ones = np.ones((h + 2, w + 2), np.float32)
    ones[0, :] = ones[-1, :] = ones[:, 0] = ones[:, -1] = 0
    counts = sum(ones[i:i + h, j:j + w] for i in range(3) for j in range(3))
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    summed = None
    for i in range(3):
        for j in range(3):
            t = padded[:, i:i + h, j:j + w]
            summed = t if summed is None else summed + t
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
            return _probe(mdl, "layer", x, code_weight)
        if name in ("nor_conv_1x1", "nor_conv_3x3"):
            return ReLUConvBN(self.features, 1 if name == "nor_conv_1x1" else 3,
                              init_scheme=self.init_scheme, dtype=self.dtype,
                              conv_impl=self.conv_impl, parent=mdl, name=name)(x, train, code_weight)
        if name == "avg_pool_3x3":
            return _probe(mdl, "layer", _avg_pool_3x3(x), code_weight)
        raise AssertionError(name)

    def _op_taps(self, mdl, x, k, train):
        """``(out, taps)``: op ``k``'s output and what it would sow, in one structure for
        every op (a ``lax.switch`` branch cannot sow): ``taps = (relu_out, relu_w, (l0, l1),
        (w0, w1))``, the ReLU's output and up to two other layer outputs, each with weight 1
        if the op has it, else zeros with weight 0."""
        name = OPS[k]
        z, one, zero = jnp.zeros_like(x), jnp.ones((), x.dtype), jnp.zeros((), x.dtype)
        if name in ("nor_conv_1x1", "nor_conv_3x3"):
            y, r, c = ReLUConvBN(self.features, 1 if name == "nor_conv_1x1" else 3,
                                 init_scheme=self.init_scheme, dtype=self.dtype,
                                 conv_impl=self.conv_impl, parent=mdl, name=name)(x, train, taps=True)
            return y, (r, one, (c, y), (one, one))
        if name == "none":
            return z, (z, zero, (z, z), (zero, zero))
        y = x if name == "skip_connect" else _avg_pool_3x3(x)
        return y, (z, zero, (y, z), (one, zero))

    def _sow_taps(self, taps):
        r, rw, layers, lws = taps
        if self.is_mutable_collection(RELU_CODES):
            self.sow(RELU_CODES, "kernel", relu_code_kernel(r) * rw)  # ReLU(z) > 0 iff z > 0
        _probe(self, "relu", r, rw)
        for t, w in zip(layers, lws):
            _probe(self, "layer", t, w)

    @nn.compact
    def __call__(self, x, weights, train: bool):
        if self.fixed is not None:
            return None if self.fixed == 0 else self._op(self, x, self.fixed, train)
        if jnp.issubdtype(jnp.asarray(weights).dtype, jnp.integer):
            if self.is_initializing():
                raise ArchError("initialise with arch_weights [6, 5] (the supernet creates every "
                                "op's weights); op indices only select among them")
            if self.is_mutable_collection(RELU_CODES) or self.is_mutable_collection(PROBES):
                # the branch returns what it would sow; the edge sows it, outside the switch
                branches = [functools.partial(self._op_taps, k=k, train=train) for k in range(NUM_OPS)]
                y, taps = nn.switch(jnp.asarray(weights), branches, self, x)
                self._sow_taps(taps)
                return y
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
        return _probe(self, "layer", nodes[3])


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
        s = _probe(self, "layer", nn.avg_pool(x, (2, 2), (2, 2)))
        s = _probe(self, "layer", nn.Conv(self.features, (1, 1), use_bias=False,
                                          kernel_init=kernel_init(self.init_scheme), dtype=self.dtype,
                                          param_dtype=self.dtype, name="shortcut",
                                          conv_general_dilated=conv_fn(self.conv_impl))(s))
        return _probe(self, "layer", s + y)


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
            (:mod:`nasi_jax.core.conv`: same values, a derivative that stays fast inside
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
        C = self.channels
        x = _block_out(self, 0, stem(x, C, train, self.init_scheme, self.dtype, self.conv_impl, self))
        i = 0
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                x = ResBlock(width, self.init_scheme, self.dtype, self.conv_impl, name=f"reduce_{stage}")(
                    _block_in(self, i, x), train)
                i += 1
                x = _block_out(self, i, x)
            for n in range(self.cells_per_stage):
                x = Cell(width, self.fixed, self.init_scheme, self.dtype, self.conv_impl,
                         name=f"cell_{stage}_{n}")(
                    _block_in(self, i, x), arch_weights, train)
                i += 1
                x = _block_out(self, i, x)
        return head(self, x, self.num_classes, train, self.init_scheme, self.dtype)


def stem(x, channels: int, train: bool, init_scheme: str, dtype, conv_impl: str, mdl=None):
    """The stem, inside a compact module: ``BN(conv3x3(x))`` -> ``[B, H, W, C]`` (submodules
    ``stem_conv`` and the module's next ``BatchNorm_i``); ``mdl`` (the module) sows probes."""
    x = nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=kernel_init(init_scheme),
                dtype=dtype, param_dtype=dtype, name="stem_conv", conv_general_dilated=conv_fn(conv_impl))(
        x.astype(dtype))
    if mdl is not None:
        _probe(mdl, "layer", x)
    x = _bn(x, train, dtype)
    return x if mdl is None else _probe(mdl, "layer", x)


def head(mdl: nn.Module, x, num_classes: int, train: bool, init_scheme: str, dtype):
    """The head, inside ``mdl``'s compact method: ``linear(mean_{H,W} relu(BN(x)))`` -> logits
    ``[B, K]`` (submodules: the module's next ``BatchNorm_i`` and ``classifier``)."""
    x = _relu(mdl, _probe(mdl, "layer", _bn(x, train, dtype)))
    x = jnp.mean(x, axis=(1, 2))
    fan_in = x.shape[-1]
    if init_scheme == "pytorch":
        k_init, b_init = torch_uniform(fan_in), torch_uniform(fan_in)
    else:
        k_init, b_init = kernel_init(init_scheme), nn.initializers.zeros
    return nn.Dense(num_classes, kernel_init=k_init, bias_init=b_init, dtype=dtype, param_dtype=dtype,
                    name="classifier")(x)


