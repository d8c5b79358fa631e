"""NASI-FIX and NASI-ADA on the DARTS space with the paper's settings, from one resumable run.

    python experiments/darts_search.py                # -> docs/runs/darts_search_data_agnostic.json
    python experiments/darts_search.py --data real    # -> docs/runs/darts_search_real.json

* **Search** (PAPER.md §4, §8): the DARTS supernet (8 cells, C=16, reductions at 1/3 and
  2/3, PyTorch init, BatchNorm with batch statistics), T=100 steps, b=64, the data-agnostic
  default (Gaussian inputs, random labels), seed 0.
* **One run, both variants.** Every ``G_t`` is taken at ``alpha_0`` and depends on the
  penalty only through the factor ``1 - mu [s(A_t) > nu_t]``, so the run records
  ``s(A_t)`` and ``grad_alpha s(A_t)`` (``mu = 0``) and :func:`nasi_jax.search.replay`
  re-weights them into NASI-FIX (``mu=2``, ``nu=100``) and NASI-ADA (``mu=2``, ``nu`` from
  500, adaptive). A replay equals a fresh ``nasi search --space darts --mu 2 ...`` with those
  settings (``tests/test_search.py::test_darts_replay_equals_fresh_search``).
* **Resumable**: a step's ``s`` and ``G`` depend only on the seed's ``theta_0`` and on ``t``
  (the step key is ``fold_in(loop_key, t)``), so the history is saved after every step in
  ``--history`` (npz, written atomically) and a rerun continues where it stopped.
* **Data**: ``--data random`` (default, data-agnostic) or ``--data real`` (CIFAR-10 images of
  NB201's 25 000-image train half with their labels, as the NB201 search's ``real`` mode;
  ``--data-dir`` or ``$NASI_DATA_DIR``) or ``random-labels``.
* **Summary**: ``--summarize A.json B.json ...`` prints, per result file (per data mode), the
  quantiles of ``s(A_t)``, the fraction of steps above ``nu = 100`` and each variant's
  parameters and active-penalty fraction, as a Markdown table (nothing is run).
* **Ceiling rules**: besides the paper's FIX and ADA, the NB201 presets' rule read off this
  run's own ``s`` (``mu = 1``; FIX: ``nu`` = its 60 % quantile; ADA: the initial ``nu`` = its
  65 % quantile), genotypes in ``<output stem>_fix_q60.txt`` / ``_ada_q65.txt``; the run's
  ``s`` and ``G`` in ``<output stem>_history.npz`` for replaying any other rule.
* **Output**: the genotypes (DARTS text form, also written to ``<output stem>_{fix,ada}.txt``
  for ``nasi train --genotype FILE``), their parameter counts at C=36 / 20 cells without the
  auxiliary head, the compile and search wall time and the per-step time. The default
  ``--output`` is named after the data mode (:data:`OUTPUT_NAMES`), so that no run overwrites
  another's genotypes; ``docs/runs/darts_search_{fix,ada}.txt`` are not written here: they
  hold the genotypes of the ceiling rule chosen by the short-training comparison
  (``experiments/darts_short_training.py table --chosen-genotypes docs/runs/darts_search``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from _common import REPO, config_record, data_root, run_record, write_result  # noqa: E402  (experiments/ is on sys.path)

from nasi_jax import presets, records, search
from nasi_jax.core import objective
from nasi_jax.data import DATA_MODES, load_data_for_mode
from nasi_jax.spaces import darts

VARIANTS = {name: {k: presets.PRESETS[p].values[k] for k in ("mu", "nu", "nu_mode")}
            for name, p in (("NASI-FIX", "paper"), ("NASI-ADA", "paper-ada"))}
# the default result file's name per data mode (docs/runs/darts_search_<name>.json); the
# chosen rule's genotypes are docs/runs/darts_search_{fix,ada}.txt (experiments/darts_short_training.py)
OUTPUT_NAMES = {"random": "data_agnostic", "random-labels": "random_labels", "real": "real"}
# the stem of the chosen rule's genotype files (<stem>_fix.txt, _ada.txt): never this script's
CHOSEN_STEM = "docs/runs/darts_search"


def default_paths(data: str) -> tuple[str, str]:
    """The default ``--output`` and ``--history`` for the data mode ``data``.

    Example:
        >>> default_paths("random")
        ('docs/runs/darts_search_data_agnostic.json', 'runs/darts_search/data_agnostic.npz')
        >>> default_paths("real")[0]
        'docs/runs/darts_search_real.json'
    """
    return f"docs/runs/darts_search_{OUTPUT_NAMES[data]}.json", f"runs/darts_search/{OUTPUT_NAMES[data]}.npz"


# Not a variant of the paper: the same run read out without the ceiling (mu = 0, the trace
# alone), to show what the penalty changes.
REFERENCE = {"trace-only (mu=0)": dict(mu=0.0, nu=100.0, nu_mode="fixed")}
# The ceiling rule of the NB201 presets (nasi_jax.presets, docs/presets.md), read off this run's
# own s: mu = 1; NASI-FIX's nu the 60 % quantile of s, NASI-ADA's initial nu the 65 % one.
QUANTILE_RULES = {"NASI-FIX, q60 rule": ("fix_q60", 0.60, "fixed"), "NASI-ADA, q65 rule": ("ada_q65", 0.65, "adaptive")}


def quantile_variants(s) -> dict:
    """The NB201 presets' ceiling rule applied to this run: ``name -> settings`` (mu, nu, rule)."""
    return {name: dict(mu=1.0, nu=round(float(np.quantile(np.asarray(s, np.float64), q)), 4), nu_mode=mode)
            for name, (_, q, mode) in QUANTILE_RULES.items()}


