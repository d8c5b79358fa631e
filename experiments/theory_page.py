"""Write ``docs/theory.md`` from the JSON files of the theory experiments (every number on the
page comes from those files; the commands that wrote them are quoted).

    python experiments/theory_page.py            # reads docs/runs/theory_*.json
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from scipy import stats

from _common import fmt_num as fmt, md_header, md_row  # experiments/ is on sys.path

from nasi_jax import records

RUNS = "docs/runs"


def load(name, runs):
    path = os.path.join(runs, f"{name}.json")
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run `python experiments/{name}.py` first "
                         "(its docstring gives the command)")
    with open(path) as fh:
        return json.load(fh)


def width_section(w):
    out = ["## 1. Finite vs infinite width", "",
           f"`{w['command']}` — {w['inputs']}, {w['dtype']}, {w['parameterisation']}. Weights for "
           "seed s come from `PRNGKey(s)` for every architecture (common random numbers; MLPs, "
           "whose parameter shapes are all equal, then start from the same weights).", ""]
    for space, r in w["spaces"].items():
        ke, te = np.array(r["kernel_error"]), np.array(r["trace_error"])
        out += [f"**{space}** ({len(r['archs'])} architectures × {len(r['seeds'])} seeds; "
                f"{r['seconds']:.0f} s):", "",
                *md_header("width", *(str(x) for x in r["widths"])),
                md_row(["kernel error (mean)", *(fmt(v) for v in ke.mean(axis=(0, 2)))]),
                md_row(["trace error (mean)", *(fmt(v) for v in te.mean(axis=(0, 2)))]),
                md_row(["Spearman(empirical trace, analytic)", *(fmt(v) for v in r["rank_corr_by_width"])]),
                ""]
        sl = np.array(r["slope_per_arch"])
        m = ke.mean(axis=(0, 2))
        local = np.diff(np.log(m)) / np.diff(np.log(np.array(r["widths"], float)))
        verdict = ("consistent with the predicted 1/√width" if abs(r["slope"] + 0.5) <= 0.1
                   else "**not** the predicted −1/2")
        out += [f"* log-log slope of the mean kernel error: **{r['slope']:.3f}** ({verdict}); per "
                f"architecture {sl.min():.3f} to {sl.max():.3f} (median {np.median(sl):.3f}); of "
                f"the trace error {r['trace_slope']:.3f}. Slope between neighbouring widths: "
                + ", ".join(f"{v:.2f}" for v in local) + ".",
                f"* NASI's eq. 12 (cross-entropy, random labels, same inputs) at width "
                f"{r['widths'][-1]} against the analytic trace: Spearman "
                f"**{r['eq12_rank_corr_at_max_width']:.3f}**.",
                f"* `nasi_jax.core.ntk.exact_trace` against neural-tangents' empirical trace, every "
                f"architecture at width {r['widths'][0]} (seed 0): largest relative difference "
                f"{r['exact_trace_vs_neural_tangents_max_rel_diff']:.1e}.",
                ""]
    quick = os.path.join(RUNS, "theory_width_quick.json")
    if os.path.exists(quick):
        with open(quick) as fh:
            q = json.load(fh)
        out += [f"The small version, `{q['command']}`: slope {q['summary']['slope']:.3f}, rank "
                f"correlation at width {q['spaces']['mlp']['widths'][-1]} "
                f"{q['summary']['rank_corr_at_max_width']:.3f}, {q['summary']['wall_s']:.0f} s "
                "in all.", ""]
    out += [f"![error vs width](runs/{w['figure']})", ""]
    return out


def training_section(t):
    out = ["## 2. Proposition 1: training under MSE", "",
           f"`{t['command']}` — {t['inputs']}, {t['dtype']}, weights from seed {t['seed']}.", "",
           "| space | archs | width | η | median \\|GD − linearised\\|/GD at the end (empirical NTK / "
           "analytic) | bound holds (linearised analytic / GD) | bound slack (median) | "
           "Spearman(trace at init, loss at end): analytic / empirical / eq. 12 (MSE) | "
           "Spearman(analytic trace, loss at end / loss at start) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for space, r in t["spaces"].items():
        archs = r["archs"]
        end = f"loss_gd_t{r['steps_recorded'][-1]}"
        rc = r["rank_corr"]
        slack = np.median([v["bound_slack"] for v in archs.values()])
        le = r["linearisation_error_at_end"]
        tr = [v["trace_analytic"] for v in archs.values()]
        rel = [v["gd"][-1] / v["gd"][0] for v in archs.values()]
        rho_rel = stats.spearmanr(tr, rel).statistic
        out.append(
            f"| {space} | {len(archs)} | {r['width']} | {r['lr']:.3g} | "
            f"{le['empirical_kernel_median_rel']:.3f} / {le['analytic_kernel_median_rel']:.3f} | "
            f"{r['bound_holds_all']['linear_analytic']} / {r['bound_holds_all']['gd']} | {slack:.0f} | "
            f"{rc['trace_analytic'][end]:.3f} / {rc['trace_empirical'][end]:.3f} / "
            f"{rc['eq12_mse'][end]:.3f} | {rho_rel:.3f} |")
    mid = {s: [k for k in r["rank_corr"]["trace_analytic"] if not k.endswith(
        f"t{r['steps_recorded'][-1]}")][0] for s, r in t["spaces"].items()}
    out += ["", "Earlier in training (" + ", ".join(
        f"{s}: {k.replace('loss_gd_t', 'step ')}, Spearman "
        f"{t['spaces'][s]['rank_corr']['trace_analytic'][k]:.3f}" for s, k in mid.items()) + ").",
        "", f"![Proposition 1](runs/{t['figure']})", ""]
    return out


def chain_section(c):
    names, rho = c["spearman_matrix"]["names"], c["spearman_matrix"]["rho"]
    out = ["## 3. The approximation chain on NAS-Bench-201", "",
           f"`{c['command']}` — {c['cells']} cells ({c['sample']}); N=5 search network, C=16, "
           "PyTorch init, BatchNorm with batch statistics, float32; the exact trace on 16 real "
           "images.", "",
           *md_header("score", "Spearman with the exact trace", "Pearson of logs",
                      "Spearman with C10 test acc.")]
    for i, n in enumerate(names):
        pl = c["pairs"].get(f"{names[0]} | {n}", {}).get("pearson_log")
        out.append(f"| {n} | {rho[0][i]:.3f} | {fmt(pl)} | {c['spearman_vs_cifar10_test'][n]:.3f} |")
    out += ["", f"The infinite-width link: {c['infinite_width']}.", "",
            f"![chain](runs/{c['figure']})", ""]
    return out


def agnostic_section(a):
    s = a["summary"]
    out = ["## 4. Proposition 2: real against Gaussian inputs", "",
           f"`{a['command']}` — P: {a['inputs']['P']}; Q: {a['inputs']['Q']}; Z = "
           f"{a['inputs']['Z']}; width {a['width']}, seeds {a['seeds']}.", "",
           f"* Bound `Z L / n0` = **{s['bound']:.4f}** (L = 4 weight layers, n0 = 192) for the "
           f"{s['archs_with_assumptions']} MLPs with ReLU/linear layers only.",
           f"* Largest measured `|T(P) − T(Q)|`: analytic **{s['max_delta_analytic']:.2e}**, "
           f"empirical (mean over seeds) **{s['max_delta_empirical']:.2e}**; the bound holds for "
           f"every one: {s['holds_all']}.",
           "* The bound cannot fail here: for bias-free ReLU/linear MLPs `0 ≤ Θ(x, x) ≤ L‖x‖²/n0`, so "
           "with `‖x‖ ≤ 1` two distributions differ by at most `L/n0`, half the bound. The "
           "question is how much room it leaves. Q has P's mean squared norm by construction "
           f"({s['mean_sq_norm_P']:.3f}), which makes the difference small; the stress case S "
           "(Gaussian directions on the unit sphere, every norm 1) gives "
           f"**{s['max_delta_analytic_sphere']:.2e}**, {s['bound'] / s['max_delta_analytic_sphere']:.1f}× "
           "below the bound. For the all-linear net `T = L E‖x‖²/n0` holds to "
           f"{s['linear_net_T_P_vs_L_norm2_over_n0_rel_diff']:.0e}.",
           f"* Across all 64 MLPs (erf/GELU included), `T(P)` against `T(Q)`: Spearman "
           f"{s['spearman_T_P_T_Q_all_archs']:.4f}, Pearson {s['pearson_T_P_T_Q_all_archs']:.4f}.",
           "", *md_header("eps", "Z", "max \\|T(P) − T(Q_eps)\\| (analytic)", "bound")]
    for p in a["mixtures"]["points"]:
        out.append(f"| {p['eps']} | {p['Z']} | {p['delta_analytic_max']:.2e} | {p['bound']:.4f} |")
    out += ["", f"![Proposition 2](runs/{a['figure']})", ""]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=RUNS)
    p.add_argument("--notes", default="docs/theory_notes.md",
                   help="hand-written reading of the numbers, appended as it is")
    p.add_argument("--output", default="docs/theory.md")
    a = p.parse_args(argv)
    w, t, c, ag = (load(n, a.runs) for n in ("theory_width", "theory_training", "theory_chain",
                                              "theory_agnostic"))
    lines = ["# NASI against exact NTK theory", "",
             "Generated by `python experiments/theory_page.py` from `docs/runs/theory_*.json`. "
             "Machine: " + f"{w['versions'].get('cpu_count')}-core CPU, "
             f"jax {w['versions']['jax']}, no accelerator. Code: `nasi_jax/theory/` (neural-"
             "tangents 0.6.5 through `nasi_jax.nt_compat`); notebook `notebooks/ntk_theory.ipynb`.",
             ""]
    lines += width_section(w) + training_section(t) + chain_section(c) + agnostic_section(ag)
    if os.path.exists(a.notes):
        with open(a.notes) as fh:
            lines += [fh.read().rstrip(), ""]
    records.write_text_atomic(a.output, "\n".join(lines))
    print(f"wrote {a.output}")


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
