"""The DARTS search space: ops, cells, search supernet, evaluation network and genotype codec.

DARTS (Liu, Simonyan & Yang, ICLR 2019) searches two cells, a *normal* cell and a
*reduction* cell. A cell is a DAG with 2 input nodes (0: the output of the cell before the
previous one, 1: the output of the previous cell), 4 intermediate nodes (2 ... 5) and one
output, the channel concatenation of the intermediate nodes (``4 C`` channels). Node ``i``
takes an edge from every earlier node ``j < i``, 14 edges in all, in the order::

    e:  0    1  |  2    3    4  |  5    6    7    8  |  9   10   11   12   13
    j->i: 0->2 1->2 | 0->3 1->3 2->3 | 0->4 1->4 2->4 3->4 | 0->5 1->5 2->5 3->5 4->5

(:data:`EDGES`). Every edge carries one of 8 ops (:data:`OPS`, DARTS' ``PRIMITIVES`` order)::

    none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5,
    dil_conv_3x3, dil_conv_5x5

* ``none``: zeros (spatially subsampled at stride 2);
* ``max_pool_3x3`` / ``avg_pool_3x3``: 3x3 pooling, padding 1; the average does not count
  the padding. In the search supernet each pool is followed by BatchNorm without affine
  parameters (as DARTS' mixed op does); in the evaluation network it is not;
* ``skip_connect``: identity at stride 1; at stride 2 *FactorizedReduce*: ReLU, then two
  1x1 stride-2 convolutions with ``C/2`` outputs each, the second on the input shifted by
  one pixel (``x[:, 1:, 1:]``), concatenated, then BatchNorm;
* ``dil_conv_kxk``: ReLU -> depthwise kxk conv (dilation 2, padding ``k-1``) -> pointwise
  1x1 conv -> BatchNorm;
* ``sep_conv_kxk``: the same block with dilation 1 (padding ``(k-1)/2``) applied twice,
  the stride in the first; the first pointwise conv keeps ``C`` channels.

All convolutions are bias-free. Reduction cells use stride 2 on the edges leaving the
two input nodes. Before the edges, the inputs are *preprocessed* to ``C`` channels:
node 1 by ReLU -> 1x1 conv -> BN, node 0 the same, or by FactorizedReduce when the
previous cell was a reduction cell (node 0 then has twice node 1's resolution).

**Search supernet** (:class:`DartsSupernet`; DARTS: ``C=16``, 8 cells): stem
conv3x3(3 -> 3C) + BN; ``layers`` cells, the ones at ``layers//3`` and ``2*layers//3``
reduction cells with doubled ``C``; global average pool; linear to the classes. Its BNs
inside cells have no affine parameters. The architecture is an **input**:
``arch_weights = (normal [14, 8], reduce [14, 8])`` and edge ``e`` computes
``sum_k w[e, k] * op_k(x)``. A one-hot ``arch_weights`` gives exactly the discrete cells'
output (the unused ops are multiplied by 0).

**Genotype**: the discrete architecture, DARTS' text form::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[...], reduce_concat=[2, 3, 4, 5])

``normal`` / ``reduce`` list 8 ``(op, input)`` pairs, two per intermediate node (pairs
``2m, 2m+1`` feed node ``m + 2``); ``input`` is the source node (``< m + 2``).
:func:`genotype_from_alpha` reads a genotype from architecture logits: per edge the best op
other than ``none``, per node the 2 incoming edges whose best non-``none`` weight is largest.

**Evaluation network** (:class:`NetworkCIFAR`; DARTS: ``C=36``, 20 cells): the same
skeleton with the genotype's discrete cells, affine BNs, drop-path on non-identity ops in
training, and an auxiliary head after cell ``2*layers//3``. :func:`count_params` counts its
parameters without the auxiliary head, as the literature reports them.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.spaces import darts
    >>> g = darts.parse_genotype(darts.genotype_to_str(darts.DARTS_V2))
    >>> g == darts.DARTS_V2
    True
    >>> net = darts.DartsSupernet(channels=2, layers=3)
    >>> x = jnp.zeros((2, 8, 8, 3))
    >>> w = darts.one_hot(g)                       # (normal [14, 8], reduce [14, 8])
    >>> variables = net.init(jax.random.PRNGKey(0), x, w, train=False)
    >>> net.apply(variables, x, w, train=False).shape
    (2, 10)
    >>> alpha = jax.random.normal(jax.random.PRNGKey(1), (2, 14, 8))
    >>> [len(cell) for cell in darts.genotype_from_alpha(alpha[0], alpha[1])]
    [8, 4, 8, 4]
"""

from __future__ import annotations

import ast
import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces import _init

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_OPS", "NUM_NODES", "GenotypeError", "Genotype",
    "parse_genotype", "genotype_to_str", "genotype_to_ops", "one_hot", "genotype_from_alpha",
    "read_out_ops", "ops_to_genotype",
    "DARTS_V1", "DARTS_V2", "PUBLISHED", "DartsSupernet", "NetworkCIFAR", "count_params",
]

OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
NUM_OPS = len(OPS)
NUM_NODES = 4  # intermediate nodes per cell
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for i in range(2, 2 + NUM_NODES) for j in range(i))
NUM_EDGES = len(EDGES)  # 14
_CONCAT = (2, 3, 4, 5)
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


class GenotypeError(ValueError):
    """A malformed DARTS genotype (text, edges, concat) or architecture weights."""


class Genotype(NamedTuple):
    """A discrete DARTS architecture; ``str(g)`` is DARTS' text form (:func:`genotype_to_str`).

    ``normal`` / ``reduce``: 8 ``(op, input)`` pairs, pairs ``2m, 2m+1`` feed node ``m + 2``;
    ``*_concat``: the nodes concatenated into the cell's output (DARTS: ``(2, 3, 4, 5)``).
    """

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __str__(self) -> str:
        return genotype_to_str(self)


# --------------------------------------------------------------------------- codec

def _check_edges(edges: Any, field: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(edges, (list, tuple)):
        raise GenotypeError(f"genotype field {field!r} must be a list of (op, input) pairs, "
                            f"got {type(edges).__name__}")
    if len(edges) != 2 * NUM_NODES:
        raise GenotypeError(f"genotype field {field!r} needs {2 * NUM_NODES} edges (2 per intermediate "
                            f"node 2..5), got {len(edges)}"
                            + (" (a 5-node cell such as NASNet's or AmoebaNet's is outside the "
                               "DARTS space, which has 4 intermediate nodes)" if len(edges) == 10 else ""))
    out = []
    for k, pair in enumerate(edges):
        node = 2 + k // 2
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str)
                or isinstance(pair[1], bool) or not isinstance(pair[1], (int, np.integer))):
            raise GenotypeError(f"genotype field {field!r}, edge {k}: expected a pair (op name, input "
                                f"node), e.g. ('sep_conv_3x3', 0), got {pair!r}")
        op, j = pair[0], int(pair[1])
        if op not in OPS:
            raise GenotypeError(f"unknown op {op!r} in genotype field {field!r} (edge {k}); DARTS ops "
                                f"are {OPS[1:]}")
        if op == "none":
            raise GenotypeError(f"op 'none' in genotype field {field!r} (edge {k}): a genotype lists "
                                f"the edges kept, 'none' is never one of them")
        if not 0 <= j < node:
            raise GenotypeError(f"input index {j} out of range in genotype field {field!r} (edge {k}): "
                                f"it feeds node {node}, whose inputs are nodes 0..{node - 1}")
        out.append((op, j))
    return tuple(out)


def _check_concat(concat: Any, field: str) -> tuple[int, ...]:
    if isinstance(concat, range):
        concat = list(concat)
    if (not isinstance(concat, (list, tuple)) or not concat
            or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in concat)):
        raise GenotypeError(f"genotype field {field!r} must be a non-empty list of node indices, "
                            f"e.g. [2, 3, 4, 5], got {concat!r}")
    concat = tuple(int(c) for c in concat)
    if len(set(concat)) != len(concat) or any(not 2 <= c < 2 + NUM_NODES for c in concat):
        raise GenotypeError(f"bad {field} {list(concat)}: it must list distinct intermediate nodes "
                            f"from 2..{1 + NUM_NODES} (DARTS: [2, 3, 4, 5])")
    return concat


def _check_genotype(g: Any) -> Genotype:
    if not isinstance(g, tuple) or len(g) != 4:
        raise GenotypeError(f"expected a Genotype(normal, normal_concat, reduce, reduce_concat), got {g!r}")
    return Genotype(_check_edges(g[0], "normal"), _check_concat(g[1], "normal_concat"),
                    _check_edges(g[2], "reduce"), _check_concat(g[3], "reduce_concat"))


_EXAMPLE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5], "
            "reduce=[...], reduce_concat=[2, 3, 4, 5])")


def _literal(node: ast.AST, field: str):
    """A field's value: a Python literal, or ``range(a, b)`` with integer literals."""
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords
                and 1 <= len(node.args) <= 3):
            raise GenotypeError(f"malformed genotype: field {field!r} may be a literal list or "
                                f"range(a, b), not a call of {ast.unparse(node.func)!r}")
        try:
            args = [ast.literal_eval(a) for a in node.args]
        except ValueError:
            args = None
        if args is None or any(isinstance(a, bool) or not isinstance(a, int) for a in args):
            raise GenotypeError(f"malformed genotype: range() in field {field!r} needs integer literals")
        return list(range(*args))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise GenotypeError(f"malformed genotype: field {field!r} is not a literal value "
                            f"({ast.unparse(node)[:80]!r})") from None


