"""Finite vs infinite width on the neural-tangents spaces: the empirical NTK against its exact
limit, over widths, seeds and every architecture of the MLP and convolutional spaces.

    python experiments/theory_width.py --archs 32 --output docs/runs/theory_width.json   # ~40 min
    python experiments/theory_width.py --quick                                   # ~1 min

For each space (:mod:`nasi_jax.theory.spaces`), architecture, width and seed: the relative
Frobenius error of the empirical NTK (``nt.empirical_ntk_fn``, mean over the 10 outputs)
against the analytic one (``kernel_fn(x, None, 'ntk')``) and of its trace; the log-log slope
of the mean error against width (theory: ``-1/2``, fluctuations of order ``1/sqrt(width)``);
the Spearman correlation, across architectures, between the empirical trace at each width
and the analytic trace; the same for NASI's eq. 12 estimator at the largest width (cross-
entropy, random labels, the same inputs); and a check, in float64, that
:func:`nasi_jax.core.ntk.exact_trace` equals neural-tangents' empirical trace on every network.

Inputs: ``--examples`` real CIFAR-10 images (NB201's train half), averaged down to 8x8 and
scaled to unit norm (:func:`nasi_jax.theory.inputs.cifar_subset`); ``--inputs gaussian``
needs no files. Writes ``--output`` (JSON) and the figure beside it (``.png``); the last
line printed is one JSON object with ``slope`` and ``rank_corr_at_max_width`` (first space).
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
from nasi_jax.nt_compat import empirical_ntk_trace  # noqa: E402
from nasi_jax.theory import inputs, kernels, spaces  # noqa: E402

DEFAULT_WIDTHS = {"mlp": "32,64,128,256,512,1024,2048", "conv": "8,16,32,64,128,256"}
QUICK = dict(spaces="mlp", archs=8, widths={"mlp": "64,128,256,512,1024"}, seeds=2, examples=8)


def pick_archs(space, n):
    archs = spaces.architectures(space)
    if n is None or n >= len(archs):
        return archs
    idx = np.linspace(0, len(archs) - 1, n).round().astype(int)  # spread over the space
    return [archs[i] for i in idx]


def space_inputs(space, x_img):
    return x_img.reshape(x_img.shape[0], -1) if space == "mlp" else x_img


def eq12_at(space, archs, width, x, seed):
    """NASI's eq. 12 (CE, random labels) at ``width`` for each arch, weights PRNGKey(seed)."""
    y = jax.random.randint(jax.random.PRNGKey(seed + 1), (x.shape[0],), 0, spaces.NUM_CLASSES)
    out = []
    for arch in archs:
        net = spaces.build(space, arch, width)
        _, params = net.init_fn(jax.random.PRNGKey(seed), x.shape)
        out.append(float(jax.jit(ntk.nasi_estimator, static_argnums=0)(net.apply_fn, params, x, y)))
    return np.array(out)


def exact_trace_check(space, archs, width, x):
    """max relative |ntk.exact_trace - neural-tangents' trace| over archs (float64)."""
    worst = 0.0
    for arch in archs:
        net = spaces.build(space, arch, width)
        _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
        ours = float(ntk.exact_trace(net.apply_fn, params, x))
        ref = float(empirical_ntk_trace(net.apply_fn, params, x))
        worst = max(worst, abs(ours - ref) / abs(ref))
    return worst


