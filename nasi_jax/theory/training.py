"""Proposition 1 measured: gradient-descent training under MSE against the NTK's prediction.

Setting (NASI §3.1; Jacot et al. 2018; Lee et al. 2019). Inputs ``X`` (N examples), targets
``Y [N, K]``, loss ``L(theta) = 1/(2 N K) ||f(X; theta) - Y||^2`` (half the mean squared error,
neural-tangents' normalisation), full-batch gradient descent with learning rate ``eta``.
Linearised around ``theta_0`` the residual ``r = f - Y`` follows
``dr/dt = -(eta / (N K)) Theta r``; with ``Theta = sum_i lambda_i u_i u_i^T`` (``N K``
eigenpairs) and ``c_i = u_i^T r_0``::

    L_t = 1/(2 N K) sum_i exp(-2 eta t lambda_i / (N K)) c_i^2                     (exact)

**Mean-eigenvalue bound.** ``lambda -> exp(-a lambda)`` is convex, so on ``[0, lambda_max]``
it lies below its chord: ``exp(-a lambda) <= 1 - (lambda / lambda_max) (1 - exp(-a lambda_max))``.
Summing with ``c_i^2 <= C = max_i c_i^2``::

    L_t <= (C / 2) * (1 - (lambda_bar / lambda_max) * kappa_t),
    kappa_t = 1 - exp(-2 eta t lambda_max / (N K)),   lambda_bar = tr(Theta) / (N K)

decreasing in the mean eigenvalue ``lambda_bar`` — the NTK trace over ``N K`` — at a fixed
``lambda_max``: the shape of the paper's Proposition 1 (training loss bounded through the
mean eigenvalue of the NTK at initialisation). The paper's exact constants are not in our
sources (PAPER.md gives the statement in words); this is our derivation of a bound of that
shape, and :func:`mean_eigenvalue_bound` computes it. It is loose by the factor
``N K C / ||r_0||^2`` (between 1 and ``N K``).

Functions: :func:`train_gd` (the real network, finite width), :func:`linearised_loss`
(``nt.predict.gradient_descent_mse`` with a given kernel), :func:`mean_eigenvalue_bound`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nasi_jax.theory import kernels, spaces, training
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 6))
    >>> y = jax.nn.one_hot(jnp.arange(8) % 10, 10) - 0.1
    >>> net = spaces.build("mlp", "relu-relu-relu", width=256)
    >>> _, params = net.init_fn(jax.random.PRNGKey(1), x.shape)
    >>> losses = training.train_gd(net.apply_fn, params, x, y, lr=1.0, steps=20)
    >>> bool(losses[-1] < losses[0])
    True
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["linearised_loss", "mean_eigenvalue_bound", "mse", "train_gd"]


def mse(fx: jax.Array, y: jax.Array) -> jax.Array:
    """``1/(2 N K) ||fx - y||^2``."""
    return 0.5 * jnp.mean(jnp.square(fx - y))


def train_gd(apply_fn: Callable, params: Any, x: jax.Array, y: jax.Array, *, lr: float,
             steps: int) -> np.ndarray:
    """Full-batch gradient descent on :func:`mse`; the loss at steps ``0..steps`` ``[steps+1]``.

    Raises ``FloatingPointError`` if the loss becomes non-finite (learning rate too large for
    this network: lower ``lr``).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")

    def loss(p):
        return mse(apply_fn(p, x), y)

    @jax.jit
    def step(p):
        value, g = jax.value_and_grad(loss)(p)
        return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), value

    # A host loop of jitted steps, not lax.scan: XLA:CPU runs the convolutions of the
    # backward pass 10-75x slower inside a loop body (see nasi_jax.core.conv).
    values = []
    for _ in range(steps):
        params, value = step(params)
        values.append(value)
    values.append(jax.jit(loss)(params))
    out = np.asarray(jnp.stack(values))
    if not np.all(np.isfinite(out)):
        raise FloatingPointError(f"training loss became non-finite (first at step "
                                 f"{int(np.argmin(np.isfinite(out)))}); lower the learning rate")
    return out


def linearised_loss(k: jax.Array, fx0: jax.Array, y: jax.Array, *, lr: float,
                    ts: jax.Array) -> np.ndarray:
    """Loss of the linearised network at times ``ts`` [T] (in steps), from neural-tangents.

    ``k`` is one output's NTK ``[N, N]`` (the full kernel is then ``k (x) I_K``: the analytic
    limit, or an empirical kernel averaged over outputs) or a full empirical NTK
    ``[N, N, K, K]`` (:func:`nasi_jax.theory.kernels.empirical_ntk` with ``full=True``).
    Uses ``nt.predict.gradient_descent_mse`` (gradient flow: the continuous
    limit of :func:`train_gd`, close to it while ``lr * lambda_max / (N K)`` is small).
    """
    from nasi_jax.nt_compat import import_neural_tangents
    nt = import_neural_tangents()
    n, num_out = y.shape
    if k.shape not in ((n, n), (n, n, num_out, num_out)) or fx0.shape != y.shape:
        raise ValueError(f"k must be [N, N] or [N, N, K, K] and fx0 [N, K] for y [N, K] = {y.shape}; "
                         f"got k {k.shape}, fx0 {fx0.shape}")
    predict = nt.predict.gradient_descent_mse(k, y, learning_rate=lr,
                                              trace_axes=(-1,) if k.ndim == 2 else ())
    fx = predict(jnp.asarray(ts, k.dtype), fx0)  # [T, N, K]
    return np.asarray(0.5 * jnp.mean(jnp.square(fx - y[None]), axis=(1, 2)))


def mean_eigenvalue_bound(k: jax.Array, fx0: jax.Array, y: jax.Array, *, lr: float,
                          ts: jax.Array) -> dict[str, Any]:
    """The mean-eigenvalue bound of the module docstring at times ``ts``.

    Returns ``bound [T]``, ``lambda_bar``, ``lambda_max`` (of the full ``[N K, N K]`` kernel
    ``k (x) I_K``, whose eigenvalues are ``k``'s, each ``K`` times) and ``slack`` (``N K C /
    ||r_0||^2``, how far the bound is from the loss at ``t = 0``).
    """
    n, num_out = y.shape
    if k.shape != (n, n):
        raise ValueError(f"k must be one output's kernel [N, N] = [{n}, {n}] (the analytic NTK or an "
                         f"empirical one averaged over outputs), got shape {k.shape}")
    if fx0.shape != y.shape:
        raise ValueError(f"fx0 {fx0.shape} and y {y.shape} must have the same shape")
    lam, u = jnp.linalg.eigh(k)
    lam = jnp.clip(lam, 0.0, None)
    c2 = jnp.square(u.T @ (fx0 - y))  # [N, K]: (u_i^T r_0[:, k])^2
    lam_max, lam_bar = lam[-1], jnp.mean(lam)
    if not float(lam_max) > 0:
        raise ValueError("the kernel has no positive eigenvalue: the bound is undefined")
    ts = jnp.asarray(ts, k.dtype)
    kappa = 1.0 - jnp.exp(-2.0 * lr * ts * lam_max / (n * num_out))
    cmax = jnp.max(c2)
    bound = 0.5 * cmax * (1.0 - lam_bar / lam_max * kappa)
    return {"bound": np.asarray(bound), "lambda_bar": float(lam_bar),
            "lambda_max": float(lam_max),
            "slack": float(n * num_out * cmax / jnp.sum(jnp.square(fx0 - y)))}
