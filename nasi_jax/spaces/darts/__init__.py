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

The package, one concern a module: :mod:`~nasi_jax.spaces.darts.genotype` (ops, edges,
genotypes, read-out), :mod:`~nasi_jax.spaces.darts.ops` (the op modules and convolution
helpers), :mod:`~nasi_jax.spaces.darts.networks` (supernet, evaluation network),
:mod:`~nasi_jax.spaces.darts.cost` (parameter and FLOP counts),
:mod:`~nasi_jax.spaces.darts.stages` (the supernet as a graph of stages for the staged step)
and :mod:`~nasi_jax.spaces.darts.space` (:class:`DartsSpace`, the
:class:`~nasi_jax.spaces.base.Space` that ``get_space("darts")`` returns).

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

from nasi_jax.spaces.darts.cost import count_flops, count_params
from nasi_jax.spaces.darts.genotype import (DARTS_V1, DARTS_V2, EDGES, NUM_EDGES, NUM_NODES, NUM_OPS, OPS,
                                            PUBLISHED, Genotype, GenotypeError, check_genotype,
                                            genotype_from_alpha, genotype_to_ops, genotype_to_str, one_hot,
                                            ops_to_genotype, parse_genotype, random_genotype, read_out_ops)
from nasi_jax.spaces.darts.networks import (AuxiliaryHeadCIFAR, DartsSupernet, EvalCell, MixedEdge,
                                            NetworkCIFAR, SearchCell, reduction_cells)
from nasi_jax.spaces.darts.ops import (CONV_IMPLS, Cfg, DepthwiseConv, DilConv, FactorizedReduce, Op,
                                       ReLUConvBN, SepConv, resolve_conv_impl)
from nasi_jax.spaces.darts.space import SPACE, DartsSpace

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_OPS", "NUM_NODES", "GenotypeError", "Genotype",
    "parse_genotype", "genotype_to_str", "genotype_to_ops", "check_genotype", "one_hot",
    "genotype_from_alpha", "read_out_ops", "ops_to_genotype", "random_genotype", "DARTS_V1", "DARTS_V2", "PUBLISHED",
    "CONV_IMPLS", "Cfg", "resolve_conv_impl", "DepthwiseConv", "ReLUConvBN", "DilConv", "SepConv",
    "FactorizedReduce", "Op", "MixedEdge", "SearchCell", "reduction_cells", "DartsSupernet",
    "EvalCell", "AuxiliaryHeadCIFAR", "NetworkCIFAR", "count_params", "count_flops", "DartsSpace",
    "SPACE",
]
