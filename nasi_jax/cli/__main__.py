"""``python -m nasi_jax.cli``: the ``nasi`` program (:func:`nasi_jax.cli.run`)."""

from nasi_jax.cli import run

run()
