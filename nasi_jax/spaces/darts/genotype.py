"""DARTS genotypes: ops, edges, the text form and its parser, the read-out from ``alpha``.

A genotype is DARTS' discrete architecture (:class:`Genotype`): per cell (normal, reduce) 8
``(op, input)`` pairs, two per intermediate node 2..5. The supernet's form of the same
architecture is op indices ``[2, 14]`` (normal, reduce; one op of :data:`OPS` per edge of
:data:`EDGES`, ``none`` = edge absent): :func:`genotype_to_ops` and :func:`ops_to_genotype`
convert, :func:`one_hot` gives the supernet's weights ``(normal [14, 8], reduce [14, 8])``.

Example:
    >>> ops = genotype_to_ops(DARTS_V2)             # (normal [14], reduce [14])
    >>> ops[0]
    (4, 4, 4, 4, 0, 3, 4, 0, 0, 3, 0, 6, 0, 0)
    >>> genotype_to_ops(ops_to_genotype(ops)) == ops
    True
"""

from __future__ import annotations

import ast
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces.base import ArchitectureError

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_OPS", "NUM_NODES", "GenotypeError", "Genotype",
    "parse_genotype", "genotype_to_str", "genotype_to_ops", "one_hot", "genotype_from_alpha",
    "read_out_ops", "ops_to_genotype", "check_genotype", "random_genotype", "DARTS_V1", "DARTS_V2",
    "PUBLISHED",
]

OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
NUM_OPS = len(OPS)
NUM_NODES = 4  # intermediate nodes per cell
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for i in range(2, 2 + NUM_NODES) for j in range(i))
NUM_EDGES = len(EDGES)  # 14
_CONCAT = (2, 3, 4, 5)
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


class GenotypeError(ArchitectureError):
    """A malformed DARTS genotype (text, edges, concat) or architecture weights (a ValueError)."""


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


def check_genotype(g: Any) -> Genotype:
    """A 4-tuple ``(normal, normal_concat, reduce, reduce_concat)`` -> a checked :class:`Genotype`
    (op names in :data:`OPS` other than ``none``, inputs ``< node``, concat nodes in 2..5);
    :class:`GenotypeError` naming the problem otherwise."""
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
        ...                "reduce=[('max_pool_3x3', 0)] * 8, reduce_concat=range(2, 6))")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        nasi_jax.spaces.darts.genotype.GenotypeError: malformed genotype: field 'normal' is not a literal value ...
    """
    if isinstance(text, Genotype) or (isinstance(text, tuple) and getattr(text, "_fields", None) == _FIELDS):
        return check_genotype(text)  # ours, or the DARTS code's own namedtuple
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
    return check_genotype(tuple(values[f] for f in _FIELDS))


def genotype_to_str(genotype: Genotype) -> str:
    """:class:`Genotype` -> DARTS' text form (one line; the inverse of :func:`parse_genotype`)."""
    g = check_genotype(genotype)

    def edges(es):
        return "[" + ", ".join(f"({op!r}, {j})" for op, j in es) + "]"

    return (f"Genotype(normal={edges(g.normal)}, normal_concat={list(g.normal_concat)}, "
            f"reduce={edges(g.reduce)}, reduce_concat={list(g.reduce_concat)})")


def genotype_to_ops(genotype: Genotype | str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Genotype -> op indices per edge (normal ``[14]``, reduce ``[14]``; 0 = ``none``, edge
    order :data:`EDGES`). Raises when a node takes two edges from the same input (such a
    genotype has no supernet counterpart) or concatenates other than nodes 2..5."""
    g = parse_genotype(genotype) if isinstance(genotype, str) else check_genotype(genotype)
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
    return check_genotype((cells[0], _CONCAT, cells[1], _CONCAT))


# Published genotypes (facts carried over from the DARTS authors' released genotypes file,
# quark0/darts cnn/genotypes.py, which the DARTS paper's CIFAR-10 results use):
# DARTS_V1 = first-order search, DARTS_V2 = second-order search ("DARTS" there).
PUBLISHED: dict[str, Genotype] = {}
DARTS_V1 = check_genotype((
    (("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
     ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)), _CONCAT,
    (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)), _CONCAT))
DARTS_V2 = check_genotype((
    (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
     ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)), _CONCAT,
    (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
     ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)), _CONCAT))
PUBLISHED.update(DARTS_V1=DARTS_V1, DARTS_V2=DARTS_V2, DARTS=DARTS_V2)


def random_genotype(seed: int) -> Genotype:
    """A uniformly random genotype, DARTS' random-search baseline: per cell (normal, then
    reduce) and per intermediate node ``i`` (2..5), two distinct inputs drawn uniformly from
    nodes ``0..i-1`` (listed in increasing order), each with an op drawn uniformly from the
    seven that are not ``none``. ``numpy.random.default_rng(seed)``: the same seed, the same
    genotype on every machine.

    Example:
        >>> g = random_genotype(0)
        >>> len(g.normal), len(g.reduce), g == random_genotype(0), g == random_genotype(1)
        (8, 8, True, False)
        >>> all(j < 2 + m // 2 for m, (_, j) in enumerate(g.normal))  # node m//2 + 2 reads earlier nodes
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GenotypeError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    cells = []
    for _ in ("normal", "reduce"):
        gene = []
        for i in range(2, 2 + NUM_NODES):
            for j in sorted(rng.choice(i, size=2, replace=False).tolist()):
                gene.append((OPS[int(rng.integers(1, NUM_OPS))], int(j)))
        cells.append(tuple(gene))
    return Genotype(cells[0], _CONCAT, cells[1], _CONCAT)
