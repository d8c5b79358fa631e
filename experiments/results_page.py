"""Assemble ``docs/results.md`` (and its search figure) from the experiments' outputs.

    python experiments/results_page.py

Reads ``docs/runs/nb201_tune.{json,md}``, ``docs/runs/nb201_search_table.{json,md}``,
``docs/runs/nb201_modes_*.{json,md}``, ``docs/runs/nb201_heldout.{json,md}``,
``docs/runs/nb201_default_*_s3000.json``, ``docs/runs/proxy_correlation.{json,md}``,
``docs/runs/league_1000.{json,md}`` and ``docs/runs/ensemble_{tune,table}.{json,md}`` (written by
``experiments/nb201_search.py``, ``experiments/nb201_modes.py``, ``nasi search``,
``experiments/proxy_correlation.py``, ``experiments/league.py`` and
``experiments/ensemble_search.py``); every number on the page comes from those files, and
the gaps to the paper and the held-out differences are computed here.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from _common import add_data_args, fmt_ms, save_figure  # noqa: E402  (experiments/ is on sys.path)

from nasi_jax import nb201_table, records

RUNS = "docs/runs"
PAPER_4T = {"cifar10_test": (93.55, 0.10), "cifar100_test": (71.20, 0.14), "imagenet16_test": (44.84, 1.41)}
PAPER_T = {"cifar10_test": (93.08, 0.24), "cifar100_test": (69.51, 0.59), "imagenet16_test": (40.87, 0.85)}
NAMES = {"cifar10_test": "CIFAR-10", "cifar100_test": "CIFAR-100", "imagenet16_test": "ImageNet16-120"}


def _read(name):
    with open(os.path.join(RUNS, name)) as fh:
        return fh.read()


def search_figure(tables, benchmark, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tab = nb201_table.load_nb201_table(benchmark)
    rows = [(t["search_network"]["cells_per_stage"], r) for t in tables for r in t["results"]
            if r["method"] in ("NASI-FIX", "NASI-ADA")]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    labels = []
    for i, (n, r) in enumerate(rows):
        acc = [tab.lookup(a)["cifar10_test"] for a in r["cells"]]
        ax.scatter(np.full(len(acc), i) + np.linspace(-0.15, 0.15, len(acc)), acc, s=10)
        ax.plot([i - 0.3, i + 0.3], [np.mean(acc)] * 2, color="k", lw=1)
        labels.append(f"N={n} {r['method'][5:]}\nT={r['steps']}\n{r['data']}")
    ax.axhline(PAPER_4T["cifar10_test"][0], color="r", ls="--", lw=1, label="paper NASI (4T)")
    ax.axhline(PAPER_T["cifar10_test"][0], color="orange", ls=":", lw=1, label="paper NASI (T)")
    ax.set_xticks(range(len(rows)), labels, fontsize=6)
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title("NB201 cells selected by NASI (one dot per seed; bar = mean)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def tried(tune, table):
    """What was tried to close the gap, with the numbers from the runs' files."""
    lines = ["**What was tried** (each a committed command's output):", ""]
    path = os.path.join(RUNS, "nb201_real_s5_t100.json")
    if os.path.exists(path):
        d = json.loads(_read("nb201_real_s5_t100.json"))
        c, sm = d["config"], d["summary"]
        lines.append(f"* The paper's DARTS values untuned (mu={c['mu']:g}, nu={c['nu']:g} fixed, b={c['batch_size']}, "
                     f"tau={c['tau']:g}, argmax read-out) on the full NB201 supernet (C={c['channels']}, "
                     f"N={c['cells_per_stage']}), T={c['steps']}, {sm['cifar10_test']['n']} seeds, real data "
                     f"(`{d['command']}`, `docs/runs/nb201_real_s5_t100.json`): CIFAR-10 {fmt_ms(sm['cifar10_test'])}, "
                     f"CIFAR-100 {fmt_ms(sm['cifar100_test'])}, ImageNet16-120 {fmt_ms(sm['imagenet16_test'])}, "
                     f"valid {fmt_ms(sm['cifar10_valid'])}.")
    for v in ("fix", "ada"):
        c = tune["choice"][v]
        r = next(x for x in table["results"] if x["data"] == "real" and x["method"] == f"NASI-{v.upper()}"
                 and x["steps"] == 400)
        lines.append(f"* NASI-{v.upper()} tuned on validation: mean CIFAR-10 valid {c['criterion_cifar10_valid']:.2f} on the "
                     f"tuning seeds (T and 2T averaged), {r['summary']['cifar10_valid']['mean']:.2f} at 4T on the "
                     f"table's seeds. The difference is the spread between seeds and the optimism of picking the "
                     f"best of a large grid on 8 seeds.")
    return lines


