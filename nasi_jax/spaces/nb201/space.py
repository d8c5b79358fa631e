"""NAS-Bench-201 as a :class:`~nasi_jax.spaces.base.Space`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from nasi_jax.spaces.base import CELL_READOUTS, Space
from nasi_jax.spaces.nb201 import codec, cost
from nasi_jax.spaces.nb201.networks import BLOCK_TAPS, BLOCKS, PROBES, RELU_CODES, NB201Network
from nasi_jax.spaces.nb201.stages import stages as supernet_stages


class NB201Space(Space):
    """NB201's cell (6 edges x 5 ops) in its macro network; ``alpha [6, 5]``.

    Example:
        >>> from nasi_jax.spaces import get_space
        >>> sp = get_space("nb201")
        >>> sp.alpha_shape, sp.parse(sp.example), sp.num_archs
        ((6, 5), (3, 0, 3, 1, 0, 1), 15625)
        >>> sp.describe(sp.parse(sp.example))["params_M"]
        0.559386
    """

    name = "nb201"
    alpha_shape = (codec.NUM_EDGES, codec.NUM_OPS)
    readouts = CELL_READOUTS
    conv_impls = ("xla", "loop-safe")
    example = codec.EXAMPLE_ARCH
    scorable = True
    relu_codes = RELU_CODES
    probes = PROBES
    blocks = BLOCKS
    block_taps = BLOCK_TAPS
    benchmark = "nb201"

    def supernet(self, *, channels, cells_per_stage, num_classes, init_scheme, conv_impl,
                 dtype: Any = jnp.float32):
        return NB201Network(channels, cells_per_stage, num_classes, init_scheme=init_scheme,
                            dtype=dtype, conv_impl=conv_impl)

    def stages(self, net):
        """:func:`nasi_jax.spaces.nb201.stages.stages`: stem, cell by cell, reductions, head."""
        return supernet_stages(net)

    def step_impls(self) -> tuple[str, ...]:
        return ("one-program", "staged")

    def resolve_scoring_conv_impl(self, conv_impl: str, backend: str) -> str:
        """``auto``: ``loop-safe`` on CPU, where XLA runs the backward convolutions inside
        ``lax.switch`` far slower (docs/performance.md), ``xla`` elsewhere."""
        if conv_impl == "auto":
            return "loop-safe" if backend == "cpu" else "xla"
        return self.resolve_conv_impl(conv_impl, backend)

    def to_text(self, ops) -> str:
        return codec.arch_to_str(self.check_ops(ops))

    def parse(self, text: str) -> tuple[int, ...]:
        return codec.parse_arch(text)

    def check_ops(self, ops) -> tuple[int, ...]:
        return codec._check_ops(tuple(ops) if not isinstance(ops, tuple) else ops)

    def describe(self, ops) -> dict[str, Any]:
        """Degenerate or not, and the size of NB201's C = 16, N = 5 network (the one the
        benchmark trained): parameters (millions) and multiply-adds per image (millions)."""
        ops = self.check_ops(ops)
        return {"degenerate": codec.is_degenerate(ops), "params_M": cost.count_params(ops) / 1e6,
                "flops_M": cost.count_flops(ops) / 1e6}

    def lookup_hint(self) -> str:
        return ("accuracies: add --benchmark DATA/nb201/nb201_accuracies.csv (NAS-Bench-201's table, "
                "docs/benchmark_table.md), or look a cell up with: nasi info --space nb201 --arch 'ARCH' "
                "--benchmark DATA/nb201/nb201_accuracies.csv")

    def ops_to_code(self, ops) -> int:
        return codec.ops_to_code(ops)

    def code_to_ops(self, code: int) -> tuple[int, ...]:
        return codec.code_to_ops(code)

    def cost(self, kind, *, channels, cells_per_stage, num_classes, image_size):
        if kind not in ("params", "flops"):
            raise ValueError(f"kind must be 'params' or 'flops', got {kind!r}")
        size = dict(channels=channels, cells_per_stage=cells_per_stage, num_classes=num_classes,
                    image_size=image_size)
        return lambda ops: cost.count_jit(kind, ops, **size)


SPACE = NB201Space()
