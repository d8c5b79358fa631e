"""Old import path of :mod:`nasi_jax.core.memory` (kept as a thin alias: the same module)."""

import sys

from nasi_jax.core import memory as _module

sys.modules[__name__] = _module
