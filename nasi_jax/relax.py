"""Old import path of :mod:`nasi_jax.core.relax` (kept as a thin alias: the same module)."""

import sys

from nasi_jax.core import relax as _module

sys.modules[__name__] = _module
