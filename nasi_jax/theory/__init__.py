"""Exact NTK theory beside NASI's approximations (neural-tangents as the reference).

* :mod:`~nasi_jax.theory.spaces` — MLP and convolutional search spaces built from
  ``neural_tangents.stax``, so every architecture has an analytic infinite-width NTK;
* :mod:`~nasi_jax.theory.kernels` — empirical vs analytic NTK over widths;
* :mod:`~nasi_jax.theory.training` — Proposition 1: gradient descent under MSE against the
  linearised prediction (``nt.predict``) and a mean-eigenvalue bound;
* :mod:`~nasi_jax.theory.agnostic` — Proposition 2: the trace under two input distributions;
* :mod:`~nasi_jax.theory.inputs` — the small real CIFAR-10 inputs these use.

Experiments: ``experiments/theory_width.py``, ``theory_training.py``, ``theory_agnostic.py``,
``theory_chain.py`` (NB201); results in ``docs/theory.md``; notebook
``notebooks/ntk_theory.ipynb``. neural-tangents is imported through
:mod:`nasi_jax.nt_compat`.
"""
