"""The 2023-2024 training-free scores: ZiCo, MeCo, SWAP and AZ-NAS's network scores (private;
the public names are :mod:`nasi_jax.scoring.proxies`'s, where they are registered).

Each is a pure function with its paper, maths and sign in the docstring, as the other
proxies; the layer- and block-level ones take what the network sows
(:class:`nasi_jax.scoring.proxies.Network`'s ``probes`` and ``blocks``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from nasi_jax.core import ntk
from nasi_jax.scoring._helpers import _float_dtype, _is_kernel, _sum, toy_mlp  # noqa: F401  (toy_mlp: doctests)

PyTree = Any


def floor(dtype) -> jax.Array:
    """The stand-in for a score of ``-inf`` (or an undefined one the paper's code maps to
    ``-inf``): the dtype's lowest finite value, below every real score, so such cells rank
    last and tie, as ``-inf`` does, while the harness keeps its finite-score check."""
    return jnp.asarray(jnp.finfo(dtype).min, dtype)


def zico(f: Callable, params: PyTree, x: jax.Array, y: jax.Array, *, n_batches: int = 2) -> jax.Array:
    """ZiCo, the inverse coefficient of variation of the gradients (Li, Yang, Bhardwaj,
    Marculescu, "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients",
    ICLR 2023). Sign +1.

    The batch is split into ``n_batches`` equal consecutive parts (the paper: two batches;
    each is its own forward, so batch-statistics BatchNorm sees only its part) and
    ``g_b = dL_b/dW`` is the mean cross-entropy's gradient on part ``b``. Per weight
    ``theta`` of a weight tensor (layer) ``W``, ``m = mean_b |g_b|`` and ``s = std_b g_b``
    (population, ``ddof = 0``); weights with ``s = 0`` are left out, and

        score = sum_{W: S_W > 0} log S_W,      S_W = sum_{theta in W, s > 0} m / s.

    A layer whose gradient is the same (e.g. 0) in every part adds nothing; a cell with no
    path from input to output scores exactly 0. (The reference code never zeroes the
    gradients between its two batches, so it reads ``g_1`` and ``g_1 + g_2``; this is the
    paper's per-batch definition.)

    Example:
        >>> import numpy as np
        >>> f, p, x, y = toy_mlp()
        >>> x, y = x[:4], y[:4]
        >>> g = [jax.grad(lambda q: ntk.cross_entropy(f(q, x[i:i + 2]), y[i:i + 2]))(p) for i in (0, 2)]
        >>> ref = 0.0
        >>> for l in ("l1", "l2"):
        ...     G = np.stack([np.ravel(gi[l]["kernel"]) for gi in g])
        ...     sd = G.std(0); ref += np.log(np.sum(np.abs(G).mean(0)[sd > 0] / sd[sd > 0]))
        >>> bool(np.isclose(zico(f, p, x, y), ref, rtol=1e-5))
        True
    """
    B = x.shape[0]
    if B % n_batches:
        raise ValueError(f"zico splits the batch into {n_batches} equal parts: batch size {B} "
                         f"is not a multiple of {n_batches}")
    m = B // n_batches
    grads = [ntk.loss_gradient(f, params, x[i * m:(i + 1) * m], y[i * m:(i + 1) * m])
             for i in range(n_batches)]
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    per = [jax.tree_util.tree_leaves(g) for g in grads]
    terms = []
    for k, (path, w) in enumerate(flat):
        if not _is_kernel(path):
            continue
        G = jnp.stack([p_[k].reshape(-1) for p_ in per])
        sd = jnp.std(G, axis=0)
        ok = sd > 0
        S = jnp.sum(jnp.where(ok, jnp.mean(jnp.abs(G), axis=0) / jnp.where(ok, sd, 1), 0))
        terms.append(jnp.where(S > 0, jnp.log(jnp.where(S > 0, S, 1)), 0))
    return _sum(terms, x)


def collect_probes(tree) -> list[tuple[str, jax.Array, jax.Array]]:
    """``[(kind, x, w)]`` from a network's ``probes`` collection (nested by module, each
    ``kind`` a tuple of ``{"x", "w"}`` as sown), in a fixed (sorted-name) order."""
    out = []

    def walk(node):
        for k in sorted(node):
            v = node[k]
            if isinstance(v, tuple):
                out.extend((k, d["x"], d["w"]) for d in v)
            else:
                walk(v)

    walk(tree)
    return out


def _min_channel_corr_eig(x: jax.Array) -> jax.Array:
    """``lambda_min`` of the Pearson correlation over channels of one feature map ``[H, W, C]``
    (positions are the observations); entries of a constant channel (0/0) are 0."""
    C = x.shape[-1]
    v = x.reshape(-1, C).T
    v = v - jnp.mean(v, axis=1, keepdims=True)
    cov = v @ v.T
    d = jnp.sqrt(jnp.diag(cov))
    corr = cov / (d[:, None] * d[None, :])
    corr = jnp.clip(jnp.where(jnp.isfinite(corr), corr, 0), -1, 1)
    return jnp.linalg.eigvalsh(corr)[0]


def meco(probes: Sequence[tuple[str, jax.Array, jax.Array]]) -> jax.Array:
    """MeCo, the minimum eigenvalue of the feature maps' correlation (Jiang, Wang, Bie,
    "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum Eigenvalue of
    Correlation", NeurIPS 2023). Sign +1.

    ``probes``: ``[(kind, x, w)]``, every layer output ``x`` ``[B, H, W, C]`` of one forward
    (:func:`collect_probes`) with its op's weight ``w`` (1 if the layer runs, 0 if it
    belongs to an op the cell does not use). Only the first example is read: with ``F`` its
    map as ``C`` variables observed at ``H W`` positions and ``P = corrcoef(F)`` ``[C, C]``
    (non-finite entries, from constant channels, set to 0; clipped to [-1, 1]),

        score = sum_layers w * lambda_min(P).

    Outputs that are not 4-D (pooled features, logits) have ``P`` all 0 in the reference
    (one position) and add nothing; they are skipped. The reference hooks every PyTorch
    module, so a tensor that several nested modules return (a ReLUConvBN and its
    BatchNorm) counts several times there; here each layer's output counts once: the
    ReLU, convolution and BatchNorm outputs, pooling and skip outputs, every cell's and
    reduction block's output.

    Example:
        >>> import numpy as np
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
        >>> F = np.asarray(x[0]).reshape(-1, 3).T
        >>> ref = np.linalg.eigvalsh(np.corrcoef(F))[0]
        >>> bool(np.isclose(meco([("layer", x, jnp.ones(())), ("layer", 2 * x, jnp.zeros(()))]), ref, rtol=1e-4))
        True
    """
    terms = [w * _min_channel_corr_eig(x[0]) for _, x, w in probes if x.ndim == 4]
    if not terms:
        raise ValueError("meco needs 4-D layer outputs [B, H, W, C]; got none")
    return _sum(terms, terms[0])


def _pack_patterns(a: jax.Array) -> list[jax.Array]:
    """``a`` bool ``[B, n]`` -> ``ceil(B/32)`` uint32 words ``[n]``: bit ``j`` of word ``c`` is
    ``a[32 c + j]`` (each neuron's pattern over the samples, exactly)."""
    B = a.shape[0]
    words = []
    for c in range(0, B, 32):
        chunk = a[c:c + 32].astype(jnp.uint32)
        shifts = jnp.arange(chunk.shape[0], dtype=jnp.uint32)[:, None]
        words.append(jnp.sum(chunk << shifts, axis=0, dtype=jnp.uint32))
    return words


def swap(probes: Sequence[tuple[str, jax.Array, jax.Array]]) -> jax.Array:
    """SWAP, the number of distinct sample-wise activation patterns (Peng, Song, Fayek,
    Ciesielski, Chang, "SWAP-NAS: Sample-Wise Activation Patterns for Ultra-fast NAS",
    ICLR 2024). Sign +1.

    ``probes``: ``[(kind, x, w)]`` of one forward (:func:`collect_probes`); the ``relu``
    outputs ``[B, H, W, C]`` of the ops that run (``w = 1``) are read. Every unit (position
    and channel) of every such ReLU is one neuron; its pattern is the binary vector
    ``(x_1 > 0, ..., x_B > 0)`` over the batch, and

        score = |{ pattern(neuron) : all neurons of all ReLUs }|,

    counted jointly over the network (exactly: patterns packed into 32-bit words and
    sorted). It is at most ``2**B``. The paper's size regularisation
    (``* exp(-(P - mu)^2 / sigma)``, with ``mu, sigma`` per space) is not applied: its NB201
    values are not published. The reference re-initialises weights ``N(0, 1)`` and averages
    32 draws; here one ``theta_0`` scores every cell, as for every proxy of the harness.

    Example:
        >>> import numpy as np
        >>> x = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(0), (5, 3, 3, 4)))
        >>> pats = np.asarray(x > 0).reshape(5, -1).T                   # [neurons, B]
        >>> int(swap([("relu", x, jnp.ones(())), ("relu", -x, jnp.zeros(()))])) == len(np.unique(pats, axis=0))
        True
    """
    words, valid = [], []
    for kind, x, w in probes:
        if kind != "relu" or x.ndim != 4:
            continue
        B = x.shape[0]
        pw = _pack_patterns((x > 0).reshape(B, -1))
        words.append(pw)
        valid.append(jnp.broadcast_to(w > 0, pw[0].shape))
    if not words:
        raise ValueError("swap needs the outputs of ReLUs on feature maps [B, H, W, C]; got none")
    cols = [jnp.concatenate([w_[c] for w_ in words]) for c in range(len(words[0]))]
    ok = jnp.concatenate(valid)
    first = jnp.argmax(ok)  # unused ops' neurons repeat a counted neuron's pattern
    cols = [jnp.where(ok, col, col[first]) for col in cols]
    srt = jax.lax.sort(cols, num_keys=len(cols))
    new = functools.reduce(jnp.logical_or, [c[1:] != c[:-1] for c in srt])
    count = 1 + jnp.sum(new)
    return jnp.where(jnp.any(ok), count, 0).astype(_float_dtype(x))


def _spectral_entropy(f: jax.Array) -> jax.Array:
    """Entropy ``-sum p log(p + 1e-8)`` of ``p = lambda / sum lambda``, ``lambda`` the eigenvalues
    (clipped at 0) of the channel covariance of ``f`` ``[B, H, W, C]`` over ``B H W`` rows."""
    X = f.reshape(-1, f.shape[-1])
    X = X - jnp.mean(X, axis=0)
    lam = jnp.clip(jnp.linalg.eigvalsh(X.T @ X / X.shape[0]), 0, None)
    p = lam / jnp.sum(lam)
    return -jnp.sum(p * jnp.log(p + 1e-8))


def az_expressivity(blocks: Sequence[jax.Array]) -> jax.Array:
    """AZ-NAS's expressivity (Lee, Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network
    Architecture Search", CVPR 2024). Sign +1.

    ``blocks``: the feature maps ``f_0`` (stem), ``f_1, ...`` (every cell and reduction
    block; NB201: 18 maps) ``[B, H, W, C]`` of one forward. For each, ``X`` ``[B H W, C]``
    centred, ``Sigma = X^T X / (B H W)``, ``p = lambda / sum lambda`` over its eigenvalues
    (clipped at 0, a guard against round-off the reference lacks), and

        E_l = -sum_k p_k log(p_k + 1e-8),        score = sum_l E_l:

    isotropic features (a flat spectrum) are expressive. A map that is all zero (after a
    cell with no path from its input) has ``0/0``; the score is then :func:`floor` (the
    reference's NaN -> -inf).

    Example:
        >>> import numpy as np
        >>> f = [jax.random.normal(jax.random.PRNGKey(i), (2, 3, 3, 4)) for i in range(2)]
        >>> def E(a):
        ...     X = np.asarray(a).reshape(-1, 4); X = X - X.mean(0)
        ...     l = np.linalg.eigvalsh(X.T @ X / len(X)); p = l / l.sum()
        ...     return -np.sum(p * np.log(p + 1e-8))
        >>> bool(np.isclose(az_expressivity(f), E(f[0]) + E(f[1]), rtol=1e-4))
        True
    """
    e = _sum((_spectral_entropy(f) for f in blocks), blocks[0])
    return jnp.where(jnp.isfinite(e), e, floor(e.dtype))


def az_progressivity(blocks: Sequence[jax.Array]) -> jax.Array:
    """AZ-NAS's progressivity (Lee, Ham, CVPR 2024). Sign +1.

    With ``E_l`` of :func:`az_expressivity` for the block outputs ``f_0, f_1, ...``,

        score = min_{l >= 1} (E_l - E_{l-1}):

    expressivity should grow from every block to the next (blocks of different widths
    are compared as they are, as in the reference). Undefined (a zero map): :func:`floor`.

    Example:
        >>> f = [jax.random.normal(jax.random.PRNGKey(i), (2, 3, 3, 4)) for i in range(3)]
        >>> E = [az_expressivity(f[i:i + 1]) for i in range(3)]
        >>> bool(jnp.isclose(az_progressivity(f), min(E[1] - E[0], E[2] - E[1])))
        True
    """
    E = jnp.stack([_spectral_entropy(f) for f in blocks])
    v = jnp.min(E[1:] - E[:-1])
    return jnp.where(jnp.isfinite(v), v, floor(v.dtype))


def _space_to_depth(g: jax.Array, r: int) -> jax.Array:
    """``[B, H r, W r, C] -> [B, H, W, C r r]`` (PixelUnshuffle; the channel order does not
    change the singular values it is used for)."""
    B, H, W, C = g.shape
    g = g.reshape(B, H // r, r, W // r, r, C).transpose(0, 1, 3, 5, 2, 4)
    return g.reshape(B, H // r, W // r, C * r * r)


def block_vjps(net, params: PyTree, x: jax.Array) -> tuple[list, list]:
    """``(g_ins, g_outs)`` of ``net`` (a :class:`nasi_jax.scoring.proxies.Network`): for each block ``l >= 1`` a Rademacher probe ``g_out_l`` (+-1,
    ``net.key``) of its output's shape and ``g_in_l = J_l^T g_out_l``, ``J_l`` the Jacobian
    of block ``l``'s output w.r.t. its own input ``f_{l-1}`` (one backward pass: block ``l``
    sees ``stop_gradient(f_{l-1}) + tap``, and ``d/d tap`` is its VJP alone)."""
    shapes = jax.eval_shape(lambda: net.blocks(params, x))
    taps = [jnp.zeros(s.shape, s.dtype) for s in shapes[:-1]]
    keys = jax.random.split(net.key, len(taps))
    outs, vjp = jax.vjp(lambda t: net.blocks(params, x, t)[1:], taps)
    g_outs = [jax.random.rademacher(k, o.shape, o.dtype) for k, o in zip(keys, outs)]
    (g_ins,) = vjp(g_outs)
    return list(g_ins), g_outs


def az_trainability(g_ins: Sequence[jax.Array], g_outs: Sequence[jax.Array]) -> jax.Array:
    """AZ-NAS's trainability (Lee, Ham, CVPR 2024). Sign +1.

    For each block ``l`` (:func:`block_vjps`: a Rademacher ``g_out`` ``[B, H, W, C_out]``
    and ``g_in = J_l^T g_out``; a reduction's ``g_in`` goes through space-to-depth to the
    output's ``H, W``), ``M = G_in^T G_out / (B H W)`` ``[C_in', C_out]`` estimates the
    per-position Jacobian (``E[g_out g_out^T] = I``), ``sigma_l`` is its largest singular
    value, and

        score = mean_l ( -sigma_l - 1/(sigma_l + 1e-6) + 2 ),

    0 at ``sigma = 1`` (gradients neither explode nor vanish). A block whose ``g_in``
    equals ``g_out`` exactly (an identity cell) is ``-inf`` in the reference: the score is
    then :func:`floor`.

    Example:
        >>> import numpy as np
        >>> gi, go = [jnp.full((1, 2, 2, 1), 2.0)], [jnp.ones((1, 2, 2, 1))]
        >>> round(float(az_trainability(gi, go)), 5)   # sigma = 2: -2 - 1/(2 + 1e-6) + 2
        -0.5
        >>> bool(az_trainability(go, go) == floor(jnp.float32))   # identity
        True
    """
    terms = []
    for gi, go in zip(g_ins, g_outs):
        same = gi.shape == go.shape
        ident = jnp.all(gi == go) if same else jnp.asarray(False)
        if gi.shape[1] != go.shape[1]:
            gi = _space_to_depth(gi, gi.shape[1] // go.shape[1])
        Gi, Go = gi.reshape(-1, gi.shape[-1]), go.reshape(-1, go.shape[-1])
        M = Gi.T @ Go / Gi.shape[0]
        sigma = jnp.linalg.svd(M, compute_uv=False)[0]
        t = -sigma - 1.0 / (sigma + 1e-6) + 2.0
        terms.append(jnp.where(ident, -jnp.inf, t))
    v = jnp.mean(jnp.stack(terms))
    return jnp.where(jnp.isfinite(v), v, floor(v.dtype))


