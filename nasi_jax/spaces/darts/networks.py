"""DARTS' networks: the search supernet (architecture weights as an input) and the evaluation
network built from a genotype.

Both share the skeleton: stem conv3x3(3 -> 3C) + BN; ``layers`` cells, those at
:func:`reduction_cells` (``layers//3`` and ``2*layers//3``) reduction cells with doubled ``C``;
global average pool; linear to the classes. A cell preprocesses its two inputs to ``C``
channels (node 1 by ReLU -> 1x1 conv -> BN, node 0 the same or by FactorizedReduce after a
reduction cell), runs its edges (stride 2 on the edges leaving the inputs of a reduction cell)
and concatenates nodes 2..5 (``4 C`` channels).

* :class:`DartsSupernet` (DARTS: ``C=16``, 8 cells): every edge is a :class:`MixedEdge`
  ``sum_k w[e, k] op_k(x)`` with ``arch_weights = (normal [14, 8], reduce [14, 8])``; BNs in the
  cells have no affine parameters, and the pools are followed by one.
* :class:`NetworkCIFAR` (DARTS: ``C=36``, 20 cells): the genotype's discrete cells
  (:class:`EvalCell`), affine BNs, drop-path, an auxiliary head after cell ``2*layers//3``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.spaces.darts.genotype import DARTS_V2
    >>> reduction_cells(8)
    (2, 5)
    >>> net = NetworkCIFAR(DARTS_V2, channels=2, layers=3, auxiliary=False)
    >>> x = jnp.zeros((2, 8, 8, 3))
    >>> variables = net.init(jax.random.PRNGKey(0), x, train=False)
    >>> logits, aux = net.apply(variables, x, train=False)
    >>> logits.shape, aux
    ((2, 10), None)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nasi_jax.spaces.darts.genotype import (NUM_EDGES, NUM_NODES, NUM_OPS, OPS, Genotype, GenotypeError,
                                            check_genotype)
from nasi_jax.spaces.darts.ops import (Cfg, FactorizedReduce, Op, ReLUConvBN, batch_norm, conv, dense,
                                       resolve_conv_impl)

__all__ = ["MixedEdge", "SearchCell", "reduction_cells", "DartsSupernet", "EvalCell",
           "AuxiliaryHeadCIFAR", "NetworkCIFAR"]


class MixedEdge(nn.Module):
    """One supernet edge: ``sum_k w[k] op_k(x)`` over the 8 ops (``none`` adds 0 and is
    skipped). ``fixed`` (an op index) builds that op only, under the same name, so its
    parameters are the subset of the supernet's that the discrete cell uses."""

    features: int
    stride: int
    fixed: int | None = None
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, w, train: bool):
        def op(k):
            return Op(OPS[k], self.features, self.stride, affine=self.cfg.cell_affine, search=True, cfg=self.cfg,
                      name=OPS[k])(x, train)

        if self.fixed is not None:
            return None if self.fixed == 0 else op(self.fixed)
        out = None
        for k in range(1, NUM_OPS):
            y = w[k].astype(self.cfg.dtype) * op(k)
            out = y if out is None else out + y
        return out


class SearchCell(nn.Module):
    """Supernet cell: preprocess -> 14 mixed edges -> concat of nodes 2..5 (BatchNorms without
    affine parameters unless ``cfg.cell_affine``).

    ``s0 [B,H0,W0,C0], s1 [B,H,W,C1], weights [14, 8]`` -> ``[B, H/r, W/r, 4C]`` (``r = 2``
    in a reduction cell). ``fixed``: 14 op indices (the discrete cell, ``weights`` ignored).
    """

    features: int
    reduction: bool = False
    reduction_prev: bool = False
    fixed: tuple[int, ...] | None = None
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, s0, s1, weights, train: bool):
        C = self.features
        affine = self.cfg.cell_affine
        if self.reduction_prev:
            s0 = FactorizedReduce(C, affine, self.cfg, name="preprocess0")(s0, train)
        else:
            s0 = ReLUConvBN(C, 1, 1, 0, affine, self.cfg, name="preprocess0")(s0, train)
        s1 = ReLUConvBN(C, 1, 1, 0, affine, self.cfg, name="preprocess1")(s1, train)
        states = [s0, s1]
        e = 0
        for i in range(2, 2 + NUM_NODES):
            total = None
            for j in range(i):
                stride = 2 if self.reduction and j < 2 else 1
                fixed = None if self.fixed is None else self.fixed[e]
                y = MixedEdge(C, stride, fixed, self.cfg, name=f"edge_{j}_{i}")(
                    states[j], None if weights is None else weights[e], train)
                if y is not None:
                    total = y if total is None else total + y
                e += 1
            if total is None:
                r = 2 if self.reduction else 1
                total = jnp.zeros_like(s1[:, ::r, ::r, :])
            states.append(total)
        return jnp.concatenate(states[2:], axis=-1)