def figure(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2 * len(results), figsize=(6.5 * len(results), 4.2), squeeze=False)
    for j, (space, r) in enumerate(results.items()):
        w = np.array(r["widths"])
        ax = axes[0, 2 * j]
        ke = np.array(r["kernel_error"])  # [A, W, S]
        for a in range(ke.shape[0]):
            ax.plot(w, ke[a].mean(-1), color="0.75", lw=0.6)
        mean = ke.mean(axis=(0, 2))
        ax.plot(w, mean, "o-", color="C0", lw=2, label=f"mean, slope {r['slope']:.3f}")
        ax.plot(w, mean[0] * (w / w[0]) ** -0.5, "k--", lw=1, label="width$^{-1/2}$")
        ax.plot(w, np.array(r["trace_error"]).mean(axis=(0, 2)), "s-", color="C1",
                label=f"trace, slope {r['trace_slope']:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel("relative error vs analytic NTK")
        ax.set_title(f"{space}: {ke.shape[0]} architectures, {ke.shape[2]} seeds")
        ax.legend(fontsize=8)
        ax = axes[0, 2 * j + 1]
        ax.plot(w, r["rank_corr_by_width"], "o-")
        ax.set_xscale("log")
        ax.set_ylim(min(0.0, min(r["rank_corr_by_width"])), 1.02)
        ax.set_xlabel("width")
        ax.set_ylabel("Spearman(empirical trace, analytic)")
        ax.set_title(f"{space}: traces' ranking vs width\neq. 12 at width {w[-1]}: rho "
                     f"{r['eq12_rank_corr_at_max_width']:.3f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="mlp space, 8 architectures, widths 64 to "
                   "1024, 2 seeds, 8 inputs: about a minute on 2 CPU cores")
    p.add_argument("--spaces", default="mlp,conv")
    p.add_argument("--archs", type=int, default=None, help="architectures per space (default all)")
    p.add_argument("--mlp-widths", default=DEFAULT_WIDTHS["mlp"])
    p.add_argument("--conv-widths", default=DEFAULT_WIDTHS["conv"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--inputs", choices=("cifar", "gaussian"), default="cifar")
    add_data_args(p, benchmark=False)
    p.add_argument("--output", default=None, help="JSON path (default: none with --quick, "
                   "else docs/runs/theory_width.json)")
    p.add_argument("--replot", metavar="JSON", help="redraw the figure of an earlier run's JSON "
                   "(beside it) and stop")
    a = p.parse_args(argv)
    if a.replot:
        with open(a.replot) as fh:
            figure(os.path.splitext(a.replot)[0] + ".png", json.load(fh)["spaces"])
        return
    widths = {"mlp": a.mlp_widths, "conv": a.conv_widths}
    if a.quick:
        a.spaces, a.archs, a.seeds, a.examples = (QUICK[k] for k in ("spaces", "archs", "seeds",
                                                                      "examples"))
        widths.update(QUICK["widths"])
    elif a.output is None:
        a.output = "docs/runs/theory_width.json"
    t0 = time.perf_counter()
    if a.inputs == "cifar":
        x_img, _ = inputs.cifar_subset(a.data_dir, a.examples)
    else:
        g = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (a.examples, 8, 8, 3)))
        x_img = g / np.linalg.norm(g.reshape(a.examples, -1), axis=1)[:, None, None, None]
    x_img = jnp.asarray(x_img)
    results = {}
    for space in [s for s in a.spaces.split(",") if s]:
        if space not in spaces.SPACES:
            raise SystemExit(f"unknown space {space!r}; choose from {spaces.SPACES}")
        archs = pick_archs(space, a.archs)
        ws = [int(v) for v in widths[space].split(",")]
        x = space_inputs(space, x_img)
        sweep = kernels.width_sweep(space, archs, ws, x, list(range(a.seeds)))
        ke, te = sweep["kernel_error"], sweep["trace_error"]
        emp, ana = sweep["empirical_trace"], sweep["analytic_trace"]
        rho_w = [float(np.mean([stats.spearmanr(emp[:, w, s], ana).statistic
                                for s in range(a.seeds)])) for w in range(len(ws))]
        eq12 = eq12_at(space, archs, ws[-1], x, 0)
        results[space] = {
            "archs": archs, "widths": ws, "seeds": list(range(a.seeds)),
            "kernel_error": ke.tolist(), "trace_error": te.tolist(),
            "empirical_trace": emp.tolist(), "analytic_trace": ana.tolist(),
            "mean_kernel_error_by_width": ke.mean(axis=(0, 2)).tolist(),
            "slope": kernels.loglog_slope(ws, ke.mean(axis=(0, 2))),
            "slope_per_arch": [kernels.loglog_slope(ws, ke[i].mean(-1)) for i in range(len(archs))],
            "trace_slope": kernels.loglog_slope(ws, te.mean(axis=(0, 2))),
            "rank_corr_by_width": rho_w, "rank_corr_at_max_width": rho_w[-1],
            "eq12_at_max_width": eq12.tolist(),
            "eq12_rank_corr_at_max_width": float(stats.spearmanr(eq12, ana).statistic),
            "exact_trace_vs_neural_tangents_max_rel_diff": exact_trace_check(space, archs, ws[0], x),
            "seconds": sweep["seconds"],
        }
        r = results[space]
        print(f"[theory_width] {space}: slope {r['slope']:.3f} (trace {r['trace_slope']:.3f}), "
              f"rho at width {ws[-1]} {r['rank_corr_at_max_width']:.3f}, eq.12 rho "
              f"{r['eq12_rank_corr_at_max_width']:.3f}, exact_trace vs nt "
              f"{r['exact_trace_vs_neural_tangents_max_rel_diff']:.1e}", file=sys.stderr)
    first = next(iter(results.values()))
    summary = {"slope": round(first["slope"], 4),
               "rank_corr_at_max_width": round(first["rank_corr_at_max_width"], 4),
               "per_space": {s: {"slope": round(r["slope"], 4),
                                 "rank_corr_at_max_width": round(r["rank_corr_at_max_width"], 4)}
                             for s, r in results.items()},
               "wall_s": round(time.perf_counter() - t0, 1)}
    if a.output:
        stem = os.path.splitext(a.output)[0]
        figure(stem + ".png", results)
        write_result(a.output, run_record(
            __file__, argv,
            inputs=f"{a.examples} {'CIFAR-10 train images, 8x8, unit norm' if a.inputs == 'cifar' else 'Gaussian inputs, 8x8x3, unit norm'}",
            dtype="float64", parameterisation="NTK, W_std=1, no bias",
            spaces=results, summary=summary, figure=os.path.basename(stem + ".png")))
    print(json.dumps(summary))


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
