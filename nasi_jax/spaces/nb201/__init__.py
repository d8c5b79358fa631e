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
  order is the benchmark's own, so it needs the table (:mod:`nasi_jax.nb201_table`).

The supernet takes the architecture as an input array ``arch_weights`` of shape
``[6, 5]`` (edges x ops): edge ``e`` computes ``sum_k arch_weights[e, k] * op_k``.
A one-hot ``arch_weights`` gives exactly the discrete cell's output, so one compiled
function serves every architecture, Gumbel sample and seed.

When the ``relu_codes`` collection (:data:`RELU_CODES`) is mutable, every ReLU the
network runs sows the binary-code kernel of its input (:func:`relu_code_kernel`, NASWOT's
``K_H`` term), scaled by its edge's architecture weight inside a cell (so with one-hot
weights the ops a cell does not use add 0) and by 1 elsewhere; their sum is NASWOT's
kernel (:func:`nasi_jax.scoring.proxies.naswot`). When it is not mutable nothing is computed.
Likewise :data:`PROBES` collects every layer's output with its op's weight (MeCo, SWAP),
:data:`BLOCKS` the outputs of the stem and of every cell and reduction block (AZ-NAS), and
variables ``in{i:03d}`` of :data:`BLOCK_TAPS` cut the gradient between blocks (block ``i+1``
sees ``stop_gradient(f_i) + tap``).

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

from nasi_jax.spaces.nb201.codec import (EDGES, EXAMPLE_ARCH, NUM_ARCHS, NUM_EDGES, NUM_OPS, OPS,
                                         ArchError, _check_ops, all_arch_strs, arch_to_str,
                                         code_to_ops, is_degenerate, one_hot, ops_to_code,
                                         parse_arch)
from nasi_jax.spaces.nb201.cost import count_flops, count_jit, count_params
from nasi_jax.spaces.nb201.networks import (BLOCK_TAPS, BLOCKS, PROBES, RELU_CODES, Cell, Edge,
                                            NB201Network, ReLUConvBN, ResBlock, relu_code_kernel)
from nasi_jax.spaces.nb201.space import SPACE, NB201Space

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_OPS", "NUM_ARCHS", "ArchError",
    "parse_arch", "arch_to_str", "ops_to_code", "code_to_ops", "all_arch_strs", "one_hot",
    "is_degenerate", "NB201Network", "count_params", "count_flops", "count_jit", "RELU_CODES",
    "PROBES", "BLOCKS", "BLOCK_TAPS",
    "relu_code_kernel", "NB201Space", "SPACE",
]
