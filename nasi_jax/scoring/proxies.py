"""Training-free scores of a network at initialisation ("zero-cost proxies"), as pure functions.

Every score is a pure, jit-able function of the network ``f(params, x) -> logits [B, K]``,
its initial parameters and one batch, with no knowledge of the search space; :data:`PROXIES`
adapts each to the scoring harness (:mod:`nasi_jax.scoring.scorer`), which scores every cell
of a space with one compiled function. :func:`register` adds a proxy from outside.

"Weights" ``W`` below means the convolution kernels and the classifier's (Dense) kernel:
the parameter leaves whose Flax name is ``kernel`` (:func:`weight_mask`), as the
zero-cost-proxy literature sums over the ``.weight`` of ``Conv2d``/``Linear`` layers
only. ``L`` is the mean softmax cross-entropy of the batch (:func:`nasi_jax.core.ntk.cross_entropy`).

========================  ====  ==========================================================
name                      sign  score
========================  ====  ==========================================================
``nasi``                   +1   ``||grad_theta L||^2`` over all parameters (NASI eq. 12)
``ntk_trace``              +1   exact empirical NTK trace ``sum_{i,k} ||d f_k(x_i)/d theta||^2``
``nasi_objective``         +1   NASI eq. 13, ``s - mu max(0, s - nu)``, ``s`` the eq. 12 value
``grad_norm``              +1   ``sum_W ||dL/dW||_2``
``snip``                   +1   ``sum_W sum |W * dL/dW|``
``grasp``                  +1   ``-sum_W sum W * (H g)_W``, ``H g`` a Hessian-gradient product
``synflow``                +1   ``log sum_W sum |W| * dR/d|W|``, ``R`` the logits' sum on ones
``jacob_cov``              +1   ``-sum_i log(l_i + k) + 1/(l_i + k)``, ``l`` eigenvalues of corr(dF/dx)
``naswot``                 +1   ``log |det K_H|``, ``K_H`` the ReLU code kernel
``te_nas_cond``            -1   condition number of the NTK ``J J^T`` (per-example rows)
``zico``                   +1   ``sum_W log sum mean|g| / std(g)``, ``g`` over two half-batches
``meco``                   +1   ``sum_layers lambda_min(corr over channels)`` of one example
``swap``                   +1   distinct sample-wise ReLU patterns over the whole network
``az_expressivity``        +1   ``sum_l`` entropy of block ``l``'s channel covariance spectrum
``az_progressivity``       +1   ``min_l`` of the increase of that entropy from block to block
``az_trainability``        +1   ``mean_l -(sigma_l + 1/sigma_l - 2)``, block Jacobians' norms
``params``                 +1   parameters of the discrete network (the space's count)
``flops``                  +1   multiply-accumulates of one forward pass (the space's count;
                                AZ-NAS's fourth score, complexity)
========================  ====  ==========================================================

``sign`` is +1 when a larger score predicts a higher accuracy and -1 when a smaller one
does (:func:`sign`, :func:`describe`). Each function's docstring gives its paper.

Example:
    >>> from nasi_jax import proxies
    >>> [name for name, s, _ in proxies.describe() if s < 0]
    ['te_nas_cond']
    >>> f, p, x, y = proxies.toy_mlp()
    >>> float(proxies.grad_norm(f, p, x, y)) > 0
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.core import objective as objective_lib

__all__ = ["PROXIES", "Proxy", "Network", "register", "sign", "describe", "weight_mask", "toy_mlp",
           "collect_probes", "block_vjps", "floor",
           "nasi", "ntk_trace", "nasi_objective", "grad_norm", "snip", "grasp", "synflow",
           "jacob_cov", "naswot", "te_nas_cond", "zico", "meco", "swap", "az_expressivity",
           "az_progressivity", "az_trainability", "params", "flops"]

PyTree = Any


# --------------------------------------------------------------------------- helpers

from nasi_jax.scoring._helpers import (_float_dtype, _is_kernel, _kernel_pairs, _sum, toy_mlp,  # noqa: E402
                                       weight_mask)


# --------------------------------------------------------------------------- NTK-based

def nasi(f: Callable, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    """NASI's trace estimator (Shu, Cai, Dai, Ooi, Low, "NASI: Label- and Data-agnostic
    Neural Architecture Search at Initialization", ICLR 2022, eq. 12). Sign +1.

    ``s = ||grad_theta L(theta)||_2^2`` over **all** parameters, ``L`` the mean
    cross-entropy of the batch: a one-backprop lower bound of the NTK trace.

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> g = jax.grad(lambda q: ntk.cross_entropy(f(q, x), y))(p)
        >>> bool(jnp.allclose(nasi(f, p, x, y), sum(jnp.sum(v ** 2) for v in jax.tree_util.tree_leaves(g))))
        True
    """
    return ntk.nasi_estimator(f, params, x, y)


def ntk_trace(f: Callable, params: PyTree, x: jax.Array, *, chunk_size: int | None = None) -> jax.Array:
    """Exact trace of the empirical NTK at initialisation (Jacot, Gabriel, Hongler, "Neural
    Tangent Kernel", NeurIPS 2018; the quantity NASI, ICLR 2022, estimates). Sign +1.

    ``tr Theta_0 = ||J||_F^2 = sum_{i,k} ||d f_k(x_i) / d theta||_2^2`` over all parameters
    (:func:`nasi_jax.core.ntk.exact_trace`; ``chunk_size`` Jacobian rows per vmapped VJP).

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> J = jax.jacrev(f)(p, x)
        >>> bool(jnp.allclose(ntk_trace(f, p, x), sum(jnp.sum(v ** 2) for v in jax.tree_util.tree_leaves(J))))
        True
    """
    return ntk.exact_trace(f, params, x, chunk_size=chunk_size)


def nasi_objective(f: Callable, params: PyTree, x: jax.Array, y: jax.Array, *, mu: float = 2.0,
                   nu: float = 100.0) -> jax.Array:
    """NASI's penalised objective (Shu et al., ICLR 2022, eq. 13). Sign +1.

    ``R = s - mu * max(0, s - nu)`` with ``s`` = :func:`nasi` (eq. 12): the trace is
    rewarded up to the ceiling ``nu`` and penalised (slope ``1 - mu``) above it.

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> s = nasi(f, p, x, y)
        >>> bool(jnp.allclose(nasi_objective(f, p, x, y, mu=2.0, nu=s / 2), s - 2.0 * (s / 2)))
        True
        >>> bool(nasi_objective(f, p, x, y, nu=2 * s) == s)
        True
    """
    return objective_lib.penalised(nasi(f, params, x, y), mu, nu)


# --------------------------------------------------------------------------- gradient-based

def grad_norm(f: Callable, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    """Gradient norm (Abdelfattah, Mehrotra, Dudziak, Lane, "Zero-Cost Proxies for
    Lightweight NAS", ICLR 2021). Sign +1.

    ``sum_W ||dL/dW||_2``: the sum over weight tensors of the Euclidean norm of the
    loss gradient (not squared; unlike :func:`nasi`, biases and BatchNorm are left out).

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> g = jax.grad(lambda q: ntk.cross_entropy(f(q, x), y))(p)
        >>> ref = jnp.linalg.norm(g["l1"]["kernel"]) + jnp.linalg.norm(g["l2"]["kernel"])
        >>> bool(jnp.allclose(grad_norm(f, p, x, y), ref))
        True
    """
    g = ntk.loss_gradient(f, params, x, y)
    return _sum((jnp.sqrt(jnp.sum(jnp.square(gw))) for _, gw in _kernel_pairs(params, g)), x)


def snip(f: Callable, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    """SNIP's connection sensitivity (Lee, Ajanthan, Torr, "SNIP: Single-shot Network
    Pruning based on Connection Sensitivity", ICLR 2019), summed over the network as a NAS
    proxy by Abdelfattah et al. (ICLR 2021). Sign +1.

    ``sum_W sum |W * dL/dW|`` (elementwise product): ``|dL/dc|`` at ``c = 1`` for a
    multiplicative mask ``c`` on every weight.

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> g = jax.grad(lambda q: ntk.cross_entropy(f(q, x), y))(p)
        >>> ref = sum(jnp.sum(jnp.abs(p[l]["kernel"] * g[l]["kernel"])) for l in ("l1", "l2"))
        >>> bool(jnp.allclose(snip(f, p, x, y), ref))
        True
    """
    g = ntk.loss_gradient(f, params, x, y)
    return _sum((jnp.sum(jnp.abs(w * gw)) for w, gw in _kernel_pairs(params, g)), x)


def grasp(f: Callable, params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    """GraSP's gradient-flow score (Wang, Zhang, Grosse, "Picking Winning Tickets Before
    Training by Preserving Gradient Flow", ICLR 2020), summed over the network as a NAS
    proxy by Abdelfattah et al. (ICLR 2021). Sign +1 (their NB201 correlation, 0.54, is
    positive for this sign convention).

    With ``g = dL/dW`` (the gradient restricted to the weights) and ``H = d^2 L / dW^2``
    (the Hessian's weight block), ``score = -sum_W sum W * (H g)_W``. ``H g`` is a
    Hessian-vector product, ``grad_W <grad_W L, g>`` with ``g`` held fixed
    (reverse-over-reverse, which also works with :mod:`nasi_jax.core.conv`'s custom VJP).

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> L = lambda w1, w2: ntk.cross_entropy(f({"l1": {"kernel": w1}, "l2": {**p["l2"], "kernel": w2}}, x), y)
        >>> w = jnp.concatenate([p["l1"]["kernel"].ravel(), p["l2"]["kernel"].ravel()])
        >>> def Lflat(v):
        ...     return L(v[:12].reshape(3, 4), v[12:].reshape(4, 2))
        >>> Hg = jax.hessian(Lflat)(w) @ jax.grad(Lflat)(w)
        >>> bool(jnp.allclose(grasp(f, p, x, y), -jnp.sum(w * Hg), rtol=1e-4))
        True
    """
    def loss(p):
        return ntk.cross_entropy(f(p, x), y)

    g = jax.grad(loss)(params)
    v = jax.tree_util.tree_map_with_path(lambda path, a: a if _is_kernel(path) else jnp.zeros_like(a), g)

    def g_dot_v(p):
        gp = jax.grad(loss)(p)
        return _sum((jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(gp),
                                                   jax.tree_util.tree_leaves(v))), x)

    hv = jax.grad(g_dot_v)(params)
    return -_sum((jnp.sum(w * h) for w, h in _kernel_pairs(params, hv)), x)


# --------------------------------------------------------------------------- data-free

_SYNFLOW_PROBE_LOG2 = 90  # first-pass input 2**-90: fits R in [2**-36, 2**217] in float32


def _pow2(k: jax.Array, dtype) -> jax.Array:
    """``2.0 ** k`` (integer ``k``) built from the exponent bits: exactly a power of two."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64:
        bits = (jnp.clip(k, -1022, 1023).astype(jnp.int64) + 1023) << 52
        return jax.lax.bitcast_convert_type(bits, jnp.float64)
    if dtype == jnp.float32:
        bits = (jnp.clip(k, -126, 127).astype(jnp.int32) + 127) << 23
        return jax.lax.bitcast_convert_type(bits, jnp.float32)
    raise ValueError(f"synflow supports float32 and float64, got {dtype}")


def synflow(f: Callable, params: PyTree, input_shape: Sequence[int]) -> jax.Array:
    """SynFlow, **natural log** (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks
    without any data by iteratively conserving synaptic flow", NeurIPS 2020), summed over
    the network as a NAS proxy by Abdelfattah et al. (ICLR 2021). Sign +1.

    Every parameter is replaced by its absolute value, the input is all ones
    (``input_shape``, e.g. ``[1, H, W, 3]``), ``R = sum of the logits``, and

        synflow = sum_W sum |W| * dR/d|W|,       score = log(synflow).

    ``f`` must be the network without data-dependent normalisation: the reference removes
    BatchNorm; for NB201 the harness applies the network with ``train=False`` at
    initialisation, where each BatchNorm (running mean 0, variance 1, scale 1, bias 0) is
    ``x / sqrt(1 + 1e-5)``.

    **Rescaling (exact).** ``synflow`` reaches ``~7e49`` at NB201's full size (the
    all-``nor_conv_3x3`` cell), beyond float32. With non-negative parameters and a positive
    input every ReLU is the identity, so such a network without biases before its last
    layer (NB201: bias-free convolutions, BatchNorm with zero shift, a classifier bias) is
    ``R(x) = R_lin(x) + sum(b)`` with ``R_lin`` linear in ``x``; ``b`` enters neither
    ``dR/dW`` for any kernel nor its product with ``W``. Hence, for input ``2**-a * 1`` and
    the seed cotangent ``2**-b`` (i.e. differentiating ``2**-b R``),

        sum_W |W| * d(2**-b R)/dW (2**-a 1) = 2**-(a+b) synflow,

    and since multiplying by a power of two commutes with floating-point rounding (no
    overflow or underflow), the scaled computation is the exact scaled value. ``a`` and
    ``b`` are chosen per network from a forward pass with biases zeroed at input
    ``2**-90``: ``a + b ~ log2 R_lin`` split in halves, so activations and cotangents stay
    near ``sqrt(R_lin)`` and the scaled sum near ``synflow / R_lin``; then
    ``score = log(scaled sum) + (a + b) log 2``. (For a network that is not positively
    homogeneous in its input, the scale changes the value.)

    A network whose output does not depend on its input (an NB201 cell with no path from
    input to output: all activations after it are exactly 0) has ``synflow = 0``; its score
    is ``log(tiny)`` of the dtype (``-87.34`` float32, ``-708.40`` float64), below any
    positive synflow, instead of ``-inf`` (the ranking of the raw values is kept).

    Example:
        >>> f = lambda p, x: jax.nn.relu(x @ p["l1"]["kernel"]) @ p["l2"]["kernel"] + p["l2"]["bias"]
        >>> p = {"l1": {"kernel": jnp.array([[1., -2.], [3., 4.]])},
        ...      "l2": {"kernel": jnp.array([[-1.], [2.]]), "bias": jnp.array([5.])}}
        >>> # |W1| = [[1,2],[3,4]], |W2| = [1,2]: R = 1*(1+3) + 2*(2+4) + 5; each path
        >>> # 1 -> W1[i,j] -> W2[j] is counted once per layer: synflow = 2 * 16 = 32
        >>> round(float(jnp.exp(synflow(f, p, (1, 2)))), 3)
        32.0
    """
    p = jax.tree_util.tree_map(jnp.abs, params)
    dt = _float_dtype(p)
    ones = jnp.ones(tuple(input_shape), dt)
    no_bias = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if getattr(path[-1], "key", None) == "bias" else a, p)
    probe = jnp.sum(f(no_bias, ones * _pow2(jnp.int32(-_SYNFLOW_PROBE_LOG2), dt)))
    _, e = jnp.frexp(probe)  # probe = m 2**e, m in [0.5, 1)
    log2_r = jnp.where((probe > 0) & jnp.isfinite(probe), e + _SYNFLOW_PROBE_LOG2, 0).astype(jnp.int32)
    a = log2_r // 2
    b = log2_r - a
    sa, sb = _pow2(-a, dt), _pow2(-b, dt)
    grads = jax.grad(lambda q: jnp.sum(f(q, ones * sa)) * sb)(p)
    v = _sum((jnp.sum(w * g) for w, g in _kernel_pairs(p, grads)), ones)
    logv = jnp.log(jnp.where(v > 0, v, 1)) + (a + b).astype(dt) * jnp.log(jnp.asarray(2.0, dt))
    return jnp.where(v > 0, logv, jnp.log(jnp.finfo(dt).tiny))


# --------------------------------------------------------------------------- Mellor et al.

def jacob_cov(f: Callable, params: PyTree, x: jax.Array, *, k: float = 1e-5) -> jax.Array:
    """Jacobian covariance score (Mellor, Turner, Storkey, Crowley, "Neural Architecture
    Search without Training", arXiv:2006.04647 v1, 2020). Sign +1.

    ``J = d(sum_{i,k} f_k(x_i)) / dx`` with one row per example, flattened ``[B, D]`` (with
    batch-statistics BatchNorm the batch is one forward); ``C = corrcoef(J)`` ``[B, B]``
    (rows centred and scaled to unit norm); with ``l_i`` its eigenvalues (clipped at 0:
    ``C`` is positive semi-definite, round-off can give ``-1e-7``),

        score = -sum_i [ log(l_i + k) + 1 / (l_i + k) ],   k = 1e-5.

    If some row of ``J`` is constant (e.g. ``J = 0`` for an NB201 cell with no path from
    input to output) ``C`` is undefined (the reference gives NaN); the score is then the
    infimum over correlation matrices, the value at ``C = 1 1^T`` (eigenvalues
    ``B, 0, ..., 0``): ``-(B-1)(log k + 1/k) - log(B+k) - 1/(B+k)``.

    Example:
        >>> import numpy as np
        >>> f, p, x, y = toy_mlp()
        >>> x = x[:2]                           # B = 2 rows of D = 3 (corrcoef needs B < D)
        >>> J = np.asarray(jax.grad(lambda z: f(p, z).sum())(x))
        >>> l = np.linalg.eigvalsh(np.corrcoef(J))
        >>> ref = -np.sum(np.log(l + 1e-5) + 1 / (l + 1e-5))
        >>> bool(np.isclose(jacob_cov(f, p, x), ref, rtol=1e-4))
        True
    """
    jac = jax.grad(lambda z: jnp.sum(f(params, z)))(x)
    B = jac.shape[0]
    J = jac.reshape(B, -1)
    Jc = J - jnp.mean(J, axis=1, keepdims=True)
    cov = Jc @ Jc.T
    d = jnp.sqrt(jnp.diag(cov))
    corr = cov / (d[:, None] * d[None, :])
    lam = jnp.clip(jnp.linalg.eigvalsh(corr), 0.0, None)
    s = -jnp.sum(jnp.log(lam + k) + 1.0 / (lam + k))
    floor = -((B - 1) * (math.log(k) + 1.0 / k) + math.log(B + k) + 1.0 / (B + k))
    return jnp.where(jnp.isfinite(s), s, jnp.asarray(floor, s.dtype))


def naswot(kernel: jax.Array) -> jax.Array:
    """NASWOT (Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without
    Training", ICML 2021). Sign +1.

    For every ReLU the network runs on the batch, ``c = (input > 0)`` flattened per example
    ``[B, n]``; ``K_H = sum_ReLUs c c^T + (1 - c)(1 - c)^T`` ``[B, B]`` (entry ``(i, j)``:
    the number of units minus the Hamming distance of the two examples' codes;
    :func:`nasi_jax.spaces.nb201.relu_code_kernel`, summed by the NB201 network into the
    ``relu_codes`` collection), and

        score = log |det K_H|     (slogdet).

    ``K_H`` is an integer matrix, so ``|det K_H| >= 1`` and the score is ``>= 0`` when it is
    nonsingular. A singular ``K_H`` (``log|det| = -inf``: every example with the same code)
    gives ``-1``. In NB201 this fallback is rare: even in a cell with no path from input to
    output, the conv edges leaving the first cell's input see the stem's output, whose codes
    differ between examples, so such cells get an ordinary (low) score, as in the reference.

    Example:
        >>> import numpy as np
        >>> from nasi_jax.spaces.nb201 import relu_code_kernel
        >>> z = jnp.array([[1., -2., 3.], [-1., -2., 3.]])    # one ReLU's inputs, 2 examples
        >>> K = relu_code_kernel(z)                          # [[3, 2], [2, 3]]
        >>> bool(np.isclose(naswot(K), np.log(5.0)))
        True
        >>> float(naswot(relu_code_kernel(jnp.ones((2, 3)))))  # identical codes: singular
        -1.0
    """
    _, logdet = jnp.linalg.slogdet(kernel)
    return jnp.where(jnp.isfinite(logdet), logdet, jnp.asarray(-1.0, logdet.dtype))


# --------------------------------------------------------------------------- TE-NAS

def te_nas_cond(f: Callable, params: PyTree, x: jax.Array) -> jax.Array:
    """Condition number of the NTK (Chen, Gong, Wang, "Neural Architecture Search on
    ImageNet in Four GPU Hours: A Theoretically Inspired Perspective" (TE-NAS), ICLR 2021).
    Sign -1 (a smaller condition number predicts a higher accuracy).

    Row ``i`` of ``J`` ``[B, P_W]`` is the gradient w.r.t. the weights of
    ``sum_k f_k(x_i)`` (one VJP of the batch forward per example, vmapped; with
    batch-statistics BatchNorm the batch stays one forward); ``Theta = J J^T`` ``[B, B]``
    and with its eigenvalues ``l_min <= ... <= l_max`` (``eigvalsh``),

        score = l_max / l_min.

    (TE-NAS's reference also counts BatchNorm scales, also named ``weight`` in PyTorch;
    here the weights are the kernels, as for the other scores.) When ``Theta`` is singular
    to working precision (``l_min <= eps * l_max``; e.g. ``Theta = 0`` for an NB201 cell
    with no path from input to output) the score is ``1 / eps`` of the dtype (``8.4e6``
    float32, ``4.5e15`` float64), the largest condition number the dtype resolves.

    Example:
        >>> f, p, x, y = toy_mlp()
        >>> J = jax.jacrev(lambda q: f(q, x).sum(axis=1))(p)          # rows: examples
        >>> Jw = jnp.concatenate([J[l]["kernel"].reshape(5, -1) for l in ("l1", "l2")], 1)
        >>> bool(jnp.allclose(te_nas_cond(f, p, x), jnp.linalg.cond(Jw @ Jw.T), rtol=1e-3))
        True
    """
    out, vjp = jax.vjp(lambda p: f(p, x), params)
    B = out.shape[0]
    cots = jnp.broadcast_to(jnp.eye(B, dtype=out.dtype)[:, :, None], (B,) + out.shape)
    rows = jax.vmap(lambda c: vjp(c)[0])(cots)
    theta = _sum((g.reshape(B, -1) @ g.reshape(B, -1).T for _, g in _kernel_pairs(params, rows)), out)
    lam = jnp.linalg.eigvalsh(theta)
    lo, hi = lam[0], lam[-1]
    eps = jnp.finfo(theta.dtype).eps
    ok = lo > hi * eps
    return jnp.where(ok, hi / jnp.where(ok, lo, 1), 1.0 / eps)


# --------------------------------------------------------------------------- 2023-2024 scores
# (ZiCo, MeCo, SWAP, AZ-NAS: nasi_jax/scoring/_recent.py)

from nasi_jax.scoring._recent import (az_expressivity, az_progressivity, az_trainability,  # noqa: E402
                                      block_vjps, collect_probes, floor, meco, swap, zico)


# --------------------------------------------------------------------------- cost baselines

def params(net: "Network") -> jax.Array:
    """Parameters of the discrete network (a baseline in Abdelfattah et al., ICLR 2021, and
    NB201, Dong & Yang, ICLR 2020). Sign +1.

    The space's count of the cell (:meth:`nasi_jax.spaces.Space.cost`), jit-able in the
    traced op indices; for NB201 equal to :func:`nasi_jax.spaces.nb201.count_params`.

    Example:
        >>> from nasi_jax.spaces import get_space
        >>> count = get_space("nb201").cost("params", channels=16, cells_per_stage=5, num_classes=10,
        ...                                 image_size=32)
        >>> int(params(Network(None, None, None, lambda kind: count((3, 0, 3, 1, 0, 1)))))
        559386
    """
    return net.count("params")


def flops(net: "Network") -> jax.Array:
    """Multiply-accumulates of one forward pass for one image (a baseline in Abdelfattah et
    al., ICLR 2021, and NB201, Dong & Yang, ICLR 2020). Sign +1.

    The space's count (:meth:`nasi_jax.spaces.Space.cost`); for NB201 equal to
    :func:`nasi_jax.spaces.nb201.count_flops` (convolutions and the classifier).
    """
    return net.count("flops")


# --------------------------------------------------------------------------- registry

class Network(NamedTuple):
    """What a proxy sees of one cell's network in the scoring harness (:mod:`nasi_jax.scoring`).

    Attributes:
        apply: ``apply(params, x) -> logits [B, K]``, BatchNorm in the configured mode
            (``train``: batch statistics).
        apply_eval: the same with ``train=False`` (BatchNorm's running statistics).
        relu_kernel: ``relu_kernel(params, x) -> K_H [B, B]``, NASWOT's ReLU code kernel of
            the cell's network (configured BatchNorm mode).
        count: ``count(kind) -> scalar``, the discrete network's ``'params'`` or ``'flops'``
            (the space's jit-able count of the traced cell: one compilation serves every cell).
        probes: ``probes(params, x) -> [(kind, out, w)]``, every layer's output of one forward
            (configured BatchNorm mode) with its op's weight (:func:`collect_probes`).
        blocks: ``blocks(params, x, taps=None) -> [f_0, f_1, ...]``, the block outputs;
            ``taps[i]`` (zeros) makes block ``i+1`` see ``stop_gradient(f_i) + taps[i]``.
        key: a PRNG key for the proxies' random probes (from the scoring seed).
    """

    apply: Callable
    apply_eval: Callable
    relu_kernel: Callable
    count: Callable
    probes: Callable | None = None
    blocks: Callable | None = None
    key: jax.Array | None = None


class Proxy(NamedTuple):
    """A registered score: ``fn(net, params, x, y, cfg) -> scalar``.

    ``net`` is a :class:`Network`, ``params`` the supernet's initial parameters, ``x, y`` the
    batch and ``cfg`` the :class:`nasi_jax.scoring.ScoreConfig` (read for ``chunk_size``,
    ``mu`` and ``nu``). ``check(cfg)``, if given, returns a message when the settings cannot
    work for this proxy (``ScoreConfig.validate`` raises it), else None.
    """

    fn: Callable
    sign: int       # +1: larger predicts better accuracy; -1: smaller does
    description: str
    check: Callable | None = None  # check(cfg) -> None or what is wrong with the settings


PROXIES: dict[str, Proxy] = {
    "nasi": Proxy(lambda net, p, x, y, cfg: nasi(net.apply, p, x, y), +1,
                  "NASI's eq. 12 estimator ||grad_theta L||^2 (Shu et al., ICLR 2022)"),
    "ntk_trace": Proxy(lambda net, p, x, y, cfg: ntk_trace(net.apply, p, x, chunk_size=cfg.chunk_size), +1,
                       "exact empirical NTK trace sum_{i,k} ||d f_k(x_i)/d theta||^2 "
                       "(Jacot et al., NeurIPS 2018; estimated by NASI, Shu et al., ICLR 2022)"),
    "nasi_objective": Proxy(lambda net, p, x, y, cfg: nasi_objective(net.apply, p, x, y, mu=cfg.mu, nu=cfg.nu),
                            +1, "NASI's penalised objective s - mu max(0, s - nu), eq. 13 "
                            "(Shu et al., ICLR 2022)"),
    "grad_norm": Proxy(lambda net, p, x, y, cfg: grad_norm(net.apply, p, x, y), +1,
                       "sum of the weights' loss-gradient norms (Abdelfattah et al., ICLR 2021)"),
    "snip": Proxy(lambda net, p, x, y, cfg: snip(net.apply, p, x, y), +1,
                  "SNIP sum |W * dL/dW| (Lee et al., ICLR 2019; Abdelfattah et al., ICLR 2021)"),
    "grasp": Proxy(lambda net, p, x, y, cfg: grasp(net.apply, p, x, y), +1,
                   "GraSP -sum W * (H g) (Wang et al., ICLR 2020; Abdelfattah et al., ICLR 2021)"),
    "synflow": Proxy(lambda net, p, x, y, cfg: synflow(net.apply_eval, p, (1,) + tuple(x.shape[1:])), +1,
                     "natural log of SynFlow sum |W| * dR/d|W| on an all-ones input "
                     "(Tanaka et al., NeurIPS 2020; Abdelfattah et al., ICLR 2021)"),
    "jacob_cov": Proxy(lambda net, p, x, y, cfg: jacob_cov(net.apply, p, x), +1,
                       "input-Jacobian correlation score (Mellor et al., arXiv:2006.04647 v1, 2020)"),
    "naswot": Proxy(lambda net, p, x, y, cfg: naswot(net.relu_kernel(p, x)), +1,
                    "log|det K_H| of the ReLU code kernel (Mellor et al., NASWOT, ICML 2021)"),
    "te_nas_cond": Proxy(lambda net, p, x, y, cfg: te_nas_cond(net.apply, p, x), -1,
                         "condition number of the NTK J J^T (Chen et al., TE-NAS, ICLR 2021)"),
    "zico": Proxy(lambda net, p, x, y, cfg: zico(net.apply, p, x, y), +1,
                  "sum over weights of log sum mean|g|/std(g), g over two half-batches "
                  "(Li et al., ZiCo, ICLR 2023)",
                  lambda cfg: (None if cfg.batch_size % 2 == 0 else
                               f"zico splits the batch into 2 equal parts: --batch-size must be even, "
                               f"got {cfg.batch_size}")),
    "meco": Proxy(lambda net, p, x, y, cfg: meco(net.probes(p, x)), +1,
                  "sum over layers of the minimum eigenvalue of one example's channel "
                  "correlation (Jiang et al., MeCo, NeurIPS 2023)"),
    "swap": Proxy(lambda net, p, x, y, cfg: swap(net.probes(p, x)), +1,
                  "distinct sample-wise ReLU activation patterns (Peng et al., SWAP, ICLR 2024)"),
    "az_expressivity": Proxy(lambda net, p, x, y, cfg: az_expressivity(net.blocks(p, x)), +1,
                             "sum of the blocks' channel-covariance spectral entropies "
                             "(Lee & Ham, AZ-NAS, CVPR 2024)"),
    "az_progressivity": Proxy(lambda net, p, x, y, cfg: az_progressivity(net.blocks(p, x)), +1,
                              "least increase of that entropy from a block to the next "
                              "(Lee & Ham, AZ-NAS, CVPR 2024)"),
    "az_trainability": Proxy(lambda net, p, x, y, cfg: az_trainability(*block_vjps(net, p, x)), +1,
                             "mean of -(sigma + 1/sigma - 2) of the blocks' Jacobian norms "
                             "(Lee & Ham, AZ-NAS, CVPR 2024)"),
    "params": Proxy(lambda net, p, x, y, cfg: params(net), +1,
                    "parameter count (baseline of Abdelfattah et al., ICLR 2021; Dong & Yang, ICLR 2020)"),
    "flops": Proxy(lambda net, p, x, y, cfg: flops(net), +1,
                   "multiply-accumulates of one forward pass (baseline of Abdelfattah et al., "
                   "ICLR 2021; Dong & Yang, ICLR 2020)"),
}


def register(name: str, proxy: Proxy) -> Proxy:
    """Add a proxy to :data:`PROXIES` (then ``nasi score --proxy NAME`` and
    :func:`nasi_jax.scoring.score_cells` know it). ``proxy.fn(net, params, x, y, cfg)`` sees
    only the :class:`Network` of a cell, never its space."""
    if not isinstance(proxy, Proxy) or proxy.sign not in (1, -1):
        raise ValueError("register() takes a Proxy(fn, sign=+1 or -1, description)")
    if name in PROXIES and PROXIES[name] is not proxy:
        raise ValueError(f"a proxy named {name!r} is already registered")
    PROXIES[name] = proxy
    return proxy


def sign(name: str) -> int:
    """+1 if a larger score of proxy ``name`` predicts a higher accuracy, -1 if a smaller one.

    Example:
        >>> sign("synflow"), sign("te_nas_cond")
        (1, -1)
    """
    if name not in PROXIES:
        raise KeyError(f"unknown proxy {name!r}; choose one of {list(PROXIES)}")
    return PROXIES[name].sign


def describe() -> list[tuple[str, int, str]]:
    """``[(name, sign, description)]`` of every registered proxy, in registry order.

    Example:
        >>> [name for name, _, _ in describe()][:3]
        ['nasi', 'ntk_trace', 'nasi_objective']
    """
    return [(name, p.sign, p.description) for name, p in PROXIES.items()]
