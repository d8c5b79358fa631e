"""Old import path of :mod:`nasi_jax.scoring.scorer` (kept as a thin alias: the same module)."""

import sys

from nasi_jax.scoring import scorer as _module

sys.modules[__name__] = _module