def _gaps(table, label):
    out = []
    for method in ("NASI-FIX", "NASI-ADA"):
        for steps, paper in ((400, PAPER_4T), (100, PAPER_T)):
            r = next((x for x in table["results"] if x["data"] == "real" and x["method"] == method
                      and x["steps"] == steps), None)
            if r is None:
                continue
            parts = [f"{NAMES[m]} {r['summary'][m]['mean']:.2f} vs {pm:.2f} ({r['summary'][m]['mean'] - pm:+.2f})"
                     for m, (pm, _) in paper.items()]
            out.append(f"* {label}, {method}, {'4T' if steps == 400 else 'T'} = {steps}, real data: " + "; ".join(parts))
    return out


MODE_NAMES = {"real": "CIFAR-10 images and labels", "random-labels": "CIFAR-10 images, random labels",
              "random": "Gaussian inputs, random labels (no data)"}


def front_door():
    """What `nasi search --space nb201` gives on seeds the project never used (section 0)."""
    lines = ["## 0. The front door: `nasi search --space nb201`", "",
             "The default search is the preset chosen on validation accuracy for the data it is given "
             "(`nb201-random` without data, `nb201-real` with `--data real`; every value and where it came "
             "from: [presets.md](presets.md)). Four seeds never used elsewhere in the project (3000-3003), "
             "the command as a newcomer types it plus `--benchmark`:", ""]
    for name in ("nb201_default_random_s3000", "nb201_default_real_s3000"):
        d = json.loads(_read(name + ".json"))
        sm = d["summary"]
        lines += [f"* `{d['command']}` (`docs/runs/{name}.json`): CIFAR-10 {fmt_ms(sm['cifar10_test'])}, "
                  f"CIFAR-100 {fmt_ms(sm['cifar100_test'])}, ImageNet16-120 {fmt_ms(sm['imagenet16_test'])}, "
                  f"valid {fmt_ms(sm['cifar10_valid'])}; median rank by CIFAR-10 test "
                  f"{int(np.median([r['benchmark']['rank_cifar10_test'] for r in d['seeds']]))} of "
                  f"{d['seeds'][0]['benchmark']['table_rows']}; {d['wall_time_s']:.0f} s wall "
                  f"({d['compile_time_s']:.0f} s compiling, {d['per_step_s']:.3f} s per step per seed)."]
    old = json.loads(_read("nb201_random_s5_t100.json"))["summary"]["cifar10_test"]
    lines += ["", f"Before presets (0.1.0) the same command ran the paper's DARTS values on Gaussian inputs "
              f"and selected cells at {fmt_ms(old)} (`docs/runs/nb201_random_s5_t100.json`, seeds 0-4); "
              "`--preset paper` still runs exactly that.", ""]
    return lines


def modes_tune_section():
    t = json.loads(_read("nb201_modes_tune.json"))
    keep = all(t["modes"][m][v]["decision"] == "keep the real-data values" for m in t["modes"] for v in ("fix", "ada"))
    return ["### 1b. The values carry across the three data modes (full depth)", "",
            "Procedure (`experiments/nb201_modes.py`, docstring): " + t["procedure"].replace("\n", " "), "",
            _read("nb201_modes_tune.md").strip(), "",
            ("Every data mode keeps the real-data values: no mode's own best grid point beats them by more than "
             "two standard errors of the paired per-seed difference, so `--data` selects presets with the same "
             "values (`nb201-random`, `nb201-random-labels`, `nb201-real`) and they differ only in the data." if keep
             else "At least one data mode takes its own values (table above)."), ""]


