"""The maths beneath the search, with no knowledge of any search space.

* :mod:`~nasi_jax.core.relax`: the Gumbel-softmax relaxation of an architecture.
* :mod:`~nasi_jax.core.objective`: NASI's penalised objective (eq. 13) and the ceiling rule.
* :mod:`~nasi_jax.core.ntk`: the trace estimator of eq. 12 and the exact empirical NTK trace.
* :mod:`~nasi_jax.core.memory`: XLA's memory estimates and budgets.
* :mod:`~nasi_jax.core.conv`: a convolution whose derivatives stay fast inside XLA:CPU loops.
"""