def parse_genotype(text: str | Genotype) -> Genotype:
    """DARTS text form (or a published name, e.g. ``"DARTS_V2"``) -> :class:`Genotype`.

    Accepts the text as printed by DARTS and pasted from the literature: keyword or
    positional fields, lists or tuples, ``range(2, 6)`` for the concat fields, line breaks,
    an optional ``NAME = `` in front and a module prefix (``genotypes.Genotype(...)``).
    Nothing is evaluated: the text is parsed with :mod:`ast` and only literals (and
    ``range`` of integer literals) are read. Raises :class:`GenotypeError` naming the problem.

    Example:
        >>> parse_genotype("Genotype(normal=[('sep_conv_3x3', 0)] * 8, normal_concat=[2, 3, 4, 5], "
        ...                "reduce=[('max_pool_3x3', 0)] * 8, reduce_concat=range(2, 6))")
        Traceback (most recent call last):
        ...
        nasi_jax.spaces.darts.GenotypeError: malformed genotype: field 'normal' is not a literal value ...
    """
    if isinstance(text, Genotype) or (isinstance(text, tuple) and getattr(text, "_fields", None) == _FIELDS):
        return _check_genotype(text)  # ours, or the DARTS code's own namedtuple
    if not isinstance(text, str):
        raise GenotypeError(f"a genotype must be a string like {_EXAMPLE}, got {type(text).__name__}")
    s = text.strip()
    if s in PUBLISHED:
        return PUBLISHED[s]
    if len(s) > 100_000:
        raise GenotypeError(f"malformed genotype: text of {len(s)} characters is too long")
    try:
        tree = ast.parse(s, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        msg = getattr(e, "msg", None) or type(e).__name__
        raise GenotypeError(f"malformed genotype {s[:60]!r}: {msg}; expected {_EXAMPLE}") from None
    node = None
    if len(tree.body) == 1:
        stmt = tree.body[0]
        if isinstance(stmt, ast.Expr):
            node = stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            node = stmt.value
    func = getattr(node, "func", None)
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if not isinstance(node, ast.Call) or name != "Genotype":
        names = ", ".join(PUBLISHED)
        raise GenotypeError(f"malformed genotype {s[:60]!r}: expected {_EXAMPLE} or a published name "
                            f"({names})")
    if len(node.args) > 4 or any(isinstance(a, ast.Starred) for a in node.args):
        raise GenotypeError(f"malformed genotype: Genotype takes the 4 fields {_FIELDS}")
    values: dict[str, Any] = {}
    for f, a in zip(_FIELDS, node.args):
        values[f] = _literal(a, f)
    for kw in node.keywords:
        if kw.arg not in _FIELDS:
            raise GenotypeError(f"malformed genotype: unknown field {kw.arg!r}; fields are {_FIELDS}")
        if kw.arg in values:
            raise GenotypeError(f"malformed genotype: field {kw.arg!r} given twice")
        values[kw.arg] = _literal(kw.value, kw.arg)
    missing = [f for f in _FIELDS if f not in values]
    if missing:
        raise GenotypeError(f"malformed genotype: missing field(s) {missing}; expected {_EXAMPLE}")
    return _check_genotype(tuple(values[f] for f in _FIELDS))


def genotype_to_str(genotype: Genotype) -> str:
    """:class:`Genotype` -> DARTS' text form (one line; the inverse of :func:`parse_genotype`)."""
    g = _check_genotype(genotype)

    def edges(es):
        return "[" + ", ".join(f"({op!r}, {j})" for op, j in es) + "]"

    return (f"Genotype(normal={edges(g.normal)}, normal_concat={list(g.normal_concat)}, "
            f"reduce={edges(g.reduce)}, reduce_concat={list(g.reduce_concat)})")


def genotype_to_ops(genotype: Genotype | str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Genotype -> op indices per edge (normal ``[14]``, reduce ``[14]``; 0 = ``none``, edge
    order :data:`EDGES`). Raises when a node takes two edges from the same input (such a
    genotype has no supernet counterpart) or concatenates other than nodes 2..5."""
    g = parse_genotype(genotype) if isinstance(genotype, str) else _check_genotype(genotype)
    out = []
    for field, edges, concat in (("normal", g.normal, g.normal_concat), ("reduce", g.reduce, g.reduce_concat)):
        if concat != _CONCAT:
            raise GenotypeError(f"{field}_concat {list(concat)}: the supernet's cells concatenate nodes "
                                f"[2, 3, 4, 5]")
        ops = [0] * NUM_EDGES
        for k, (op, j) in enumerate(edges):
            e = EDGES.index((j, 2 + k // 2))
            if ops[e]:
                raise GenotypeError(f"genotype field {field!r}: node {2 + k // 2} takes two edges from "
                                    f"node {j}; the supernet has one edge per pair of nodes")
            ops[e] = OPS.index(op)
        out.append(tuple(ops))
    return out[0], out[1]


def one_hot(genotype: Genotype | str, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Genotype -> one-hot architecture weights ``(normal [14, 8], reduce [14, 8])``; the
    edges the genotype does not keep are one-hot on ``none``."""
    normal, reduce = genotype_to_ops(genotype)
    return (jax.nn.one_hot(jnp.asarray(normal), NUM_OPS, dtype=dtype),
            jax.nn.one_hot(jnp.asarray(reduce), NUM_OPS, dtype=dtype))


def _read_cell(alpha, logits: bool, name: str) -> tuple[tuple[str, int], ...]:
    a = np.asarray(alpha, dtype=np.float64)
    if a.shape != (NUM_EDGES, NUM_OPS):
        raise GenotypeError(f"{name} must have shape {(NUM_EDGES, NUM_OPS)}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise GenotypeError(f"{name} has non-finite values")
    if logits:
        a = np.exp(a - a.max(axis=1, keepdims=True))
        a = a / a.sum(axis=1, keepdims=True)
    best = 1 + np.argmax(a[:, 1:], axis=1)  # best op other than 'none' (index 0), first on ties
    strength = a[np.arange(NUM_EDGES), best]
    gene = []
    start = 0
    for i in range(2, 2 + NUM_NODES):
        rows = range(start, start + i)  # edges j -> i, j = 0 .. i-1
        kept = sorted(rows, key=lambda e: -strength[e])[:2]  # stable: lower j first on ties
        gene.extend((OPS[best[e]], EDGES[e][0]) for e in kept)
        start += i
    return tuple(gene)


def genotype_from_alpha(alpha_normal, alpha_reduce, *, logits: bool = True) -> Genotype:
    """Read a genotype from architecture weights ``[14, 8]`` per cell (PAPER.md §7, DARTS).

    With ``logits=True`` (the default, DARTS' convention) each edge's row is first turned
    into probabilities ``p = softmax(alpha[e])``; with ``logits=False`` the values are used
    as given. Then, per edge, the best op other than ``none`` is
    ``k*(e) = argmax_{k != none} p[e, k]``, and per intermediate node ``i`` the 2 incoming
    edges with the largest ``p[e, k*(e)]`` are kept (listed strongest first, ties to the
    lower input index). The concat fields are ``[2, 3, 4, 5]``.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((14, 8)); a[:, 4] = 1.0; a[0, 0] = 9.0   # edge 0->2 prefers 'none'
        >>> genotype_from_alpha(a, a).normal[:2]   # never 'none'; edge 0->2 now ranks second
        (('sep_conv_3x3', 1), ('sep_conv_3x3', 0))
    """
    return Genotype(_read_cell(alpha_normal, logits, "alpha_normal"), _CONCAT,
                    _read_cell(alpha_reduce, logits, "alpha_reduce"), _CONCAT)


def read_out_ops(alpha) -> jax.Array:
    """DARTS' read-out as op indices, traceable: ``alpha [..., 2, 14, 8] -> [..., 2, 14]``.

    The values are used as given (no softmax; ``genotype_from_alpha(..., logits=False)``).
    Per edge ``e`` the best op other than ``none`` is ``k*(e) = 1 + argmax_k alpha[e, 1:]``;
    per intermediate node the 2 incoming edges with the largest ``alpha[e, k*(e)]`` keep
    ``k*(e)`` (ties to the lower input index) and the other edges get ``none`` (0). Equal to
    ``genotype_to_ops(genotype_from_alpha(a[0], a[1], logits=False))`` (tested);
    :func:`ops_to_genotype` turns the result into a :class:`Genotype`.

    Example:
        >>> a = np.zeros((2, 14, 8)); a[:, :, 4] = 1.0; a[:, 1, 5] = 2.0
        >>> read_out_ops(a)[0, :5].tolist()  # node 3: a 3-way tie, the lower inputs 0, 1 win
        [4, 5, 4, 4, 0]
    """
    a = jnp.asarray(alpha)
    if a.shape[-3:] != (2, NUM_EDGES, NUM_OPS):
        raise GenotypeError(f"alpha must have shape [..., 2, {NUM_EDGES}, {NUM_OPS}] (normal and "
                            f"reduction cell), got {a.shape}")
    best = 1 + jnp.argmax(a[..., 1:], axis=-1)                          # [..., 2, 14]
    strength = jnp.take_along_axis(a, best[..., None], axis=-1)[..., 0]  # [..., 2, 14]
    keep = []
    start = 0
    for i in range(2, 2 + NUM_NODES):
        seg = strength[..., start:start + i]                             # edges j -> i
        idx = jnp.arange(i)
        stronger = (seg[..., None, :] > seg[..., :, None]) | (
            (seg[..., None, :] == seg[..., :, None]) & (idx[None, :] < idx[:, None]))
        keep.append(jnp.sum(stronger, axis=-1) < 2)                      # rank < 2
        start += i
    return jnp.where(jnp.concatenate(keep, axis=-1), best, 0)


def ops_to_genotype(ops) -> Genotype:
    """Op indices ``[2, 14]`` (normal, reduce; ``none`` = edge absent) -> :class:`Genotype`,
    each node's two edges listed by input index. Raises :class:`GenotypeError` unless every
    intermediate node has exactly 2 edges that are not ``none``.

    Example:
        >>> g = ops_to_genotype(genotype_to_ops(DARTS_V2))
        >>> genotype_to_ops(g) == genotype_to_ops(DARTS_V2)
        True
    """
    ops = np.asarray(ops)
    if ops.shape != (2, NUM_EDGES):
        raise GenotypeError(f"ops must have shape (2, {NUM_EDGES}) (normal, reduce), got {ops.shape}")
    cells = []
    for c, name in enumerate(("normal", "reduce")):
        gene = []
        for e, (j, i) in enumerate(EDGES):
            k = int(ops[c, e])
            if not 0 <= k < NUM_OPS:
                raise GenotypeError(f"{name} edge {j}->{i}: op index {k} is not in 0..{NUM_OPS - 1}")
            if k:
                gene.append((i, OPS[k], j))
        for i in range(2, 2 + NUM_NODES):
            n = sum(1 for node, _, _ in gene if node == i)
            if n != 2:
                raise GenotypeError(f"{name} node {i} has {n} edges that are not 'none'; a DARTS "
                                    f"genotype keeps exactly 2 per node")
        cells.append(tuple((op, j) for _, op, j in sorted(gene, key=lambda t: (t[0], t[2]))))
    return _check_genotype((cells[0], _CONCAT, cells[1], _CONCAT))


# Published genotypes (facts carried over from the DARTS authors' released genotypes file,
# quark0/darts cnn/genotypes.py, which the DARTS paper's CIFAR-10 results use):
# DARTS_V1 = first-order search, DARTS_V2 = second-order search ("DARTS" there).
PUBLISHED: dict[str, Genotype] = {}
DARTS_V1 = _check_genotype((
    (("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
     ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)), _CONCAT,
    (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)), _CONCAT))
DARTS_V2 = _check_genotype((
    (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
     ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)), _CONCAT,
    (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)), _CONCAT))