def _split_weights(arch_weights):
    """``(normal, reduce)`` from a dict, a pair, or an array ``[2, 14, 8]``; checks shapes."""
    if isinstance(arch_weights, dict):
        try:
            pair = (arch_weights["normal"], arch_weights["reduce"])
        except KeyError:
            raise GenotypeError(f"arch_weights dict needs keys 'normal' and 'reduce', got "
                                f"{sorted(arch_weights)}") from None
    elif isinstance(arch_weights, (tuple, list)) and len(arch_weights) == 2:
        pair = tuple(arch_weights)
    else:
        arr = jnp.asarray(arch_weights)
        if arr.ndim != 3 or arr.shape[0] != 2:
            raise GenotypeError(f"arch_weights must be (normal [14, 8], reduce [14, 8]) or an array "
                                f"[2, 14, 8], got shape {arr.shape}")
        pair = (arr[0], arr[1])
    out = []
    for name, w in zip(("normal", "reduce"), pair):
        w = jnp.asarray(w)
        if w.shape != (NUM_EDGES, NUM_OPS):
            raise GenotypeError(f"arch_weights[{name!r}] must have shape {(NUM_EDGES, NUM_OPS)}, got {w.shape}")
        if not jnp.issubdtype(w.dtype, jnp.floating):
            raise GenotypeError(f"arch_weights[{name!r}] must be floating point, got {w.dtype}")
        out.append(w)
    return out[0], out[1]


def reduction_cells(layers: int) -> tuple[int, int]:
    """The indices of the two reduction cells among ``layers`` cells: ``layers//3``, ``2*layers//3``."""
    return layers // 3, 2 * layers // 3


class DartsSupernet(nn.Module):
    """DARTS' search network with architecture weights as an input.

    Attributes:
        channels: C (DARTS: 16); the stem has 3C channels, the cells C, 2C, 4C.
        layers: number of cells (DARTS: 8); cells ``layers//3`` and ``2*layers//3`` reduce.
        num_classes: logits K.
        fixed: ``(normal [14], reduce [14])`` op indices (:func:`genotype_to_ops`) to build
            only the discrete cells' ops (the supernet's parameters restricted to them;
            ``arch_weights`` is then ignored and may be None). None: the supernet.
        init_scheme: 'pytorch' (default) or 'flax'.
        dtype: parameter and computation dtype.
        conv_impl: 'auto' (default) or one of :data:`CONV_IMPLS` (:func:`resolve_conv_impl`:
            the same function, computed in ways of different speed).
        cell_affine: the cells' BatchNorms get affine parameters (scale 1, bias 0 at init; part
            of theta, so of s). False (default): DARTS' supernet, whose cell BNs have none.

    ``__call__(x [B,H,W,3], arch_weights, train) -> logits [B, K]`` with ``arch_weights``
    ``(normal [14, 8], reduce [14, 8])`` (a pair, a dict with those keys, or ``[2, 14, 8]``);
    edge ``e`` of a cell computes ``sum_k w[e, k] op_k(x)``. ``H, W`` must be divisible by 4.
    With ``train=True`` BatchNorm uses batch statistics (apply with ``mutable=['batch_stats']``).
    """

    channels: int = 16
    layers: int = 8
    num_classes: int = 10
    fixed: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    cell_affine: bool = False

    @nn.compact
    def __call__(self, x, arch_weights=None, train: bool = True):
        cfg = Cfg(self.init_scheme, self.dtype, resolve_conv_impl(self.conv_impl), self.cell_affine)
        if self.fixed is None:
            if arch_weights is None:
                raise GenotypeError("the supernet needs arch_weights (normal [14, 8], reduce [14, 8]); "
                                    "pass darts.one_hot(genotype) for a discrete architecture")
            normal_w, reduce_w = _split_weights(arch_weights)
        else:
            if len(self.fixed) != 2 or any(len(f) != NUM_EDGES for f in self.fixed):
                raise GenotypeError(f"fixed must be (normal [14], reduce [14]) op indices, got {self.fixed}")
            normal_w = reduce_w = None
        C = self.channels
        x = conv(cfg, 3 * C, 3, 1, 1, name="stem_conv")(x.astype(self.dtype))
        x = batch_norm(x, train, self.dtype, affine=True, name="stem_bn")
        s0 = s1 = x
        reduction_prev = False
        for i in range(self.layers):
            reduction = i in reduction_cells(self.layers)
            if reduction:
                C *= 2
            fixed = None if self.fixed is None else tuple(self.fixed[1 if reduction else 0])
            cell = SearchCell(C, reduction, reduction_prev, fixed, cfg, name=f"cell_{i}")
            s0, s1 = s1, cell(s0, s1, reduce_w if reduction else normal_w, train)
            reduction_prev = reduction
        y = jnp.mean(s1, axis=(1, 2))
        return dense(cfg, self.num_classes, y.shape[-1], "classifier")(y)


# --------------------------------------------------------------------------- evaluation network

def _drop_path(mdl: nn.Module, x, prob):
    """Zero whole examples with probability ``prob``, scale the rest by ``1/(1-prob)``."""
    keep = 1.0 - jnp.asarray(prob, x.dtype)
    mask = jax.random.bernoulli(mdl.make_rng("dropout"), keep, (x.shape[0], 1, 1, 1))
    return jnp.where(mask, x / keep, jnp.zeros((), x.dtype))


