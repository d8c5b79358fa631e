"""DARTS as a :class:`~nasi_jax.spaces.base.Space`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from nasi_jax.spaces.base import Space, Stage
from nasi_jax.spaces.darts.cost import count_params
from nasi_jax.spaces.darts.genotype import (DARTS_V2, NUM_EDGES, NUM_OPS, genotype_to_ops, genotype_to_str,
                                            ops_to_genotype, parse_genotype, read_out_ops)
from nasi_jax.spaces.darts.networks import DartsSupernet
from nasi_jax.spaces.darts.ops import resolve_conv_impl
from nasi_jax.spaces.darts.stages import stages as supernet_stages

__all__ = ["DartsSpace", "SPACE"]


class DartsSpace(Space):
    """DARTS' two cells (normal, reduce; 14 edges x 8 ops each) in its supernet;
    ``alpha [2, 14, 8]``, ops ``[2, 14]``.

    * :meth:`supernet`: :class:`~nasi_jax.spaces.darts.networks.DartsSupernet` with
      ``3 * cells_per_stage + 2`` cells (``cells_per_stage=2``: DARTS' 8);
    * :meth:`read_out`: ``darts`` only (:func:`~nasi_jax.spaces.darts.genotype.read_out_ops`:
      per node the 2 strongest incoming edges keep their best op other than ``none``);
    * text form: DARTS' genotype (:func:`~nasi_jax.spaces.darts.genotype.parse_genotype`);
    * :meth:`describe`: the parameters of the evaluation network (C = 36, 20 cells, without
      the auxiliary head);
    * step: ``staged`` (:meth:`stages`, edge by edge) or ``one-program``;
    * not scorable (:mod:`nasi_jax.scoring` scores NB201-like cell spaces).

    Example:
        >>> from nasi_jax.spaces import get_space
        >>> sp = get_space("darts")
        >>> ops = sp.parse(sp.example)
        >>> sp.alpha_shape, len(ops), len(ops[0]), sp.parse(sp.to_text(ops)) == ops
        ((2, 14, 8), 2, 14, True)
        >>> sp.read_out(sp.parse(sp.example), "argmax")
        Traceback (most recent call last):
        ValueError: readout for space 'darts' must be one of ('darts',), got 'argmax'
        >>> sp.describe(ops)
        {'params_eval_network': 3349342, 'params_M': 3.349342}
        >>> sp.resolve_conv_impl("auto", "cpu"), sp.resolve_conv_impl("auto", "cpu", "staged"), sp.resolve_conv_impl("auto", "gpu")
        ('xla-dense', 'xla-taps', 'xla')
    """

    name = "darts"
    alpha_shape = (2, NUM_EDGES, NUM_OPS)
    readouts = ("darts",)
    conv_impls = ("xla", "xla-dense", "xla-taps", "xla-shift", "loop-safe")
    example = genotype_to_str(DARTS_V2)
    scorable = False

    def supernet(self, *, channels, cells_per_stage, num_classes, init_scheme, conv_impl,
                 dtype: Any = jnp.float32) -> DartsSupernet:
        """``DartsSupernet(channels, 3 * cells_per_stage + 2, num_classes, ...)``: ``net(x
        [B, H, W, 3], arch_weights [2, 14, 8], train) -> logits [B, num_classes]``."""
        return DartsSupernet(channels, 3 * cells_per_stage + 2, num_classes, init_scheme=init_scheme,
                             conv_impl=conv_impl, dtype=dtype)

    def stages(self, net) -> list[Stage]:
        """:func:`nasi_jax.spaces.darts.stages.stages` (TypeError unless ``net`` is a
        ``DartsSupernet`` with ``fixed=None``)."""
        return supernet_stages(net)

    def resolve_conv_impl(self, conv_impl: str, backend: str, step_impl: str = "one-program") -> str:
        """``auto`` -> on backend ``cpu``, where XLA runs grouped convolutions slowly,
        ``xla-taps`` for the staged step (each program with the depthwise form it needs,
        :mod:`nasi_jax.spaces.darts.taps`) and ``xla-dense`` for one program (whose
        forward-over-reverse pass needs one form for both modes); ``xla`` elsewhere. The
        others are checked against :attr:`conv_impls`."""
        if conv_impl != "auto" and conv_impl not in self.conv_impls:
            raise ValueError(f"conv_impl for space {self.name!r} must be one of {self.conv_impls} "
                             f"(or 'auto'), got {conv_impl!r}")
        impl = resolve_conv_impl(conv_impl, backend)
        return "xla-taps" if conv_impl == "auto" and impl == "xla-dense" and step_impl == "staged" else impl

    def step_impls(self) -> tuple[str, ...]:
        """``staged`` (the step edge by edge, for the CPU host loop) and ``one-program``."""
        return ("staged", "one-program")

    def read_out(self, alpha_star, readout: str):
        """``darts``: ``alpha* [..., 2, 14, 8] -> ops [..., 2, 14]`` by
        :func:`~nasi_jax.spaces.darts.genotype.read_out_ops` (traceable)."""
        if readout not in self.readouts:
            raise ValueError(f"readout for space {self.name!r} must be one of {self.readouts}, "
                             f"got {readout!r}")
        return read_out_ops(alpha_star)

    def _cells(self, ops) -> np.ndarray:
        """Op indices (``[2, 14]`` or flat, checked by :meth:`check_ops`) -> ``int [2, 14]``."""
        return np.asarray(self.check_ops(ops)).reshape(self.alpha_shape[:-1])

    def to_text(self, ops) -> str:
        """Op indices ``[2, 14]`` -> DARTS' genotype text (each node's 2 edges by input);
        :class:`~nasi_jax.spaces.darts.genotype.GenotypeError` unless every node keeps 2 edges."""
        return genotype_to_str(ops_to_genotype(self._cells(ops)))

    def parse(self, text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Genotype text (or a published name such as ``DARTS_V2``) -> ``(normal [14], reduce
        [14])`` op indices; :class:`~nasi_jax.spaces.darts.genotype.GenotypeError` (an
        :class:`~nasi_jax.spaces.base.ArchitectureError`) when malformed."""
        return genotype_to_ops(parse_genotype(text))

    def describe(self, ops) -> dict[str, Any]:
        """The parameters of DARTS' evaluation network for these cells (C = 36, 20 cells,
        without the auxiliary head; as DARTS' ``train.py`` logs it) and in millions."""
        n = count_params(ops_to_genotype(self._cells(ops)), channels=36, layers=20)
        return {"params_eval_network": n, "params_M": n / 1e6}

    def lookup_hint(self) -> str:
        return "accuracy: train a genotype with nasi train --genotype RESULT.json#SEED (docs/darts.md)"


SPACE = DartsSpace()