PUBLISHED.update(DARTS_V1=DARTS_V1, DARTS_V2=DARTS_V2, DARTS=DARTS_V2)


# --------------------------------------------------------------------------- ops

def _bn(x, train: bool, dtype, affine: bool = True, name: str | None = None):
    # PyTorch BatchNorm2d: eps 1e-5, momentum 0.1 (flax 0.9); affine weight 1 / bias 0.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_scale=affine, use_bias=affine, use_fast_variance=False,
                        dtype=dtype, param_dtype=dtype, name=name)(x)


class _Cfg(NamedTuple):
    init_scheme: str = "pytorch"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"


CONV_IMPLS = ("auto", "xla", "xla-dense", "xla-shift", "loop-safe")


def resolve_conv_impl(conv_impl: str) -> str:
    """``auto`` -> ``xla-dense`` on CPU, ``xla`` elsewhere; other names are checked and returned.

    * ``xla``: every convolution by ``lax.conv_general_dilated``, depthwise ones with
      ``feature_group_count=C``, max pooling by ``lax.reduce_window``;
    * ``xla-dense``: the same, except depthwise convolutions, computed as dense ``C -> C``
      convolutions whose kernel is zero off the diagonal, and 3x3 max pooling, computed as
      separable maxima (:func:`_max_pool_3x3`). XLA:CPU runs grouped convolutions slowly:
      measured on 2 CPU cores at ``[64, 32, 32, 16]``, the depthwise 3x3 took 19 ms forward
      and 23 ms for its VJP grouped, 1.5 ms and 4.6 ms dense (5x5 dilated: 73/77 ms against
      4.8/9.9 ms), for C times the multiply-adds. The staged DARTS search step
      (:mod:`nasi_jax.staged`) ran 6-7x faster per cell;
    * ``xla-shift``: as ``xla``, except depthwise convolutions, computed as sums of shifted
      products (:class:`DepthwiseConv`): fast forward, slow derivatives for 5x5 kernels;
    * ``loop-safe``: as ``xla-shift`` and the other convolutions by :mod:`nasi_jax.conv`
      (fast inside XLA:CPU loops; reverse-mode derivatives only).

    All compute the same function (``tests/test_darts.py::test_conv_impls_match_xla``).
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {conv_impl!r}; choose one of {CONV_IMPLS}")
    if conv_impl == "auto":
        return "xla-dense" if jax.default_backend() == "cpu" else "xla"
    return conv_impl


def _conv(cfg: _Cfg, features: int, kernel: int, stride: int = 1, padding: int = 0, name=None):
    """Bias-free Conv(k x k, stride, symmetric padding), NHWC."""
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((padding, padding),) * 2,
                   use_bias=False, kernel_init=_init.kernel_init(cfg.init_scheme), dtype=cfg.dtype,
                   param_dtype=cfg.dtype, name=name,
                   conv_general_dilated=_init.conv_fn("loop-safe" if cfg.conv_impl == "loop-safe" else "xla"))


def _dense(cfg: _Cfg, features: int, fan_in: int, name: str):
    if cfg.init_scheme == "pytorch":
        k_init, b_init = _init.torch_uniform(fan_in), _init.torch_uniform(fan_in)
    else:
        k_init, b_init = _init.kernel_init(cfg.init_scheme), nn.initializers.zeros
    return nn.Dense(features, kernel_init=k_init, bias_init=b_init, dtype=cfg.dtype,
                    param_dtype=cfg.dtype, name=name)


class DepthwiseConv(nn.Module):
    """Depthwise conv (one k x k filter per channel, no bias), stride, dilation, padding.

    Kernel ``[k, k, 1, C]`` (PyTorch ``groups=C``: ``C k^2`` parameters).
    ``y[b,h,w,c] = sum_{i,j} xpad[b, s h + d i, s w + d j, c] * K[i, j, 0, c]``; with
    ``conv_impl`` ``'xla-shift'`` or ``'loop-safe'`` it is computed literally so (shifted slices, products and sums,
    whose derivatives XLA:CPU runs fast inside loops), with ``'xla-dense'`` as a dense convolution
    with the kernel ``K[i, j, 0, c] [c == c']`` (``C`` times the multiply-adds, but XLA:CPU's fast
    path), else by ``lax.conv_general_dilated`` with ``feature_group_count=C``.
    """

    kernel: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x):
        C, k, s, d, p = x.shape[-1], self.kernel, self.stride, self.dilation, self.padding
        w = self.param("kernel", _init.kernel_init(self.cfg.init_scheme), (k, k, 1, C), self.cfg.dtype)
        x = x.astype(self.cfg.dtype)
        impl = resolve_conv_impl(self.cfg.conv_impl)
        if impl in ("xla", "xla-dense"):
            if impl == "xla-dense":  # [k, k, 1, C] -> [k, k, C, C], zero off the diagonal
                w, groups = w[:, :, 0, :, None] * jnp.eye(C, dtype=w.dtype), 1
            else:
                groups = C
            return jax.lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)), rhs_dilation=(d, d),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=groups)
        H, W = x.shape[1], x.shape[2]
        ho, wo = (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1
        xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        out = None
        for i in range(k):
            for j in range(k):
                sl = xp[:, d * i: d * i + s * (ho - 1) + 1: s, d * j: d * j + s * (wo - 1) + 1: s, :]
                y = sl * w[i:i + 1, j:j + 1, 0:1, :]  # [1, 1, 1, C]
                out = y if out is None else out + y
        return out


class ReLUConvBN(nn.Module):
    """ReLU -> Conv(k x k, stride, padding, no bias) -> BN (affine or not)."""

    features: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    affine: bool = True
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        x = _conv(self.cfg, self.features, self.kernel, self.stride, self.padding)(nn.relu(x))
        return _bn(x, train, self.cfg.dtype, self.affine)


class DilConv(nn.Module):
    """ReLU -> depthwise k x k (stride, dilation, padding) -> pointwise 1x1 -> BN."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    affine: bool = True
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        x = DepthwiseConv(self.kernel, self.stride, self.dilation, self.padding, self.cfg)(nn.relu(x))
        x = _conv(self.cfg, self.features, 1)(x)
        return _bn(x, train, self.cfg.dtype, self.affine)


