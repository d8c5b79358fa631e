"""Old import path of :mod:`nasi_jax.search.staged` (kept as a thin alias: the same module)."""

import sys

from nasi_jax.search import staged as _module

sys.modules[__name__] = _module
