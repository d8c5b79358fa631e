"""DARTS genotypes compared by a short training anyone can re-run (issue 18, item 3).

    python experiments/darts_short_training.py nb201-check   # does the short recipe rank cells?
    python experiments/darts_short_training.py train         # every candidate x seed (resumes)
    python experiments/darts_short_training.py train --jobs 2   # two workers, the cores shared out
    python experiments/darts_short_training.py table         # rank on validation accuracy (and runs left)
    python experiments/darts_short_training.py table --chosen-genotypes docs/runs/darts_search   # the chosen rule's
    python experiments/darts_short_training.py table --read-test   # only after the choice
    python experiments/darts_short_training.py merge --part A.json --part B.json   # runs made elsewhere

**The short recipe** (DARTS' recipe, :meth:`nasi_jax.train.TrainConfig.recipe`, at a reduced
size and budget): NetworkCIFAR at C = 16 and 8 cells (auxiliary head, drop-path, cutout as
the recipe), 10 epochs, batch 96; trained on the first 10 000 images of NB201's CIFAR-10
``train`` half and validated on the first 10 000 of its ``valid`` half (CIFAR-10 training
images never trained on: ``train_split='train'``, ``eval_split='valid'``). The CIFAR-10 test
set is read only by ``table --read-test``, after the choice.

**Candidates** (``--candidate NAME=SOURCE``, repeatable; default :data:`CANDIDATES`): a
genotype file (``docs/runs/darts_search_real_fix.txt``), a variant of a search result
(``docs/runs/darts_search_real.json#NASI-FIX``), a published genotype (``DARTS_V2``), or
``random:K`` (:func:`nasi_jax.spaces.darts.random_genotype`, DARTS' random baseline).
A candidate whose file is missing is named and skipped.

**The choice** (``table``): the candidates ranked on validation accuracy, then the ceiling
rules (:data:`RULES`) by their NASI-FIX and NASI-ADA cells' mean validation accuracy, the
rule chosen named once every rule has a run at every seed (:func:`rule_table`).

**The sanity check first** (``nb201-check``): the same recipe on a handful of NB201 cells
(NB201Network at C = 16, ``--nb201-layers`` cells per stage) chosen at evenly spaced
quantiles of NB201's CIFAR-10 validation accuracy (200 epochs), their short-run validation
accuracy against the table's, and against NB201's own 12-epoch validation accuracy (Kendall's
tau and Spearman's rho). If the short recipe cannot order
NB201 cells whose accuracies differ by points, it cannot rank DARTS genotypes either.

``train --jobs N`` shares the runs among N worker processes, the cores dealt out among them
(two single-core workers finish about 1.7x as many runs an hour as one two-core process on
this 2-core machine; a run's floats depend on its core count, recorded with it: the count of
the process that finished it, so resume a run on as many cores as it started on).

Every training is a ``nasi train`` run in its own folder under ``--workdir`` (checkpoints
after every epoch: a stopped command resumes where it stopped); ``train`` trains the rules'
candidates first, seed by seed (every NASI-FIX and NASI-ADA cell of :data:`RULES` at seed 0,
then at seed 1: the choice needs them all), then the others, seed by seed, and writes the results file after every run
(atomically), merged into what it already holds: a run recorded there is not retrained, so
the committed file carries a comparison across sessions whose workdirs are gone. Trainings
spread over processes or machines (several processes sharing one GPU, say: ``train
--candidate ... --seeds ... --output part_i.json`` each) come together with ``merge``. Each run's
test accuracy is taken at its end and stored unread (``table --read-test`` shows it). CPU cost: some
20-25 minutes a DARTS training here (2 cores; docs/darts.md), so the default set (12
candidates x 2 seeds) is a background job of hours; a GPU makes it cheap. Relative paths
(candidates' files, ``--workdir``, ``--output``, ``--part``, ``--chosen-genotypes``) are taken from the
repository's root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys

import numpy as np

from _common import REPO, add_data_args, run_record, save_figure, write_result  # noqa: E402  (experiments/ is on sys.path)
from _workers import claim_file, locked, pin_cores, spawn_workers

from nasi_jax import records, train
from nasi_jax.cli._common import positive_int
from nasi_jax.train.recipes import config_dict
from nasi_jax.data import load_cifar10_split
from nasi_jax.spaces import darts

TRAIN_IMAGES, VALID_IMAGES = 10_000, 10_000
SIZE = {"channels": 16, "layers": 8}  # the short network (DARTS: NetworkCIFAR, C and cells)
RECIPE_OVERRIDES: dict = {}  # other TrainConfig fields (none: DARTS' recipe; tests shrink the batch)
CANDIDATES = (
    ("NASI-FIX, data-agnostic (paper nu)", "docs/runs/darts_search_data_agnostic_fix.txt"),
    ("NASI-ADA, data-agnostic (paper nu)", "docs/runs/darts_search_data_agnostic_ada.txt"),
    ("trace only, data-agnostic", "docs/runs/darts_search_data_agnostic.json#trace-only (mu=0)"),
    ("NASI-FIX, CIFAR-10 (paper nu)", "docs/runs/darts_search_real_fix.txt"),
    ("NASI-ADA, CIFAR-10 (paper nu)", "docs/runs/darts_search_real_ada.txt"),
    ("NASI-FIX, CIFAR-10 (q60 rule)", "docs/runs/darts_search_real_fix_q60.txt"),
    ("NASI-ADA, CIFAR-10 (q65 rule)", "docs/runs/darts_search_real_ada_q65.txt"),
    ("trace only, CIFAR-10", "docs/runs/darts_search_real.json#trace-only (mu=0)"),
    ("DARTS_V2", "DARTS_V2"),
    ("random 0", "random:0"), ("random 1", "random:1"), ("random 2", "random:2"),
)

# The ceiling rules compared, each by its NASI-FIX and NASI-ADA candidates (names of CANDIDATES).
# The rule chosen (fixed after one run, NASI-FIX data-agnostic seed 0, and before any other)
# is the one whose two cells have the highest mean validation accuracy over all their runs;
# the NB201 presets' quantile rule uses each variant's own quantile (FIX 60 %, ADA 65 %).
RULES = (
    ("paper nu, data-agnostic", "NASI-FIX, data-agnostic (paper nu)", "NASI-ADA, data-agnostic (paper nu)"),
    ("paper nu, CIFAR-10", "NASI-FIX, CIFAR-10 (paper nu)", "NASI-ADA, CIFAR-10 (paper nu)"),
    ("quantile rule, CIFAR-10", "NASI-FIX, CIFAR-10 (q60 rule)", "NASI-ADA, CIFAR-10 (q65 rule)"),
)


def rule_table(results: dict, seeds) -> tuple[str, str | None]:
    """The rules of :data:`RULES` whose candidates are in ``results`` (a results file's
    ``results``): per rule the FIX and ADA cells' mean validation accuracy and the mean over
    both cells' runs, as a Markdown table, and the rule chosen: the highest mean over both,
    once every rule's two cells have a run at every seed of ``seeds`` (None until then).

    Example:
        >>> runs = lambda *v: {"runs": [{"seed": i, "valid_acc": a} for i, a in enumerate(v)]}
        >>> res = {RULES[0][1]: runs(50, 52), RULES[0][2]: runs(54, 56), RULES[1][1]: runs(60, 61)}
        >>> text, chosen = rule_table(res, [0, 1])
        >>> chosen is None, text.splitlines()[2]
        (True, '| paper nu, data-agnostic | 51.00 | 55.00 | 53.00 | 4 of 4 |')
    """
    lines = ["| rule | NASI-FIX valid % | NASI-ADA valid % | both cells, mean % | runs |", "|---|---|---|---|---|"]
    means, complete = {}, True
    for rule, fix, ada in RULES:
        if fix not in results and ada not in results:
            continue
        runs = [results.get(c, {}).get("runs", []) for c in (fix, ada)]
        cells = [[run["valid_acc"] for run in rs] for rs in runs]
        done = sum(len({run["seed"] for run in rs if run["seed"] in seeds}) for rs in runs)
        complete &= done == 2 * len(seeds)
        both = [a for cell in cells for a in cell]
        means[rule] = float(np.mean(both))
        lines.append(f"| {rule} | " + " | ".join(f"{np.mean(c):.2f}" if c else "-" for c in cells)
                     + f" | {means[rule]:.2f} | {done} of {2 * len(seeds)} |")
    if len(lines) == 2:
        return "", None
    chosen = max(means, key=means.get) if complete and len(means) == len(RULES) else None
    return "\n".join(lines) + "\n", chosen


def short_recipe(space: str = "darts", layers: int | None = None, epochs: int = 10) -> train.TrainConfig:
    """DARTS' recipe at C = ``SIZE['channels']`` (16) with ``layers`` cells (the space's meaning:
    DARTS cells in all, default ``SIZE['layers']`` = 8; NB201 cells per stage), ``epochs``
    epochs, 10 000 images of NB201's train half, validated on 10 000 of its valid half."""
    return train.TrainConfig.recipe("darts", space=space, channels=SIZE["channels"],
                                    layers=SIZE["layers"] if layers is None else layers, epochs=epochs, train_split="train", train_size=TRAIN_IMAGES,
                                    eval_split="valid", test_size=VALID_IMAGES, **RECIPE_OVERRIDES)