class EvalCell(nn.Module):
    """A discrete cell from a genotype's 8 edges; affine BNs; drop-path (train mode, when
    ``drop_prob`` is given) on every edge output except identity ``skip_connect``."""

    edges: tuple[tuple[str, int], ...]
    concat: tuple[int, ...]
    features: int
    reduction: bool = False
    reduction_prev: bool = False
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, s0, s1, train: bool, drop_prob=None):
        C = self.features
        if self.reduction_prev:
            s0 = FactorizedReduce(C, True, self.cfg, name="preprocess0")(s0, train)
        else:
            s0 = ReLUConvBN(C, 1, 1, 0, True, self.cfg, name="preprocess0")(s0, train)
        s1 = ReLUConvBN(C, 1, 1, 0, True, self.cfg, name="preprocess1")(s1, train)
        states = [s0, s1]
        for m in range(NUM_NODES):
            total = None
            for slot in range(2):
                op, j = self.edges[2 * m + slot]
                stride = 2 if self.reduction and j < 2 else 1
                h = Op(op, C, stride, affine=True, search=False, cfg=self.cfg,
                       name=f"node{m + 2}_{slot}_{op}")(states[j], train)
                if train and drop_prob is not None and not (op == "skip_connect" and stride == 1):
                    h = _drop_path(self, h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return jnp.concatenate([states[c] for c in self.concat], axis=-1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' auxiliary head for 8x8 inputs: ReLU -> AvgPool(5, stride 3) -> Conv1x1(128) ->
    BN -> ReLU -> Conv2x2(768) -> BN -> ReLU -> Linear(768 -> K)."""

    num_classes: int = 10
    cfg: Cfg = Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.avg_pool(nn.relu(x), (5, 5), (3, 3), padding="VALID")
        x = nn.relu(batch_norm(conv(self.cfg, 128, 1, name="conv_1")(x), train, self.cfg.dtype))
        x = nn.relu(batch_norm(conv(self.cfg, 768, 2, name="conv_2")(x), train, self.cfg.dtype))
        x = x.reshape(x.shape[0], -1)
        return dense(self.cfg, self.num_classes, x.shape[-1], "classifier")(x)


class NetworkCIFAR(nn.Module):
    """DARTS' evaluation network for CIFAR built from a genotype.

    Attributes:
        genotype: a :class:`Genotype` (see :func:`parse_genotype`).
        channels: C (DARTS: 36); stem 3C, cells C, 2C, 4C (doubled at the reductions).
        layers: cells (DARTS: 20); cells ``layers//3`` and ``2*layers//3`` reduce.
        num_classes: logits K.
        auxiliary: build the auxiliary head, fed by cell ``2*layers//3`` (DARTS: weight 0.4
            in the loss; needs 32x32 inputs, i.e. an 8x8 map there).
        drop_path_prob: default drop-path probability in training (DARTS: 0.2 times
            epoch/epochs; pass ``drop_path_prob=`` to ``__call__`` to schedule it without
            recompiling).
        conv_impl: 'auto' (default) or one of :data:`CONV_IMPLS` (:func:`resolve_conv_impl`;
            ``nasi_jax.train`` passes ``xla-taps`` on CPU, where it differentiates in reverse
            mode only).

    ``__call__(x [B,H,W,3], train, drop_path_prob=None) -> (logits [B,K], aux [B,K] or None)``.
    ``aux`` is returned in train mode when ``auxiliary`` (init creates its parameters in
    either mode). Drop-path in train mode needs the rng ``'dropout'``; BatchNorm then uses
    batch statistics (apply with ``mutable=['batch_stats']``).
    """

    genotype: Genotype
    channels: int = 36
    layers: int = 20
    num_classes: int = 10
    auxiliary: bool = True
    drop_path_prob: float = 0.0
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = True, drop_path_prob=None):
        g = check_genotype(self.genotype)
        cfg = Cfg(self.init_scheme, self.dtype, resolve_conv_impl(self.conv_impl))
        p = self.drop_path_prob if drop_path_prob is None else drop_path_prob
        use_dp = train and not (isinstance(p, (int, float)) and p <= 0)
        C = self.channels
        x = conv(cfg, 3 * C, 3, 1, 1, name="stem_conv")(x.astype(self.dtype))
        x = batch_norm(x, train, self.dtype, affine=True, name="stem_bn")
        s0 = s1 = x
        reduction_prev = False
        aux = None
        for i in range(self.layers):
            reduction = i in reduction_cells(self.layers)
            if reduction:
                C *= 2
            edges, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
            cell = EvalCell(edges, concat, C, reduction, reduction_prev, cfg, name=f"cell_{i}")
            s0, s1 = s1, cell(s0, s1, train, p if use_dp else None)
            reduction_prev = reduction
            if i == 2 * self.layers // 3 and self.auxiliary and (train or self.is_initializing()):
                a = AuxiliaryHeadCIFAR(self.num_classes, cfg, name="auxiliary_head")(s1, train)
                aux = a if train else None
        y = jnp.mean(s1, axis=(1, 2))
        return dense(cfg, self.num_classes, y.shape[-1], "classifier")(y), aux