class SepConv(nn.Module):
    """Two DilConv blocks with dilation 1: ``DilConv(C_in, stride) -> DilConv(C_out, 1)``."""

    features: int
    kernel: int
    stride: int = 1
    affine: bool = True
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        p = (self.kernel - 1) // 2
        x = DilConv(x.shape[-1], self.kernel, self.stride, p, 1, self.affine, self.cfg, name="block_1")(x, train)
        return DilConv(self.features, self.kernel, 1, p, 1, self.affine, self.cfg, name="block_2")(x, train)


class FactorizedReduce(nn.Module):
    """ReLU -> concat(conv1x1_s2(x), conv1x1_s2(x[:, 1:, 1:])) -> BN; ``C_out`` even."""

    features: int
    affine: bool = True
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        if self.features % 2:
            raise GenotypeError(f"FactorizedReduce needs an even number of channels, got {self.features}")
        x = nn.relu(x)
        a = _conv(self.cfg, self.features // 2, 1, 2, name="conv_1")(x)
        b = _conv(self.cfg, self.features // 2, 1, 2, name="conv_2")(x[:, 1:, 1:, :])
        if a.shape != b.shape:
            raise GenotypeError(f"FactorizedReduce needs even spatial sizes, got {x.shape[1:3]}")
        return _bn(jnp.concatenate([a, b], axis=-1), train, self.cfg.dtype, self.affine)


def _avg_pool_3x3(x, stride: int):
    """3x3 average, padding 1, stride s, not counting the padding (``count_include_pad=False``)."""
    h, w = x.shape[1], x.shape[2]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    rows = np.array([min(h, r * stride + 2) - max(0, r * stride - 1) for r in range(ho)], np.float32)
    cols = np.array([min(w, c * stride + 2) - max(0, c * stride - 1) for c in range(wo)], np.float32)
    summed = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, (1, 3, 3, 1),
                                   (1, stride, stride, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return summed * jnp.asarray(1.0 / np.outer(rows, cols), x.dtype)[None, :, :, None]


def _max_pool_3x3(x, stride: int, impl: str):
    """3x3 max, padding 1 (with -inf), stride s. ``impl='xla-dense'``: as two 3-tap maxima,
    rows then columns (the same values; its gradient takes the same path except at ties,
    where ``jnp.maximum`` splits it), else ``lax.reduce_window``, whose gradient XLA:CPU runs
    as a slow select-and-scatter: at ``[64, 32, 32, 16]`` stride 1, the VJP (forward
    included) took 29 ms that way and 1.7 ms separated (2 CPU cores)."""
    if impl != "xla-dense":
        return nn.max_pool(x, (3, 3), (stride, stride), padding=((1, 1), (1, 1)))
    s, (h, w) = stride, x.shape[1:3]
    ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    r = jnp.maximum(jnp.maximum(xp[:, 0:s * (ho - 1) + 1:s], xp[:, 1:s * (ho - 1) + 2:s]), xp[:, 2:s * (ho - 1) + 3:s])
    return jnp.maximum(jnp.maximum(r[:, :, 0:s * (wo - 1) + 1:s], r[:, :, 1:s * (wo - 1) + 2:s]),
                       r[:, :, 2:s * (wo - 1) + 3:s])


class Op(nn.Module):
    """One DARTS op by name on ``C`` channels (module docstring); ``search=True`` follows the
    pools by a BN without affine parameters, as DARTS' supernet does."""

    op: str
    features: int
    stride: int = 1
    affine: bool = True
    search: bool = False
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        op, C, s = self.op, self.features, self.stride
        if op == "none":
            return jnp.zeros_like(x[:, ::s, ::s, :])
        if op in ("max_pool_3x3", "avg_pool_3x3"):
            if op == "max_pool_3x3":
                y = _max_pool_3x3(x, s, resolve_conv_impl(self.cfg.conv_impl))
            else:
                y = _avg_pool_3x3(x, s)
            return _bn(y, train, self.cfg.dtype, affine=False) if self.search else y
        if op == "skip_connect":
            return x if s == 1 else FactorizedReduce(C, self.affine, self.cfg)(x, train)
        k = int(op[-1])
        if op.startswith("sep_conv"):
            return SepConv(C, k, s, self.affine, self.cfg)(x, train)
        if op.startswith("dil_conv"):
            return DilConv(C, k, s, k - 1, 2, self.affine, self.cfg)(x, train)
        raise GenotypeError(f"unknown op {op!r}; DARTS ops are {OPS}")


# --------------------------------------------------------------------------- search supernet

class MixedEdge(nn.Module):
    """One supernet edge: ``sum_k w[k] op_k(x)`` over the 8 ops (``none`` adds 0 and is
    skipped). ``fixed`` (an op index) builds that op only, under the same name, so its
    parameters are the subset of the supernet's that the discrete cell uses."""

    features: int
    stride: int
    fixed: int | None = None
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, w, train: bool):
        def op(k):
            return Op(OPS[k], self.features, self.stride, affine=False, search=True, cfg=self.cfg,
                      name=OPS[k])(x, train)

        if self.fixed is not None:
            return None if self.fixed == 0 else op(self.fixed)
        out = None
        for k in range(1, NUM_OPS):
            y = w[k].astype(self.cfg.dtype) * op(k)
            out = y if out is None else out + y
        return out


class SearchCell(nn.Module):
    """Supernet cell: preprocess (affine-free) -> 14 mixed edges -> concat of nodes 2..5.

    ``s0 [B,H0,W0,C0], s1 [B,H,W,C1], weights [14, 8]`` -> ``[B, H/r, W/r, 4C]`` (``r = 2``
    in a reduction cell). ``fixed``: 14 op indices (the discrete cell, ``weights`` ignored).
    """

    features: int
    reduction: bool = False
    reduction_prev: bool = False
    fixed: tuple[int, ...] | None = None
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, s0, s1, weights, train: bool):
        C = self.features
        if self.reduction_prev:
            s0 = FactorizedReduce(C, False, self.cfg, name="preprocess0")(s0, train)
        else:
            s0 = ReLUConvBN(C, 1, 1, 0, False, self.cfg, name="preprocess0")(s0, train)
        s1 = ReLUConvBN(C, 1, 1, 0, False, self.cfg, name="preprocess1")(s1, train)
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


def _reduction_cells(layers: int) -> tuple[int, int]:
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
        conv_impl: 'auto' (default), 'xla', 'xla-dense', 'xla-shift' or 'loop-safe'
            (:func:`resolve_conv_impl`: the same function, computed in ways of different speed).

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

    @nn.compact
    def __call__(self, x, arch_weights=None, train: bool = True):
        cfg = _Cfg(self.init_scheme, self.dtype, resolve_conv_impl(self.conv_impl))
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
        x = _conv(cfg, 3 * C, 3, 1, 1, name="stem_conv")(x.astype(self.dtype))
        x = _bn(x, train, self.dtype, affine=True, name="stem_bn")
        s0 = s1 = x
        reduction_prev = False
        for i in range(self.layers):
            reduction = i in _reduction_cells(self.layers)
            if reduction:
                C *= 2
            fixed = None if self.fixed is None else tuple(self.fixed[1 if reduction else 0])
            cell = SearchCell(C, reduction, reduction_prev, fixed, cfg, name=f"cell_{i}")
            s0, s1 = s1, cell(s0, s1, reduce_w if reduction else normal_w, train)
            reduction_prev = reduction
        y = jnp.mean(s1, axis=(1, 2))
        return _dense(cfg, self.num_classes, y.shape[-1], "classifier")(y)


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
    cfg: _Cfg = _Cfg()

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
    cfg: _Cfg = _Cfg()

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.avg_pool(nn.relu(x), (5, 5), (3, 3), padding="VALID")
        x = nn.relu(_bn(_conv(self.cfg, 128, 1, name="conv_1")(x), train, self.cfg.dtype))
        x = nn.relu(_bn(_conv(self.cfg, 768, 2, name="conv_2")(x), train, self.cfg.dtype))
        x = x.reshape(x.shape[0], -1)
        return _dense(self.cfg, self.num_classes, x.shape[-1], "classifier")(x)


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
        g = _check_genotype(self.genotype)
        cfg = _Cfg(self.init_scheme, self.dtype, resolve_conv_impl(self.conv_impl))
        p = self.drop_path_prob if drop_path_prob is None else drop_path_prob
        use_dp = train and not (isinstance(p, (int, float)) and p <= 0)
        C = self.channels
        x = _conv(cfg, 3 * C, 3, 1, 1, name="stem_conv")(x.astype(self.dtype))
        x = _bn(x, train, self.dtype, affine=True, name="stem_bn")
        s0 = s1 = x
        reduction_prev = False
        aux = None
        for i in range(self.layers):
            reduction = i in _reduction_cells(self.layers)
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
        return _dense(cfg, self.num_classes, y.shape[-1], "classifier")(y), aux


# --------------------------------------------------------------------------- cost

def count_params(genotype: Genotype | str, *, channels: int = 36, layers: int = 20,
                 num_classes: int = 10, auxiliary: bool = False, image_size: int = 32) -> int:
    """Trainable parameters of :class:`NetworkCIFAR` (convolutions, BN scale and bias,
    linear layers; not the BN running statistics), without the auxiliary head unless
    ``auxiliary``. Computed from the modules' own parameter shapes under
    :func:`jax.eval_shape` (nothing is computed); the head is counted on its own input
    shape (``[1, 8, 8, 4 * len(reduce_concat) * channels]``), which equals counting the
    network built with ``auxiliary=True``. Results are cached per argument set.

    Example:
        >>> count_params(DARTS_V2, channels=2, layers=3)
        1118
    """
    g = parse_genotype(genotype)
    n = _count_network(g, channels, layers, num_classes, image_size)
    if auxiliary:
        n += _count_aux_head(4 * len(g.reduce_concat) * channels, num_classes)
    return n


def count_flops(genotype: Genotype | str, *, channels: int = 36, layers: int = 20,
                num_classes: int = 10, image_size: int = 32) -> float:
    """FLOPs of one :class:`NetworkCIFAR` forward pass for one image (inference mode, without
    the auxiliary head), as XLA's cost analysis counts them: a multiply-add is 2 FLOPs, and
    BatchNorm, ReLU and pooling count too. The convolutions run as ``conv_impl='xla'``
    whatever the backend, so a depthwise convolution counts its ``k^2 C H W`` multiply-adds
    (grouped), not the C-times larger count of ``xla-dense``. Compiles the forward pass once
    per argument set (seconds; cached).

    Example:
        >>> pools = Genotype([("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5],
        ...                  [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5])
        >>> count_flops(DARTS_V2, channels=2, layers=3, image_size=8) > count_flops(
        ...     pools, channels=2, layers=3, image_size=8)
        True
    """
    return _count_flops(parse_genotype(genotype), channels, layers, num_classes, image_size)


@functools.lru_cache(maxsize=64)
def _count_flops(g: Genotype, channels: int, layers: int, num_classes: int, image_size: int) -> float:
    net = NetworkCIFAR(g, channels, layers, num_classes, auxiliary=False, conv_impl="xla")
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    variables = jax.eval_shape(lambda k: net.init(k, jnp.zeros(x.shape), train=False), jax.random.PRNGKey(0))
    cost = jax.jit(lambda v, x_: net.apply(v, x_, train=False)).lower(variables, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost or "flops" not in cost:
        raise RuntimeError(f"XLA's cost analysis gave no FLOP count on backend {jax.default_backend()!r}")
    return float(cost["flops"])


def _n_params(tree) -> int:
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(tree)))


@functools.lru_cache(maxsize=64)
def _count_network(g: Genotype, channels: int, layers: int, num_classes: int, image_size: int) -> int:
    net = NetworkCIFAR(g, channels, layers, num_classes, auxiliary=False)
    x = jnp.zeros((1, image_size, image_size, 3))
    shapes = jax.eval_shape(lambda k: net.init(k, x, train=False), jax.random.PRNGKey(0))
    return _n_params(shapes["params"])


@functools.lru_cache(maxsize=64)
def _count_aux_head(c_in: int, num_classes: int) -> int:
    head = AuxiliaryHeadCIFAR(num_classes)
    x = jnp.zeros((1, 8, 8, c_in))
    shapes = jax.eval_shape(lambda k: head.init(k, x, train=False), jax.random.PRNGKey(0))
    return _n_params(shapes["params"])