def genotype_of(source: str) -> darts.Genotype:
    """A candidate's genotype from ``random:K``, a published name, ``FILE.json#VARIANT`` or a file."""
    if source.startswith("random:"):
        k = source.split(":", 1)[1]
        if not k.isdigit():
            raise SystemExit(f"candidate source {source!r}: random:K needs a non-negative integer K")
        return darts.random_genotype(int(k))
    if source in darts.PUBLISHED:
        return darts.parse_genotype(source)
    path, _, variant = source.partition("#")
    path = os.path.join(REPO, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist (it is written by experiments/darts_search.py)")
    if variant:
        with open(path) as f:
            variants = json.load(f)["variants"]
        if variant not in variants:
            raise SystemExit(f"{path} has no variant {variant!r}; it has {sorted(variants)}")
        return darts.parse_genotype(variants[variant]["genotype"])
    with open(path) as f:
        return darts.parse_genotype(f.read().strip())


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def run_one(cfg, arch, workdir: str, seed: int, data, progress: bool) -> tuple[dict, "train.TrainResult"]:
    """Train (or resume, or just reload) one candidate at one seed: its validation curve, and
    :func:`nasi_jax.train.train`'s result."""
    res = train.train(cfg, arch, workdir, seed=seed, data=data, progress=progress,
                      log=lambda s: print(f"  {s}", file=sys.stderr))
    curve = [float(r["valid_acc"]) for r in res.history]
    return {"seed": seed, "workdir": workdir, "valid_acc_per_epoch": curve, "valid_acc": curve[-1],
            "wall_s": float(res.history[-1]["wall_s"]),
            # how the convolutions ran, and on how many cores the process that finished it ran
            # (the same function, rounded differently)
            "conv_impl": (res.result or {}).get("conv_impl"),
            "cores": (res.result or {}).get("versions", {}).get("cpu_cores", records.usable_cores())}, res


def _summary(runs: list[dict]) -> dict:
    v = np.asarray([r["valid_acc"] for r in runs])
    return {"valid_acc_mean": float(v.mean()), "valid_acc_sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def candidates_from(args) -> list[tuple[str, str]]:
    if not args.candidate:
        return list(CANDIDATES)
    out = []
    for c in args.candidate:
        name, sep, source = c.partition("=")
        if not sep or not name or not source:
            raise SystemExit(f"--candidate {c!r}: expected NAME=SOURCE")
        out.append((name, source))
    return out


def training_order(cands: list, seeds) -> list:
    """``(seed, candidate)`` in training order: the candidates of :data:`RULES` first (the choice
    waits on all of them), seed by seed, then the others, seed by seed; ``cands``' own order
    within each group. ``cands``: tuples whose first item is the candidate's name.

    Example:
        >>> [(s, c[0]) for s, c in training_order([("DARTS_V2",), ("NASI-FIX, CIFAR-10 (paper nu)",)], [0, 1])]
        [(0, 'NASI-FIX, CIFAR-10 (paper nu)'), (1, 'NASI-FIX, CIFAR-10 (paper nu)'), (0, 'DARTS_V2'), (1, 'DARTS_V2')]
    """
    in_rules = {name for rule in RULES for name in rule[1:]}
    groups = ([c for c in cands if c[0] in in_rules], [c for c in cands if c[0] not in in_rules])
    return [(seed, c) for group in groups for seed in seeds for c in group]


def _candidates(args, out: dict) -> list:
    """``(name, source, genotype, text)`` of every candidate whose source exists; a candidate
    trained under another genotype in ``out`` stops the command before anything is trained."""
    cands = []
    for name, source in candidates_from(args):
        try:
            g = genotype_of(source)
        except FileNotFoundError as e:
            print(f"[short] {name}: skipped: {e}", file=sys.stderr)
            continue
        cands.append((name, source, g, darts.genotype_to_str(g)))
    for name, _, _, text in cands:  # before any training: a changed genotype stops the command now
        if name in out and out[name]["genotype"] != text:
            raise SystemExit(f"{args.output}: {name!r} was trained as {out[name]['genotype']}, now {text}; "
                             "pick another --output or name")
    return cands


def _done(out: dict, name: str, seed: int) -> bool:
    return any(r["seed"] == seed for r in out.get(name, {}).get("runs", []))


def _results_lock(output: str) -> str:
    """The lock file of a results file: beside it, hidden (``.NAME.lock``; git ignores it)."""
    return os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.lock")


def cmd_train(args) -> dict:
    """Every candidate at every seed, in :func:`training_order` (the rules' candidates first,
    seed by seed, then the others): each finished run is
    written at once, and a run already in ``--output`` (same recipe, same genotype) is kept
    and not retrained, even when its workdir is gone (this machine keeps no untracked folder
    from one session to the next; the committed results file carries the finished runs).

    With ``--claim`` a run is trained only if this process can claim it (:func:`_claim`, a
    lock file beside its workdir, :func:`_workers.claim_file`) and it is not yet in ``--output``:
    several ``train`` processes sharing one ``--workdir`` and ``--output`` share out the runs
    (``--jobs N`` starts them, :func:`_workers.spawn_workers`). Each run is merged into ``--output`` under a lock (:func:`_results_lock`),
    re-read just before; the file's ``seeds`` are those of all its runs and of every
    ``train`` that wrote it."""
    cfg = short_recipe(epochs=args.epochs)
    out = _existing(args.output, cfg)
    cands = _candidates(args, out)
    if args.jobs > 1:
        codes = spawn_workers(__file__, [*(sys.argv[1:] if args.argv is None else args.argv), "--jobs", "1", "--claim"],
                              args.jobs)
        if any(codes):
            raise SystemExit(f"train --jobs {args.jobs}: worker exit codes {codes}; "
                             f"the runs finished are in {args.output}")
        return _existing(args.output, cfg)
    data = test_set = None  # read when there is a run to train
    for seed, (name, source, g, text) in training_order(cands, args.seeds):
        if _done(out, name, seed):
            continue
        workdir = os.path.join(args.workdir, slug(name), f"seed{seed}")
        with contextlib.ExitStack() as held:
            if args.claim:
                claim = claim_file(workdir + ".claim")
                if claim is None:
                    continue  # another process trains it
                held.callback(claim.close)
                if _done(_existing(args.output, cfg), name, seed):
                    continue  # another process has trained it
            cores = records.usable_cores()
            print(f"[short] {name}, seed {seed} (pid {os.getpid()}, {cores} core(s))", file=sys.stderr, flush=True)
            if data is None:
                data = train.load_data(cfg, args.data_dir)
                test_set = load_cifar10_split(args.data_dir, split="test")
            r, res = run_one(cfg, text, workdir, seed, data, not args.quiet)
            r["test_acc"] = _test_acc(cfg, text, res.state, test_set)
            entry = {"source": source, "genotype": text, "params_short_network": darts.count_params(g, **SIZE),
                     "params_c36_20_cells": darts.count_params(g, channels=36, layers=20), "runs": [r]}
            with locked(_results_lock(args.output)):
                old = _load(args.output, cfg)
                out = merge_results(old.get("results", {}), {name: entry}, f"{name!r} seed {seed}")
                _write(args, "train", cfg, sorted(set(args.seeds) | set(old.get("seeds", []))), out)
    return out


def merge_results(into: dict, part: dict, where: str) -> dict:
    """``into`` (a results file's ``results``) with the runs of ``part`` (another's) added:
    per candidate the genotype must be the same, and a seed in both must be the same run (the
    same validation accuracy); the summary is recomputed. ``where`` names ``part`` in errors.

    Example:
        >>> a = {"V2": {"genotype": "g", "runs": [{"seed": 0, "valid_acc": 50.0}]}}
        >>> b = {"V2": {"genotype": "g", "runs": [{"seed": 1, "valid_acc": 52.0}]}}
        >>> m = merge_results(a, b, "b.json")["V2"]
        >>> [r["seed"] for r in m["runs"]], m["valid_acc_mean"]
        ([0, 1], 51.0)
    """
    out = {k: dict(v) for k, v in into.items()}
    for name, entry in part.items():
        if name not in out:
            out[name] = dict(entry)
            continue
        have = out[name]
        if have["genotype"] != entry["genotype"]:
            raise SystemExit(f"{where}: {name!r} was trained as {entry['genotype']}, elsewhere as "
                             f"{have['genotype']}; rename one of them")
        runs = {r["seed"]: r for r in have["runs"]}
        for r in entry["runs"]:
            if r["seed"] in runs and runs[r["seed"]]["valid_acc"] != r["valid_acc"]:
                raise SystemExit(f"{where}: {name!r} seed {r['seed']} holds another run ({r['valid_acc']} "
                                 f"against {runs[r['seed']]['valid_acc']} % validation accuracy); keep one")
            runs.setdefault(r["seed"], r)
        have["runs"] = [runs[k] for k in sorted(runs)]
    for entry in out.values():
        entry.update(_summary(entry["runs"]))
    return out


def cmd_merge(args) -> dict:
    """The runs of the ``--part`` files (``train`` runs of the same recipe written to other
    ``--output`` files: trainings spread over processes or machines) merged into ``--output``
    (:func:`merge_results`), written atomically."""
    if not args.part:
        raise SystemExit("merge: name the results files to merge with --part FILE (repeatable)")
    cfg = short_recipe(epochs=args.epochs)
    out = _existing(args.output, cfg)
    for path in args.part:
        if not os.path.exists(path):
            raise SystemExit(f"merge: {path}: no such results file")
        out = merge_results(out, _existing(path, cfg), path)  # the same recipe, or a clear error
    seeds = sorted({r["seed"] for entry in out.values() for r in entry["runs"]})
    _write(args, "train", cfg, seeds, out)
    print(f"[short] merged {len(args.part)} file(s) into {args.output}: "
          f"{sum(len(e['runs']) for e in out.values())} runs of {len(out)} candidates", file=sys.stderr)
    return out


def _test_acc(cfg, genotype: str, state, test_set) -> float:
    """CIFAR-10 test accuracy of a finished run's final state, stored with the run and left
    unread (``table`` shows it only with ``--read-test``, after the choice): the checkpoints
    that could give it later do not outlast a session here."""
    step = train.make_eval_step(cfg, genotype, steps_per_epoch=TRAIN_IMAGES // cfg.batch_size)
    return float(train.evaluate(step, state, *test_set, cfg.eval_batch_size)[1])


def _load(path: str, cfg) -> dict:
    """The results file ``path`` (``{}`` when there is none); a clear error when it holds runs
    of another recipe than ``cfg``."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        old = json.load(f)
    if old.get("recipe") != config_dict(cfg):
        raise SystemExit(f"{path} holds results of another recipe; pick another --output (or remove it)")
    return old


def _existing(path: str, cfg) -> dict:
    """The results already in ``path`` when it holds a run of the same recipe, else none."""
    return _load(path, cfg).get("results", {})


def _write(args, what: str, cfg, seeds, results: dict, **extra) -> None:
    result = run_record(__file__, args.argv, what=what, recipe=config_dict(cfg), seeds=seeds,
                        data="first 10 000 images of NB201's CIFAR-10 train half to train, first 10 000 of "
                             "its valid half to validate", results=results, **extra)
    path = args.output if what != "nb201-check" else args.nb201_output
    write_result(path, result)


VALID_200, VALID_12 = "nb201v1_cifar10valid_valid_200", "cifar10valid_valid_12"


def nb201_cells(table_path: str, k: int) -> list[tuple[str, float, float]]:
    """``k`` NB201 cells at evenly spaced quantiles (5 % .. 95 %) of the table's CIFAR-10
    validation accuracy after 200 epochs (``(arch, acc_200, acc_12)``, the last NB201's own
    12-epoch validation accuracy)."""
    from nasi_jax.nb201_table import load_nb201_table
    t = load_nb201_table(table_path)
    acc, acc12 = (np.asarray(t.columns[c], np.float64) for c in (VALID_200, VALID_12))
    ok = np.flatnonzero(np.isfinite(acc))
    order = ok[np.argsort(acc[ok], kind="stable")]
    picks = [order[int(round(q * (len(order) - 1)))] for q in np.linspace(0.05, 0.95, k)]
    return [(t.arch_strs[i], float(acc[i]), float(acc12[i])) for i in picks]


def cmd_nb201_check(args) -> dict:
    from scipy import stats
    cfg = short_recipe("nb201", layers=args.nb201_layers, epochs=args.epochs)
    data = train.load_data(cfg, args.data_dir)
    seeds = args.seeds
    out = {}
    for arch, acc, acc12 in nb201_cells(args.benchmark, args.nb201_cells):
        runs = []
        for seed in seeds:
            print(f"[short/nb201] {arch} (table {acc:.2f}), seed {seed}", file=sys.stderr, flush=True)
            r, _ = run_one(cfg, arch, os.path.join(args.workdir, "nb201", slug(arch), f"seed{seed}"), seed, data,
                           not args.quiet)
            runs.append(r)
        out[arch] = {"table_valid_200": acc, "table_valid_12": acc12, "runs": runs, **_summary(runs)}
        extra = {}
        if len(out) > 2:
            ours = [v["valid_acc_mean"] for v in out.values()]
            for col in ("table_valid_200", "table_valid_12"):
                ref = [v[col] for v in out.values()]
                tau, rho = stats.kendalltau(ref, ours).statistic, stats.spearmanr(ref, ours).statistic
                # None when undefined (all short-run accuracies equal)
                extra[col] = {"kendall_tau": float(tau) if np.isfinite(tau) else None,
                              "spearman_rho": float(rho) if np.isfinite(rho) else None}
        _write(args, "nb201-check", cfg, seeds, out, nb201_layers=args.nb201_layers, **extra)
    return out


def cmd_table(args) -> str:
    if not os.path.exists(args.output):
        raise SystemExit(f"{args.output} does not exist: run the 'train' step first")
    with open(args.output) as f:
        res = json.load(f)
    if res.get("what") != "train" or not res.get("results"):
        raise SystemExit(f"{args.output} holds no trained candidates (the 'train' step writes them)")
    rows = sorted(res["results"].items(), key=lambda kv: -kv[1]["valid_acc_mean"])
    test = {}
    if args.read_test:
        test = read_test(args, res)
    head = "| rank | candidate | params (C=16, 8 cells / C=36, 20 cells) | valid acc % (mean ± sd, seeds) |"
    head += " test acc % |" if test else ""
    lines = [head, "|---" * (5 if test else 4) + "|"]
    for i, (name, r) in enumerate(rows, 1):
        seeds = ", ".join(f"{x['valid_acc']:.2f}" for x in r["runs"])
        line = (f"| {i} | {name} | {r['params_short_network'] / 1e6:.3f} M / {r['params_c36_20_cells'] / 1e6:.2f} M "
                f"| {r['valid_acc_mean']:.2f} ± {r['valid_acc_sd']:.2f} ({seeds}) |")
        lines.append(line + (f" {np.mean(test[name]):.2f} |" if test else ""))
    text = "\n".join(lines) + "\n"
    rules, chosen = rule_table(res["results"], res["seeds"])
    no_rule = "no rule chosen yet: every rule's NASI-FIX and NASI-ADA need a run at every seed"
    if args.chosen_genotypes and chosen is None:
        raise SystemExit(f"--chosen-genotypes: {no_rule}; run 'train' to the end first")
    if rules:
        verdict = f"chosen rule: {chosen}" if chosen else no_rule
        text += "\nCeiling rules, by their cells' validation accuracy:\n\n" + rules + "\n" + verdict + "\n"
    print(text, end="")
    print(_progress(res["results"], candidates_from(args), res["seeds"]), file=sys.stderr)
    write_result(args.output, None, text)
    figure(rows, test, os.path.splitext(args.output)[0] + ".png")
    if args.chosen_genotypes:
        for path in write_chosen(res["results"], chosen, args.chosen_genotypes):
            print(f"{chosen}: wrote {os.path.relpath(path, REPO)}", file=sys.stderr)
    return text


def write_chosen(results: dict, rule: str, stem: str) -> list[str]:
    """Write the genotypes of ``rule``'s NASI-FIX and NASI-ADA cells (as trained, from a
    results file's ``results``) to ``<stem>_fix.txt`` and ``<stem>_ada.txt``, atomically, in
    the DARTS text form ``nasi train --genotype FILE`` reads; returns the two paths."""
    fix, ada = next((f, a) for r, f, a in RULES if r == rule)
    paths = {f"{stem}_fix.txt": fix, f"{stem}_ada.txt": ada}
    for path, name in paths.items():
        records.write_text_atomic(path, results[name]["genotype"] + "\n")
    return list(paths)


def _progress(results: dict, cands, seeds, show: int = 4) -> str:
    """How far ``train`` is: runs recorded of candidates x seeds, and the next ``show`` runs in
    :func:`training_order`.

    Example:
        >>> _progress({"DARTS_V2": {"runs": [{"seed": 0}]}}, [("DARTS_V2",), ("random 0",)], [0, 1])
        '[short] 1 of 4 runs recorded; next: random 0, seed 0; DARTS_V2, seed 1; random 0, seed 1'
    """
    todo = [(seed, c[0]) for seed, c in training_order(cands, seeds)
            if not any(r["seed"] == seed for r in results.get(c[0], {}).get("runs", []))]
    total = len(cands) * len(seeds)
    nxt = "; ".join(f"{name}, seed {seed}" for seed, name in todo[:show]) + ("; ..." if len(todo) > show else "")
    return f"[short] {total - len(todo)} of {total} runs recorded; " + (f"next: {nxt}" if todo else "all done")


def figure(rows, test: dict, path: str) -> None:
    """Validation accuracy per candidate (dots: seeds; bar: mean), best first; test beside it
    once read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    for i, (name, r) in enumerate(rows):
        ax.barh(i, r["valid_acc_mean"], color="#9ecae1")
        ax.plot([x["valid_acc"] for x in r["runs"]], [i] * len(r["runs"]), "o", color="#08519c", ms=4)
        if test:
            ax.plot(test[name], [i] * len(test[name]), "x", color="#cb181d", ms=5)
    ax.set_yticks(range(len(rows)), [n for n, _ in rows], fontsize=8)
    ax.invert_yaxis()
    lo = min(min(x["valid_acc"] for x in r["runs"]) for _, r in rows)
    ax.set_xlim(max(0.0, lo - 5), None)
    ax.set_xlabel("accuracy % (bars: validation mean; o: seeds" + ("; x: test)" if test else ")"))
    ax.set_title("DARTS genotypes, short recipe (C=16, 8 cells, 10 epochs, 10k images)", fontsize=9)
    save_figure(fig, path)


def read_test(args, res) -> dict:
    """Each run's CIFAR-10 test accuracy (the 10 000 test images), stored by ``train`` at the
    end of the run; only after the choice on validation accuracy."""
    missing = [f"{name} seed {run['seed']}" for name, r in res["results"].items() for run in r["runs"]
               if "test_acc" not in run]
    if missing:
        raise SystemExit(f"--read-test: no test accuracy stored for {missing}; rerun 'train'")
    return {name: [run["test_acc"] for run in r["runs"]] for name, r in res["results"].items()}


def _ints(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 0,1") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected non-negative integers")
    return seeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("train", "table", "nb201-check", "merge"))
    p.add_argument("--candidate", action="append", help="NAME=SOURCE (repeatable; default: the module's list)")
    p.add_argument("--part", action="append", help="merge: a results file to merge into --output (repeatable)")
    p.add_argument("--seeds", default="0,1", type=_ints, help="comma-separated seeds (default 0,1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--nb201-cells", type=int, default=6)
    p.add_argument("--nb201-layers", type=int, default=2, help="NB201 cells per stage in the check (default 2)")
    p.add_argument("--workdir", default="runs/darts_short")
    p.add_argument("--output", default="docs/runs/darts_short_training.json")
    p.add_argument("--nb201-output", default="docs/runs/darts_short_training_nb201.json")
    p.add_argument("--jobs", type=positive_int("--jobs"), default=1,
                   help="train: N worker processes sharing the usable cores (default 1; see docs/darts.md)")
    p.add_argument("--claim", action="store_true",
                   help="train: only runs no other train process (same --workdir) holds; --jobs sets it")
    p.add_argument("--cores", type=_ints, default=None,
                   help="comma-separated CPU cores to run on (this process's affinity, set before jax starts)")
    p.add_argument("--read-test", action="store_true", help="table: also the test accuracy (after the choice)")
    p.add_argument("--chosen-genotypes", metavar="STEM",
                   help="table: write the chosen rule's NASI-FIX and NASI-ADA genotypes to STEM_fix.txt and "
                        "STEM_ada.txt (docs/runs/darts_search for the committed ones)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_data_args(p)
    args = p.parse_args(argv)
    if args.what != "train" and (args.jobs != 1 or args.claim or args.cores is not None):
        p.error(f"--jobs, --claim and --cores are options of 'train', not of {args.what!r}")
    if args.what != "table" and (args.read_test or args.chosen_genotypes):
        p.error(f"--read-test and --chosen-genotypes are options of 'table', not of {args.what!r}")
    if args.cores is not None:  # before jax's CPU client exists: it sizes its threads by the affinity
        try:
            pin_cores(args.cores)
        except ValueError as e:
            p.error(str(e))
    args.argv = argv
    for k in ("workdir", "output", "nb201_output", "chosen_genotypes"):
        if getattr(args, k):
            setattr(args, k, os.path.join(REPO, getattr(args, k)))
    args.part = [os.path.join(REPO, path) for path in args.part or []]
    {"train": cmd_train, "table": cmd_table, "nb201-check": cmd_nb201_check, "merge": cmd_merge}[args.what](args)
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
