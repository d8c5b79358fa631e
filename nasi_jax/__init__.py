"""nasi_jax: NASI (Neural Architecture Search at Initialization, ICLR 2022) in JAX/Flax."""

__version__ = "0.2.0.dev0"
