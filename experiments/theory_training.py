"""Proposition 1 on real data: train every architecture of the neural-tangents spaces by gradient
descent under MSE on a small CIFAR-10 subset, against the linearised prediction
(``nt.predict``), the mean-eigenvalue bound, and the NTK trace at initialisation.

    python experiments/theory_training.py --output docs/runs/theory_training.json   # ~30 min CPU

For each space (:mod:`nasi_jax.theory.spaces`) and architecture, at width ``--mlp-width`` /
``--conv-width`` with weights from ``PRNGKey(--seed)``:

* ``gd``: the finite network trained by full-batch gradient descent for ``--steps`` steps on
  ``L = ||f - Y||^2 / (2 N K)`` (:func:`nasi_jax.theory.training.train_gd`), ``Y`` the
  one-hot labels minus 1/K;
* ``linear_empirical`` / ``linear_analytic``: ``nt.predict.gradient_descent_mse`` with the
  full empirical NTK at initialisation (``[N, N, K, K]``) / the analytic infinite-width NTK,
  from the network's own initial outputs;
* ``bound``: :func:`nasi_jax.theory.training.mean_eigenvalue_bound` with the analytic NTK;
* across architectures, Spearman rho between the NTK trace at initialisation (analytic,
  empirical, and NASI's eq. 12 estimator with MSE) and the training loss after ``t`` steps.

One learning rate per space for all its architectures, ``eta = --lr-factor * N K /
max_arch lambda_max(Theta_inf)``, so that every network's linearised dynamics are stable
(Proposition 1's fixed learning rate; NASI's ceiling keeps the trace below ``N K / eta``).

Inputs: ``--examples`` images averaged down to 8x8, each scaled to norm ``sqrt(192)``
(coordinates of mean square 1). With unit-norm inputs (``--input-norm unit``) the NTK is of
order ``1/192``, the learning rate that trains in ``--steps`` steps is ~10^3, and at these
widths gradient descent leaves the linear regime (docs/theory.md quotes the measurement); at
the usual scale it stays much closer to it.
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
from nasi_jax.theory import inputs, kernels, spaces, training  # noqa: E402


def record_steps(steps, n=40):
    return np.unique(np.r_[0, np.geomspace(1, steps, n).round().astype(int)])


def run_space(space, archs, width, x, y, steps, seed, lr_factor):
    n, k_out = y.shape
    k_inf = {a: kernels.analytic_ntk(spaces.build(space, a, width).kernel_fn, x) for a in archs}
    lam_max = max(float(jnp.linalg.eigvalsh(k)[-1]) for k in k_inf.values())
    lr = lr_factor * n * k_out / lam_max
    ts = record_steps(steps)
    out = {"lr": lr, "width": width, "steps_recorded": ts.tolist(), "archs": {}}
    for i, arch in enumerate(archs):
        net = spaces.build(space, arch, width)
        _, params = net.init_fn(jax.random.PRNGKey(seed), x.shape)
        fx0 = net.apply_fn(params, x)
        k_emp = kernels.empirical_ntk(net.apply_fn, params, x, full=True)  # [N, N, K, K]
        gd = training.train_gd(net.apply_fn, params, x, y, lr=lr, steps=steps)
        lin_e = training.linearised_loss(k_emp, fx0, y, lr=lr, ts=ts)
        lin_a = training.linearised_loss(k_inf[arch], fx0, y, lr=lr, ts=ts)
        b = training.mean_eigenvalue_bound(k_inf[arch], fx0, y, lr=lr, ts=ts)
        mse_grad = float(ntk.tree_sq_norm(jax.grad(
            lambda p: training.mse(net.apply_fn(p, x), y))(params)))
        out["archs"][arch] = {
            "gd": gd[ts].tolist(), "linear_empirical": lin_e.tolist(),
            "linear_analytic": lin_a.tolist(), "bound": b["bound"].tolist(),
            "bound_slack": b["slack"], "lambda_bar": b["lambda_bar"], "lambda_max": b["lambda_max"],
            "trace_analytic": float(kernels.full_trace(k_inf[arch], k_out)),
            "trace_empirical": float(jnp.einsum("iikk->", k_emp)),
            "eq12_mse": mse_grad,
            "bound_holds_linear_analytic": bool(np.all(lin_a <= b["bound"] * (1 + 1e-9))),
            "bound_holds_gd": bool(np.all(gd[ts] <= b["bound"] * (1 + 1e-9))),
        }
        r = out["archs"][arch]
        print(f"[theory_training] {space} {i + 1}/{len(archs)} {arch}: loss {gd[0]:.4f} -> "
              f"{gd[-1]:.4f} (linearised {lin_e[-1]:.4f} / analytic {lin_a[-1]:.4f}, bound "
              f"{r['bound'][-1]:.4f})", file=sys.stderr, flush=True)
    A = out["archs"]
    final = {name: np.array([A[a][name][-1] for a in archs])
             for name in ("gd", "linear_empirical", "linear_analytic", "bound")}
    mid = len(ts) // 2
    out["rank_corr"] = {}
    for tname, tr in (("trace_analytic", "trace_analytic"), ("trace_empirical", "trace_empirical"),
                      ("eq12_mse", "eq12_mse")):
        v = np.array([A[a][tr] for a in archs])
        out["rank_corr"][tname] = {
            f"loss_gd_t{ts[-1]}": float(stats.spearmanr(v, final["gd"]).statistic),
            f"loss_gd_t{ts[mid]}": float(stats.spearmanr(
                v, [A[a]["gd"][mid] for a in archs]).statistic)}
    out["linearisation_error_at_end"] = {
        "empirical_kernel_median_rel": float(np.median(
            np.abs(final["linear_empirical"] - final["gd"]) / final["gd"])),
        "analytic_kernel_median_rel": float(np.median(
            np.abs(final["linear_analytic"] - final["gd"]) / final["gd"]))}
    out["bound_holds_all"] = {
        "linear_analytic": all(A[a]["bound_holds_linear_analytic"] for a in archs),
        "gd": all(A[a]["bound_holds_gd"] for a in archs)}
    return out


def figure(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4.2 * len(results)), squeeze=False)
    for row, (space, r) in enumerate(results.items()):
        ts = np.array(r["steps_recorded"])
        archs = list(r["archs"])
        traces = np.array([r["archs"][a]["trace_analytic"] for a in archs])
        pick = [archs[int(np.argmin(traces))], archs[int(np.argsort(traces)[len(archs) // 2])],
                archs[int(np.argmax(traces))]]
        ax = axes[row, 0]
        for c, a in enumerate(pick):
            d = r["archs"][a]
            ax.plot(ts, d["gd"], "-", color=f"C{c}", label=f"{a} (trace {d['trace_analytic']:.2f})")
            ax.plot(ts, d["linear_empirical"], "--", color=f"C{c}", lw=1)
            ax.plot(ts, d["linear_analytic"], ":", color=f"C{c}", lw=1.5)
            ax.plot(ts, d["bound"], "-.", color=f"C{c}", lw=0.8, alpha=0.7)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("log")
        ax.set_xlabel("gradient-descent step t")
        ax.set_ylabel("training MSE")
        ax.set_title(f"{space}: GD (solid), nt.predict empirical (--) / analytic (:), bound (-.)",
                     fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[row, 1]
        final = [r["archs"][a]["gd"][-1] for a in archs]
        ax.scatter(traces, final, s=12)
        ax.set_xscale("log")
        ax.set_yscale("log")
        key = f"loss_gd_t{ts[-1]}"
        ax.set_xlabel("analytic NTK trace at initialisation")
        ax.set_ylabel(f"training loss after {ts[-1]} steps")
        ax.set_title(f"{space}: Spearman {r['rank_corr']['trace_analytic'][key]:.3f} over "
                     f"{len(archs)} architectures")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default="mlp,conv")
    p.add_argument("--archs", type=int, default=None, help="architectures per space (default all)")
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--mlp-width", type=int, default=512)
    p.add_argument("--conv-width", type=int, default=64)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr-factor", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-norm", choices=("dim", "unit"), default="dim",
                   help="scale each image to norm sqrt(192) (default) or 1 (the NTK is then ~1/192 "
                        "and gradient descent leaves the linear regime: see the docstring)")
    add_data_args(p, benchmark=False)
    p.add_argument("--output", default="docs/runs/theory_training.json")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    x_img, labels = inputs.cifar_subset(a.data_dir, a.examples, norm=a.input_norm)
    y = jnp.asarray(np.eye(spaces.NUM_CLASSES)[labels] - 1.0 / spaces.NUM_CLASSES)
    results = {}
    for space in [s for s in a.spaces.split(",") if s]:
        archs = spaces.architectures(space)
        if a.archs is not None and a.archs < len(archs):
            archs = [archs[i] for i in np.linspace(0, len(archs) - 1, a.archs).round().astype(int)]
        x = jnp.asarray(x_img.reshape(a.examples, -1) if space == "mlp" else x_img)
        width = a.mlp_width if space == "mlp" else a.conv_width
        results[space] = run_space(space, archs, width, x, y, a.steps, a.seed, a.lr_factor)
    stem = os.path.splitext(a.output)[0]
    figure(stem + ".png", results)
    summary = {s: {"rank_corr": r["rank_corr"], "linearisation_error_at_end":
                   r["linearisation_error_at_end"], "bound_holds_all": r["bound_holds_all"]}
               for s, r in results.items()}
    write_result(a.output, run_record(
        __file__, argv,
        inputs=f"{a.examples} CIFAR-10 train images (NB201 split), 8x8, norm "
               f"{'sqrt(192)' if a.input_norm == 'dim' else '1'}; targets one-hot minus 1/K",
        dtype="float64", seed=a.seed,
        spaces=results, summary=summary, figure=os.path.basename(stem + ".png"),
        wall_s=round(time.perf_counter() - t0, 1)))
    print(json.dumps(summary))


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
