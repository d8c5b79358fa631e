"""Old import path of :mod:`nasi_jax.scoring.proxies` (kept as a thin alias: the same module)."""

import sys

from nasi_jax.scoring import proxies as _module

sys.modules[__name__] = _module
