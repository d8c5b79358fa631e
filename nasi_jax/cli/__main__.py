"""``python -m nasi_jax.cli``: the ``nasi`` command."""

import sys

from nasi_jax.cli import main

sys.exit(main())