def modes_table_section():
    t = json.loads(_read("nb201_modes_table.json"))
    tm = t["timing"]
    h = json.loads(_read("nb201_heldout.json"))
    lines = ["### 2a. Full depth (N = 5), three data modes: the paper's Table 2 question on NB201", "",
             f"Search network: NB201 skeleton, C = 16, N = 5, b = 8, tau = 0.5, each mode's presets (NASI-FIX: "
             f"`nb201-<mode>`, NASI-ADA: `nb201-<mode>-ada`); seeds 0-9; mean ± population std. T and 4T come "
             f"from one 400-step mu = 0 run per mode, replayed (`nasi_jax.search.replay`). `s > nu`: share of "
             f"steps with the hinge active. `budget s / seed`: one seed of `nb201-random` searched alone for "
             f"400 steps ({tm['search_4T_s']:.1f} s, compile {tm['compile_s']:.0f} s apart; T is its first "
             f"quarter; `nb201_modes.py timing`, nothing else running). Baselines at that budget: a uniform "
             f"random cell, and best-of-k by parameter count, where k is what `nasi score --proxy params` "
             f"scores in the budget ({tm['params_cells_per_s']:.0f} cells/s here, so k covers the whole "
             f"space and the row is the cell with the most parameters).", "",
             _read("nb201_modes_table.md").split("\n", 2)[2].strip(), ""]
    fix = {(r["data"], r["steps"]): r["summary"] for r in t["results"] if r["method"] == "NASI-FIX"}
    par = next(r["summary"] for r in t["results"] if r["method"].startswith("best-of-k"))
    c10 = {m: fix[(m, 100)]["cifar10_test"]["mean"] for m in ("real", "random-labels", "random")}
    spread = max(c10.values()) - min(c10.values())
    std = min(fix[(m, 100)]["cifar10_test"]["std"] for m in c10)
    nocap = {(r["data"], r["steps"]): r["summary"]["cifar10_test"] for r in t["results"]
             if r["method"].startswith("no ceiling")}
    worse = all(nocap[k]["mean"] < fix[k]["cifar10_test"]["mean"] and nocap[k]["std"] > fix[k]["cifar10_test"]["std"]
                for k in nocap)
    lines += [f"**Label- and data-agnostic at full depth.** NASI-FIX at T selects cells with "
              f"{c10['real']:.2f} (real data), {c10['random-labels']:.2f} (random labels) and {c10['random']:.2f} "
              f"(no data at all) CIFAR-10 test accuracy: a spread of {spread:.2f} between modes, "
              + ("below one seed-std (" if spread < std else "above the smallest seed-std (") + f"{std:.2f}), "
              "the answer the paper's Table 2 gives on NB-1Shot1 and DARTS."
              + (" Without the ceiling (mu = 0) every mode and budget is worse and less stable." if worse else ""),
              "",
              f"**Against the cheap baselines.** The parameter-count baseline at the same budget reaches "
              f"{par['cifar10_test']['mean']:.2f} / {par['cifar100_test']['mean']:.2f} / "
              f"{par['imagenet16_test']['mean']:.2f}: above NASI on CIFAR-10 and CIFAR-100 by "
              f"{par['cifar10_test']['mean'] - c10['real']:.2f} and "
              f"{par['cifar100_test']['mean'] - fix[('real', 100)]['cifar100_test']['mean']:.2f} points, below it "
              f"on ImageNet16-120 by {fix[('real', 100)]['imagenet16_test']['mean'] - par['imagenet16_test']['mean']:.2f}. "
              "NASI is far above a uniform random cell in every mode.", "",
              "### 2b. Held-out check: the chosen presets on seeds used by nothing else", "",
              "Each data mode's FIX preset re-run as fresh searches (not replays) on seeds 2000-2009:", "",
              _read("nb201_heldout.md").split("\n", 2)[2].strip(), ""]
    diffs = []
    for r in h["results"]:
        a, b = r["summary"]["cifar10_test"], fix[(r["data"], 100)]["cifar10_test"]
        diffs.append(f"{r['data']} {a['mean'] - b['mean']:+.2f} (std {max(a['std'], b['std']):.2f})")
    lines += ["Held-out minus the table's T row, CIFAR-10 test: " + "; ".join(diffs) + ". Every difference is "
              "inside one seed-std: the table's numbers were not an artefact of its seeds."
              if all(abs(r["summary"]["cifar10_test"]["mean"] - fix[(r["data"], 100)]["cifar10_test"]["mean"])
                     <= max(r["summary"]["cifar10_test"]["std"], fix[(r["data"], 100)]["cifar10_test"]["std"])
                     for r in h["results"])
              else "Held-out minus the table's T row, CIFAR-10 test: " + "; ".join(diffs) + ".", ""]
    return lines


