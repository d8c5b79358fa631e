"""Old import path of :mod:`nasi_jax.nb201_table` (kept as a thin alias: the same module).

The NAS-Bench-201 accuracy table moved to ``nasi_jax.nb201_table``; ``nasi bench`` is the
performance benchmark (:mod:`nasi_jax.perf`), unrelated to this table.
"""

import sys

from nasi_jax import nb201_table as _module

sys.modules[__name__] = _module