def penalty_active_frac(s, nu: float, nu_mode: str) -> float:
    """Fraction of the steps with ``s(A_t) > nu_t`` (the hinge of eq. 13 active)."""
    s = np.asarray(s, np.float32)
    return float(np.mean(s > np.asarray(objective.ceiling_path(s, nu, nu_mode))))


def history_tag(cfg: search.SearchConfig, execution: search.Execution) -> str:
    """What a history file records of its run: the config and its (unresolved) execution in
    the layout of the one config they were before the split, so older files still resume."""
    return "SearchConfig(" + ", ".join(f"{k}={v!r}" for k, v in config_record(cfg, execution).items()) + ")"


def s_stats(s, nu: float = 100.0) -> dict:
    """Quantiles of ``s(A_t)`` over the steps and the fraction above a fixed ``nu``."""
    s = np.asarray(s, np.float64)
    ps = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    return {"mean": float(s.mean()), **{f"q{round(p * 100)}": float(v) for p, v in zip(ps, np.quantile(s, ps))},
            f"frac_above_{nu:g}": float(np.mean(s > nu))}


def run_history(cfg: search.SearchConfig, execution: search.Execution, seed: int, path: str,
                images=None, labels=None) -> dict:
    """``s [T]``, ``G [T, 2, 14, 8]`` and timings of a ``mu = 0`` search, resumed from ``path``."""
    done = {"s": [], "G": [], "grad_norm": [], "step_s": []}
    meta = np.asarray([history_tag(cfg, execution), str(seed)])
    if os.path.exists(path):
        z = np.load(path)
        if list(z["meta"]) != list(meta):
            raise SystemExit(f"{path} holds another run ({list(z['meta'])}); remove it or pick --history")
        done = {k: list(z[k]) for k in done}
        print(f"[darts] resuming at step {len(done['s'])}/{cfg.steps} from {path}", file=sys.stderr)
    t0 = time.perf_counter()
    init, step, _ = search.compiled_host_step(cfg, execution.resolve(cfg), 1, images, labels)
    compile_s = time.perf_counter() - t0
    state = init(jax.random.PRNGKey(seed))
    knobs = search.algorithm.knobs_of(cfg)
    for t in range(len(done["s"]), cfg.steps):
        t1 = time.perf_counter()
        _, m = step(state, jnp.asarray(t, jnp.int32), images, labels, knobs)  # state only carries eq18/nu
        m = jax.tree_util.tree_map(np.asarray, m)
        if not (np.isfinite(m.s) and np.isfinite(m.grad_norm)):
            raise search.NonFiniteScoreError(f"non-finite s or ||G|| at step {t}")
        done["s"].append(m.s); done["G"].append(m.G); done["grad_norm"].append(m.grad_norm)
        done["step_s"].append(time.perf_counter() - t1)
        records.save_npz_atomic(path, meta=meta, **{k: np.asarray(v) for k, v in done.items()})
        rate = np.mean(done["step_s"][-5:])
        print(f"\r[darts] step {t + 1}/{cfg.steps}: s={float(m.s):.3g}, {rate:.1f} s/step, "
              f"ETA {rate * (cfg.steps - t - 1) / 60:.0f} min   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {k: np.asarray(v) for k, v in done.items()} | {"compile_s": compile_s}


def summarize(paths) -> str:
    """A Markdown table of ``s(A_t)`` and the variants of each result file."""
    rows = ["| data | steps | s: median | quartiles | min-max | s > 100 | FIX: penalty active, params | "
            "ADA: penalty active, params | FIX, q60 rule: nu, params | ADA, q65 rule: nu0, params "
            "| trace only: params |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        st = s_stats(r["s"]["history"])
        v = r["variants"]
        cell = lambda k: f"{v[k]['penalty_active_frac']:.0%}, {v[k]['params_eval_network'] / 1e6:.2f} M"  # noqa: E731
        rule = lambda k: (f"{v[k]['settings']['nu']:.4g}, {v[k]['params_eval_network'] / 1e6:.2f} M"  # noqa: E731
                          if k in v else "-")
        rows.append(f"| {r['config']['data']} | {len(r['s']['history'])} | {st['q50']:.4g} | {st['q25']:.4g}-{st['q75']:.4g} "
                    f"| {st['q0']:.4g}-{st['q100']:.4g} | {st['frac_above_100']:.0%} | {cell('NASI-FIX')} "
                    f"| {cell('NASI-ADA')} | {rule('NASI-FIX, q60 rule')} | {rule('NASI-ADA, q65 rule')} "
                    f"| {v['trace-only (mu=0)']['params_eval_network'] / 1e6:.2f} M |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--summarize", nargs="+", metavar="RESULT_JSON",
                   help="print the s statistics and variants of these result files and exit")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=2, help="normal cells per stage (3N+2 cells; 2 -> 8)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conv-impl", default="xla-taps", choices=("xla", "xla-dense", "xla-taps", "xla-shift"),
                   help="xla-taps (default): depthwise convolutions as shifted taps with hand-written "
                        "derivatives (nasi_jax.spaces.darts.taps); xla-dense: as dense ones with a diagonal "
                        "kernel, the earlier default (docs/darts.md compares them)")
    p.add_argument("--data", default="random", choices=DATA_MODES,
                   help="random (default: Gaussian inputs, random labels), random-labels or real "
                        "(CIFAR-10 images of NB201's 25 000-image train half; needs --data-dir)")
    p.add_argument("--data-dir", default=data_root(),
                   help="folder with cifar10_jpeg/ and nb201/cifar-split.txt, for --data real or random-labels "
                        "(default: $NASI_DATA_DIR, else ../shared/data)")
    p.add_argument("--output", default=None,
                   help="result JSON; the genotypes and the history go beside it (default: "
                        "docs/runs/darts_search_<data>.json, <data> one of "
                        + ", ".join(OUTPUT_NAMES.values()) + ")")
    p.add_argument("--history", default=None,
                   help="the resumable per-step history (default: runs/darts_search/<data>.npz)")
    p.add_argument("--compilation-cache", metavar="DIR",
                   help="jax's persistent compilation cache in DIR (an empty one: a cold run; "
                        "nasi_jax.compilation_cache); default: none")
    args = p.parse_args(argv)
    if args.compilation_cache:
        from nasi_jax import compilation_cache
        compilation_cache.enable(args.compilation_cache)
    if args.summarize:
        print(summarize(args.summarize), end="")
        return 0
    default_output, default_history = default_paths(args.data)
    args.output, args.history = args.output or default_output, args.history or default_history
    if not args.output.endswith(".json"):
        p.error("--output must end in .json")
    if os.path.realpath(args.output[:-len(".json")]) == os.path.realpath(os.path.join(REPO, CHOSEN_STEM)):
        p.error(f"--output {args.output} would overwrite the chosen rule's genotypes ({CHOSEN_STEM}_fix.txt, "
                "_ada.txt, written by experiments/darts_short_training.py); pick another name")
    cfg = search.SearchConfig(space="darts", preset="paper", steps=args.steps, batch_size=args.batch_size,
                              mu=0.0, channels=args.channels, cells_per_stage=args.cells,
                              image_size=args.image_size, data=args.data).validate()
    images, labels = load_data_for_mode(args.data, args.data_dir)
    execution = search.Execution(loop="host", seed_batching="map", conv_impl=args.conv_impl)
    t0 = time.perf_counter()
    h = run_history(cfg, execution, args.seed, args.history, images, labels)
    wall = time.perf_counter() - t0
    res = search.SearchResult(cfg, [args.seed], np.zeros((1,) + cfg.alpha_shape), np.zeros((1, 2, 14), int),
                              [""], {"s": h["s"][None], "G": h["G"][None]}, h["compile_s"], wall,
                              execution.resolve(cfg))
    out = {}
    stem = args.output[:-len(".json")]
    tags = {name: name.split("-")[1].lower() for name in VARIANTS} | {n: t for n, (t, _, _) in QUANTILE_RULES.items()}
    for name, kw in (VARIANTS | quantile_variants(h["s"]) | REFERENCE).items():
        alpha, ops = search.replay(res, **kw)
        g = darts.ops_to_genotype(ops[0])
        text = darts.genotype_to_str(g)
        out[name] = {"settings": kw, "genotype": text,
                     "params_eval_network": darts.count_params(g, channels=36, layers=20),
                     "params_eval_network_with_aux": darts.count_params(g, channels=36, layers=20,
                                                                       auxiliary=True),
                     "penalty_active_frac": penalty_active_frac(h["s"], kw["nu"], kw["nu_mode"]) if kw["mu"] else 0.0,
                     "alpha_star": alpha[0].round(6).tolist()}
        path = None
        if name in tags:
            path = f"{stem}_{tags[name]}.txt"
            records.write_text_atomic(path, text + "\n")
        print(f"{name}: {text}\n  params (C=36, 20 cells, no aux): "
              f"{out[name]['params_eval_network'] / 1e6:.3f} M, penalty active in "
              f"{out[name]['penalty_active_frac']:.0%} of the steps" + (f"  -> {path}" if path else ""))
    steps_timed = h["step_s"]
    result = run_record(
        __file__, argv,
        config=config_record(cfg, execution.resolve(cfg)), seed=args.seed,
        backend=jax.default_backend(), cpu_count=os.cpu_count(),
        xla_flags=os.environ.get("XLA_FLAGS"),
        variants=out,
        s={**s_stats(h["s"]), "min": float(h["s"].min()), "max": float(h["s"].max()),
           "history": h["s"].tolist()},
        compile_time_s_this_process=h["compile_s"],
        per_step_s_median=float(np.median(steps_timed)),
        search_time_s=float(np.sum(steps_timed)),
        note="search_time_s sums the per-step times of all steps (also across resumed processes); "
             "both variants come from this one run via nasi_jax.search.replay.",
    )
    write_result(args.output, result)
    # the run's s and G, so that any other ceiling rule can be replayed without searching again
    records.save_npz_atomic(f"{stem}_history.npz", s=h["s"], G=h["G"], seed=np.int64(args.seed),
                            config=np.asarray(json.dumps(result["config"])))
    print(f"search {result['search_time_s']:.0f} s ({result['per_step_s_median']:.1f} s/step), "
          f"compile {h['compile_s']:.0f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