def _table_section(table, md_name):
    sn = table["search_network"]
    return [
        f"Search network: NB201 skeleton, C = {sn['channels']}, N = {sn['cells_per_stage']} cells per stage, "
        f"b = {sn['batch_size']}, tau = {sn['tau']:g}; {len(table['seeds'])} seeds (0-{len(table['seeds']) - 1}) "
        "per row; mean ± population std. T = 100 and 4T = 400 are read from one 400-step run per data mode "
        "(the first 100 steps of a run are the 100-step search). `search s / seed`: one seed searched "
        "alone for 400 steps by the table command (compile excluded, "
        f"{table['results'][0]['compile_s']:.0f} s once); T's time is its first quarter.",
        "",
        _read(md_name).split("\n", 2)[2].strip(),
        "",
    ]


PEERS = [  # published NB201 search results and rank correlations (issue 19's table, with its sources)
    ("NASI 4T (Shu et al., ICLR 2022)", "93.55 / 71.20 / 44.84", "-"),
    ("TE-NAS (Chen et al., ICLR 2021)", "93.9 / 71.24 / 42.38", "ρ ≈ 0.72 (as re-run in the VKDNW paper)"),
    ("ZiCo (Li et al., ICLR 2023)", "93.69 / 70.63 / 41.42 (as tabled in the APD paper)", "ρ ≈ 0.80"),
    ("MeCo (Jiang et al., NeurIPS 2023)", "-", "ρ ≈ 0.89 (its abstract, NATS-Bench TSS)"),
    ("AZ-NAS (Lee & Ham, CVPR 2024), 4-score aggregate", "93.49 / 70.33 / 44.34",
     "τ 0.741, ρ 0.913 (all cells, b = 64, its repository's NB201 notebook)"),
    ("VKDNW aggregate (CVPR 2025)", "-", "τ 0.750, ρ 0.919 (its repository's table; not re-checked here)"),
    ("APD (2025)", "93.76 / 72.22 / 45.03", "ρ 0.832"),
]


LEAGUE_SAMPLE = ("league_2000.md", "league_1000.md")


