"""Old import path of :mod:`nasi_jax.core.conv` (kept as a thin alias: the same module)."""

import sys

from nasi_jax.core import conv as _module

sys.modules[__name__] = _module
