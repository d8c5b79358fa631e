"""Proposition 2 measured: the per-entry NTK trace under real CIFAR-10 inputs against Gaussian
inputs, with the stated bound ``n0^-1 * Z * D(gamma)``, on the neural-tangents MLP space.

    python experiments/theory_agnostic.py --output docs/runs/theory_agnostic.json   # ~3 min CPU

* ``P``: ``--examples`` CIFAR-10 training images (NB201 split, per-channel normalised,
  averaged down to 8x8, n0 = 192) divided by the largest norm, so ``||x|| <= 1``.
* ``Q``: i.i.d. Gaussian inputs with the same mean squared norm, rows longer than 1 shrunk
  onto the unit sphere (:func:`nasi_jax.theory.agnostic.gaussian_like`). ``P`` is an
  empirical (atomic) distribution and ``Q`` has a density, so ``Z = int |P - Q| = 2``; the
  mixtures ``Q_eps = (1 - eps) P + eps Q`` have ``Z = 2 eps`` and, ``T`` being linear in the
  distribution, ``|T(P) - T(Q_eps)| = eps |T(P) - T(Q)|`` exactly: difference and bound
  both grow linearly in ``Z``.
* A stress case ``S``: Gaussian directions scaled onto the unit sphere (every norm 1, while
  P's norms spread below 1). For an MLP ``Theta(x, x)`` depends on ``||x||`` alone, and for
  bias-free ReLU/linear layers ``0 <= Theta(x, x) <= L ||x||^2 / n0``, so with ``||x|| <= 1``
  no pair of distributions can differ by more than ``L / n0``, half the bound at ``Z = 2``:
  the bound cannot fail here, and the question is how much room it leaves. ``S`` shows the
  largest difference such inputs give; for the all-linear net ``T = L E||x||^2 / n0`` exactly.
* Per architecture: ``T(P) = mean_x Theta(x, x)`` (one output) from the analytic NTK and
  from the empirical NTK at ``--width`` (``--seeds`` initialisations; full trace from
  :func:`nasi_jax.core.ntk.exact_trace` divided by ``N K``), ``Delta = |T(P) - T(Q)|`` and, where
  the assumptions hold (ReLU/linear layers, gamma = 1), the bound ``Z L / n0`` with ``L = 4``
  weight layers. Also: Spearman rho across all 64 architectures between ``T(P)`` and
  ``T(Q)`` (does the ranking, which is what NASI uses, survive the change of inputs?).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from _common import add_data_args, run_record, save_figure, write_result  # noqa: E402  (experiments/ is on sys.path)

from nasi_jax.core import ntk  # noqa: E402
from nasi_jax.theory import agnostic, inputs, kernels, spaces  # noqa: E402


def per_entry(kernel_fn, net, x, seeds):
    """Analytic and empirical (one per seed, network ``net``) ``mean_x Theta(x, x)``.

    Pass the same ``kernel_fn`` for every input set of an architecture: its jitted kernel is
    cached per ``kernel_fn`` and compiles once for inputs of one shape."""
    ana = float(agnostic.per_entry_trace(kernels.analytic_ntk(kernel_fn, x)))
    emp = []
    for s in seeds:
        _, params = net.init_fn(jax.random.PRNGKey(s), x.shape)
        tr = ntk.exact_trace(net.apply_fn, params, x, chunk_size=spaces.NUM_CLASSES * 8)
        emp.append(float(tr) / (x.shape[0] * spaces.NUM_CLASSES))
    return ana, np.array(emp)


def figure(path, res, mix):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    archs = list(res)
    ok = [a for a in archs if res[a]["assumptions_hold"]]
    ax = axes[0]
    xs = np.arange(len(ok))
    ax.bar(xs - 0.2, [res[a]["delta_analytic"] for a in ok], 0.4, label="analytic |T(P) - T(Q)|")
    ax.bar(xs + 0.2, [res[a]["delta_empirical_mean"] for a in ok], 0.4,
           yerr=[res[a]["delta_empirical_std"] for a in ok], label="empirical (width, seeds)")
    ax.axhline(res[ok[0]]["bound"], color="k", ls="--", label="bound Z L / n0 (Z = 2)")
    ax.set_yscale("log")
    ax.set_xticks(xs, ok, rotation=45, ha="right", fontsize=7)
    ax.set_title("Proposition 2 on the ReLU/linear MLPs")
    ax.legend(fontsize=7)
    ax = axes[1]
    tp = np.array([res[a]["T_P_analytic"] for a in archs])
    tq = np.array([res[a]["T_Q_analytic"] for a in archs])
    col = ["C0" if res[a]["assumptions_hold"] else "C1" for a in archs]
    ax.scatter(tp, tq, c=col, s=14)
    lim = [min(tp.min(), tq.min()), max(tp.max(), tq.max())]
    ax.plot(lim, lim, "k:", lw=0.8)
    ax.set_xlabel("T(P): CIFAR-10 inputs")
    ax.set_ylabel("T(Q): Gaussian inputs")
    ax.set_title(f"all {len(archs)} MLPs (blue: assumptions hold); "
                 f"Spearman {stats.spearmanr(tp, tq).statistic:.3f}", fontsize=9)
    ax = axes[2]
    z = [m["Z"] for m in mix["points"]]
    ax.plot(z, [m["delta_analytic_max"] for m in mix["points"]], "o-",
            label="max over ReLU/linear MLPs, analytic")
    ax.plot(z, [m["bound"] for m in mix["points"]], "k--", label="bound Z L / n0")
    ax.set_yscale("symlog", linthresh=1e-5)
    ax.set_xlabel("Z = int |P - Q_eps| = 2 eps")
    ax.set_ylabel("|T(P) - T(Q_eps)|")
    ax.legend(fontsize=7)
    ax.set_title("mixtures Q_eps = (1 - eps) P + eps Q")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=128)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--archs", default=None,
                   help="N (the first N architectures of the space) or a comma-separated list of "
                        "architectures, e.g. relu-relu-relu,linear-linear-linear (default: all 64)")
    add_data_args(p, benchmark=False)
    p.add_argument("--output", default="docs/runs/theory_agnostic.json")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    space = "mlp"
    x_img, _ = inputs.cifar_subset(a.data_dir, a.examples, norm="none")
    xp = agnostic.into_unit_ball(jnp.asarray(x_img))
    xq = agnostic.gaussian_like(jax.random.PRNGKey(12345), xp)
    # Stress case: Gaussian directions on the unit sphere, so every |x| = 1 while P's norms are
    # spread below 1 (for MLPs T depends on the norms only, so this is what moves it).
    g = jax.random.normal(jax.random.PRNGKey(54321), xp.shape, xp.dtype)
    xs = g / jnp.linalg.norm(g, axis=1, keepdims=True)
    n0 = xp.shape[1]
    seeds = list(range(a.seeds))
    res = {}
    if a.archs is None or a.archs.isdigit():
        archs = spaces.architectures(space)[:None if a.archs is None else int(a.archs)]
    else:
        archs = [spaces.to_string(space, spaces.parse(space, x)) for x in a.archs.split(",") if x]
    if not any(agnostic.assumptions_hold(space, x) for x in archs):
        raise SystemExit("none of the chosen architectures meets Proposition 2's assumptions "
                         f"(layers from {agnostic.LIPSCHITZ_OPS} only): choose more with --archs")
    for arch in archs:
        ok = agnostic.assumptions_hold(space, arch)
        kernel_fn = spaces.build(space, arch, 1).kernel_fn  # width-free: one per architecture
        net = spaces.build(space, arch, a.width)
        ap, ep = per_entry(kernel_fn, net, xp, seeds if ok else [])
        aq, eq = per_entry(kernel_fn, net, xq, seeds if ok else [])
        r = {"assumptions_hold": ok, "T_P_analytic": ap, "T_Q_analytic": aq,
             "delta_analytic": abs(ap - aq)}
        if ok:
            as_ = float(agnostic.per_entry_trace(kernels.analytic_ntk(kernel_fn, xs)))
            r.update({"T_sphere_analytic": as_, "delta_analytic_sphere": abs(ap - as_)})
            d = np.abs(ep - eq)
            bound = agnostic.bound(z=2.0, depth=agnostic.depth(space, arch), n0=n0)
            r.update({"T_P_empirical": ep.tolist(), "T_Q_empirical": eq.tolist(),
                      "delta_empirical_mean": float(d.mean()), "delta_empirical_std": float(d.std()),
                      "bound": bound, "holds_analytic": abs(ap - aq) <= bound,
                      "holds_empirical": bool(np.all(d <= bound))})
        res[arch] = r
        print(f"[theory_agnostic] {arch}: T(P) {ap:.5f} T(Q) {aq:.5f}"
              + (f" bound {r['bound']:.4f} empirical delta {r['delta_empirical_mean']:.2e}"
                 if ok else " (assumptions do not hold)"), file=sys.stderr, flush=True)
    ok_archs = [k for k, v in res.items() if v["assumptions_hold"]]
    # T is linear in the distribution: T(Q_eps) = (1 - eps) T(P) + eps T(Q), so the difference is
    # exactly eps |T(P) - T(Q)| while Z = 2 eps (no resampling noise).
    worst = max(res[k]["delta_analytic"] for k in ok_archs)
    points = [{"eps": eps, "Z": 2 * eps, "delta_analytic_max": eps * worst,
               "bound": agnostic.bound(z=2 * eps, depth=4, n0=n0)}
              for eps in (0.0, 0.25, 0.5, 0.75, 1.0)]
    tp = np.array([v["T_P_analytic"] for v in res.values()])
    tq = np.array([v["T_Q_analytic"] for v in res.values()])
    lin = "linear-linear-linear"  # Theta(x, x) = L |x|^2 / n0 exactly for this net
    lin_formula = agnostic.depth(space, lin) * float(jnp.mean(jnp.sum(xp ** 2, axis=1))) / n0
    summary = {
        "archs_with_assumptions": len(ok_archs),
        "max_delta_analytic_sphere": max(res[k]["delta_analytic_sphere"] for k in ok_archs),
        "mean_sq_norm_P": float(jnp.mean(jnp.sum(xp ** 2, axis=1))),
        "linear_net_T_P_vs_L_norm2_over_n0_rel_diff": abs(res[lin]["T_P_analytic"] - lin_formula)
        / lin_formula if lin in res else None,
        "bound": res[ok_archs[0]]["bound"],
        "max_delta_analytic": max(res[k]["delta_analytic"] for k in ok_archs),
        "max_delta_empirical": max(res[k]["delta_empirical_mean"] for k in ok_archs),
        "holds_all": all(res[k]["holds_analytic"] and res[k]["holds_empirical"] for k in ok_archs),
        "spearman_T_P_T_Q_all_archs": float(stats.spearmanr(tp, tq).statistic),
        "pearson_T_P_T_Q_all_archs": float(stats.pearsonr(tp, tq).statistic),
    }
    stem = os.path.splitext(a.output)[0]
    mix = {"points": points}
    figure(stem + ".png", res, mix)
    write_result(a.output, run_record(
        __file__, argv,
        inputs={"P": f"{a.examples} CIFAR-10 train images, 8x8 (n0 = {n0}), divided by the "
                     "largest norm", "Q": "Gaussian, same mean squared norm, projected into the "
                     "unit ball", "Z": "2 (P atomic, Q with a density)"},
        width=a.width, seeds=seeds, dtype="float64", archs=res, mixtures=mix,
        summary=summary, figure=os.path.basename(stem + ".png"),
        wall_s=round(time.perf_counter() - t0, 1)))
    print(json.dumps(summary))


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