def league_section():
    lines = ["## 4. The training-free league", "",
             "Every proxy of `nasi_jax/scoring/proxies.py` in one harness (one compilation per proxy; "
             "`experiments/league.py`, docstring): the same cells, the same `theta_0`, at our protocol "
             "(16 real CIFAR-10 images), at the proxy's published one where it differs, and with Gaussian "
             "inputs (`agnostic`). Published values are quoted beside ours with their protocol; ours are "
             "on a uniform sample of cells, theirs mostly on all cells or NAS-Bench-Suite-Zero's 9 445.", "",
             _read(LEAGUE_SAMPLE[0] if os.path.exists(os.path.join(RUNS, LEAGUE_SAMPLE[0])) else LEAGUE_SAMPLE[1]).strip(), ""]
    if os.path.exists(os.path.join(RUNS, "league_all.md")):
        lines += ["### All 15 625 cells: the cheap proxies and the aggregates", "",
                  "The proxies that cost under about 50 ms a cell here, scored on every NB201 cell, beside the "
                  "registered aggregates (`nasi score --proxy ensemble`, components fixed on the 1 000-cell run's "
                  "validation accuracy; AZ-NAS's on 16 Gaussian inputs):", "",
                  _read("league_all.md").strip(), ""]
    lines += [
             "Published search results and correlations of the peers (as issue 19 tabled them; protocols "
             "differ, see each source):", "",
             "| method (source) | search result C10 / C100 / IN16 test | rank correlation |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in PEERS]
    return lines + [""]


def ensemble_search_section():
    lines = ["## 5. NASI proposes, an aggregate chooses (`--preset nb201-ensemble`)", "",
             "`experiments/ensemble_search.py` (docstring): NASI-FIX's `alpha*` proposes its K most probable "
             "cells and the aggregate of section 4 chooses among them; (T', K) chosen on validation accuracy "
             "of the tuning seeds within each budget, reported on seeds 0-9.", ""]
    if os.path.exists(os.path.join(RUNS, "ensemble_tune.md")):
        lines += [_read("ensemble_tune.md").split("\n", 2)[2].strip(), ""]
    lines += [_read("ensemble_table.md").split("\n", 2)[2].strip(), ""]
    t = json.loads(_read("ensemble_table.json"))
    goal = {"cifar10_test": 94.0, "cifar100_test": 72.5, "imagenet16_test": 46.0}
    for r in t["results"]:
        if r["budget"] == "4T" and "+ ensemble" in r["method"]:
            s = r["summary"]
            lines.append(f"* {r['data']}, at most NASI-4T's cost: " + " / ".join(
                f"{s[m]['mean']:.2f} ({s[m]['mean'] - g:+.2f} to the goal {g})" for m, g in goal.items())
                + f"; paper NASI-4T {PAPER_4T['cifar10_test'][0]} / {PAPER_4T['cifar100_test'][0]} / "
                f"{PAPER_4T['imagenet16_test'][0]}.")
    rows = {(r["data"], r["budget"], r["method"].split(" (")[0] + ("+" if "+ ensemble" in r["method"] else
            "P" if "params" in r["method"] else "")): r["summary"] for r in t["results"] if r["budget"] == "4T"}
    for m, name in (("cifar10_test", "CIFAR-10"), ("cifar100_test", "CIFAR-100"), ("imagenet16_test", "ImageNet16-120")):
        ens = [v[m]["mean"] for k, v in rows.items() if k[2].endswith("+")]
        alone = [v[m]["mean"] for k, v in rows.items() if k[2] == "NASI-FIX"]
        par = [v[m]["mean"] for k, v in rows.items() if k[2].endswith("P")]
        lines.append(f"* {name} at 4T, mean over the data modes: aggregate {np.mean(ens):.2f}, NASI-FIX alone "
                     f"{np.mean(alone):.2f}, largest candidate by parameters {np.mean(par):.2f}.")
    reached = all(r["summary"][m]["mean"] >= g for r in t["results"] if r["budget"] == "4T"
                  and "+ ensemble" in r["method"] for m, g in goal.items())
    return lines + ["", f"Goal 94.0 / 72.5 / 46.0 at NASI-4T's cost: {'reached' if reached else 'not reached'} "
                    "(the aggregate was chosen on CIFAR-10 validation accuracy).", ""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p, data_dir=False)
    p.add_argument("--output", default="docs/results.md")
    a = p.parse_args(argv)
    benchmark = a.benchmark
    tune = json.loads(_read("nb201_tune.json"))
    table = json.loads(_read("nb201_search_table.json"))
    have = lambda n: os.path.exists(os.path.join(RUNS, n))
    tune5 = json.loads(_read("nb201_tune_n5.json")) if have("nb201_tune_n5.json") else None
    table5 = json.loads(_read("nb201_search_table_n5.json")) if have("nb201_search_table_n5.json") else None
    prox = json.loads(_read("proxy_correlation.json")) if have("proxy_correlation.json") else None
    fig = os.path.join(RUNS, "nb201_search_table.png")
    modes = json.loads(_read("nb201_modes_table.json")) if have("nb201_modes_table.json") else table5
    search_figure([t for t in (modes, table) if t], benchmark, fig)
    machine = (f"{table['versions'].get('cpu_count')}-core CPU ({table['versions'].get('backend')}), "
               f"jax {table['versions'].get('jax')}")
    page = [
        "# Results: NASI on NAS-Bench-201, and the training-free peers in the same harness",
        "",
        f"Every table below is written by a committed command, named above it; all ran on this project's "
        f"CI-like machine: {machine}. Re-running a command with the same seeds and versions gives the same "
        f"numbers (the search and scores are deterministic; raw runs are cached under `runs/`). This page "
        f"is assembled by `python experiments/results_page.py`.",
        "",
    ]
    if have("nb201_default_random_s3000.json"):
        page += front_door()
    page += [
        "## 1. Hyper-parameters, chosen on validation accuracy only",
        "",
        "Procedure (`experiments/nb201_search.py`, docstring): " + tune["procedure"].replace("\n", " "),
        "",
        _read("nb201_tune.md").split("\n", 2)[2].strip(),
        "",
    ]
    if tune5:
        page += [
            f"The same procedure with the full-depth search network (N = {tune5['search_network']['cells_per_stage']}, "
            "the NB201 evaluation network's depth) at the (b, tau) chosen above, one run (it costs about 8x more "
            "per step on this CPU):",
            "",
            _read("nb201_tune_n5.md").split("\n", 2)[2].strip(),
            "",
            f"On validation accuracy N = {tune5['search_network']['cells_per_stage']} is the better search network "
            f"(FIX {tune5['choice']['fix']['criterion_cifar10_valid']:.2f} vs {tune['choice']['fix']['criterion_cifar10_valid']:.2f}, "
            f"ADA {tune5['choice']['ada']['criterion_cifar10_valid']:.2f} vs {tune['choice']['ada']['criterion_cifar10_valid']:.2f})"
            if tune5['choice']['fix']['criterion_cifar10_valid'] > tune['choice']['fix']['criterion_cifar10_valid'] else
            "On validation accuracy the one-cell search network is not worse.",
            "",
        ]
    if have("nb201_modes_tune.json"):
        page += modes_tune_section()
    page += ["## 2. Search results (NB201, searched on CIFAR-10)", ""]
    gaps = []
    if have("nb201_modes_table.json"):
        page += modes_table_section()
        gaps += _gaps(json.loads(_read("nb201_modes_table.json")), "N = 5")
    elif table5:
        page += [f"### 2a. Full-depth search network (N = {table5['search_network']['cells_per_stage']}), "
                 f"data modes: {', '.join(sorted({r['data'] for r in table5['results'] if r['data'] != '-'}))}", "",
                 *_table_section(table5, "nb201_search_table_n5.md")]
        gaps += _gaps(table5, f"N = {table5['search_network']['cells_per_stage']}")
    page += [f"### 2c. One-cell-per-stage search network (N = {table['search_network']['cells_per_stage']}), "
             "all three data modes (an earlier, cheaper search network)", "",
             *_table_section(table, "nb201_search_table.md"),
             f"![selected cells]({os.path.relpath(fig, 'docs')})", ""]
    gaps += _gaps(table, f"N = {table['search_network']['cells_per_stage']}")
    page += ["**Against the paper** (ours − paper, mean test accuracy):", "", *gaps, "",
             *tried(tune, table), ""]
    if prox:
        page += [
            "## 3. Training-free scores on the same cells",
            "",
            _read("proxy_correlation.md").strip(),
            "",
            "**Reading the table.** Where we depart from the published ρ, the protocol check above "
            "separates batch size from bugs: NASWOT and jacob_cov move towards the published values with "
            "b = 64 on the same cells, and our scores agree cell by cell with NAS-Bench-Suite-Zero's "
            "(column 'ρ vs published scores'; grasp, a Hessian-vector product on one small batch, agrees "
            "least). `nasi_objective` uses mu = 2 with the ceiling tuned for the N = 5 search at b = 8; the "
            "penalty sends every cell above the ceiling (R = 2 nu - s there), the highest-trace ones lowest, "
            "below the rest, which removes the correlation: the ceiling is a tool of the search, not a "
            "ranking score. `ntk_trace` (about 8 s a cell) and grasp were scored on the first 100 and 200 cells of "
            "the sample (a uniform sample itself); NASI's estimator on those same cells is given beside them. "
            "Best-of-N: on this CPU most proxies score the whole 1 000-cell sample within one NASI search's "
            "time ('capped'), so their row is the sample's argmax; on an accelerator both budgets shrink.",
            "",
            f"![scatter]({os.path.relpath(prox['scatter_png'], 'docs')})",
            "",
            f"![label and data agnosticism]({os.path.relpath(prox['scatter_png'].replace('_scatter.png', '_agnostic.png'), 'docs')})",
            "",
        ]
    if have("league_2000.json") or have("league_1000.json"):
        page += league_section()
    if have("ensemble_table.json"):
        page += ensemble_search_section()
    text = "\n".join(page) + "\n"
    records.write_text_atomic(a.output, text)
    print(text)


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    main()
