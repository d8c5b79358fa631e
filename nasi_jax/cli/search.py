"""``nasi search``: NASI for S seeds in one compiled call; a table per seed; a JSON record."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Sequence

import numpy as np

from nasi_jax import presets
from nasi_jax.cli._common import (DefaultsFormatter, add_scale_args, check_writable, positive_int,
                                  setup_scale)

__all__ = ["add_parser", "run", "search_config"]


def add_parser(sub):
    dflt = presets.resolve(None, "nb201")

    def pre(field, what):  # help text: where the default comes from
        return f"{what} (default: the preset's; {dflt['preset']}: {dflt[field]})"

    s = sub.add_parser("search", help="run NASI (Algorithm 1) for one or more seeds",
                       description="Run NASI on a search space for S seeds in one compiled call. "
                       "Every search value comes from a preset (--preset; `nasi presets` lists them); "
                       "a flag overrides one value. Without --preset: for nb201 the values chosen on "
                       "CIFAR-10 validation accuracy for the data mode given (--data; default: random, "
                       "Gaussian inputs and random labels, no files), for darts the paper's.",
                       epilog="presets: " + "; ".join(f"{n}: {p.summary}" for n, p in presets.PRESETS.items()),
                       formatter_class=DefaultsFormatter)
    from nasi_jax.spaces import names
    s.add_argument("--space", default="nb201", choices=names(),
                   help="search space: nb201 (alpha [6, 5]) or darts (normal and reduction cell, "
                   "alpha [2, 14, 8]; prints and saves the genotype)")
    s.add_argument("--preset", metavar="NAME", help="named set of every search value, one of: "
                   + ", ".join(presets.PRESETS) + " (default: nb201 -> nb201-<data mode>, darts -> paper)")
    s.add_argument("--seeds", type=positive_int("--seeds"), default=1,
                   help="number of seeds S; seeds FIRST_SEED .. FIRST_SEED+S-1")
    s.add_argument("--first-seed", type=int, default=0, help="first seed")
    s.add_argument("--steps", type=positive_int("--steps"), help=pre("steps", "T, sampled architectures"))
    s.add_argument("--batch-size", type=positive_int("--batch-size"), help=pre("batch_size", "b"))
    s.add_argument("--mu", type=float, help=pre("mu", "penalty coefficient mu (eq. 13)"))
    s.add_argument("--nu", type=float, help=pre("nu", "ceiling nu (fixed) or its start (adaptive)"))
    s.add_argument("--nu-mode", choices=("fixed", "adaptive"),
                   help=pre("nu_mode", "the ceiling rule: NASI-FIX (fixed) or NASI-ADA (adaptive; the "
                            "project's running-mean rule)"))
    s.add_argument("--tau", type=float, help=pre("tau", "Gumbel-softmax temperature"))
    s.add_argument("--readout", choices=("auto", "argmax", "argmax-no-none", "darts"),
                   help=pre("readout", "the cell from alpha*. nb201: per-edge argmax over all ops "
                            "(argmax) or over all but none (argmax-no-none); darts: DARTS' genotype "
                            "read-out (darts, the only one: per edge the best op but none, per node the "
                            "2 strongest edges)"))
    s.add_argument("--candidates", type=positive_int("--candidates"),
                   help=pre("candidates", "K: with the objective nasi+ensemble (preset nb201-ensemble), "
                            "the aggregate chooses among the K most probable cells under alpha*"))
    s.add_argument("--soft", action="store_const", const=True, default=None,
                   help="soft Gumbel-softmax samples instead of hard straight-through ones "
                   "(default: the preset's; all presets use hard samples)")
    s.add_argument("--data", choices=("random", "random-labels", "real"),
                   help="random: N(0,1) inputs + random labels; random-labels: CIFAR-10 images + "
                   "random labels; real: CIFAR-10 with labels (NB201 cifar10-valid train half) "
                   "(default: the preset's data mode, else random)")
    s.add_argument("--data-dir", help="folder with cifar10_train_jpeg.npz or cifar-10-batches-bin/ "
                   "(or its parent), or a tensorflow-datasets data_dir")
    s.add_argument("--data-source", choices=("auto", "local", "binary", "tfds"), default="auto")
    s.add_argument("--split-file", help="NB201 cifar-split.txt (default: looked up beside the data)")
    s.add_argument("--benchmark", help="NB201 accuracy table (CSV, see docs/benchmark_table.md)")
    s.add_argument("--output", help="write the result as JSON here (atomically)")
    s.add_argument("--init", dest="init_scheme", choices=("pytorch", "flax"),
                   help=pre("init_scheme", "weight initialisation (pytorch = the paper's scale for nu)"))
    s.add_argument("--bn-mode", choices=("train", "eval"),
                   help=pre("bn_mode", "BatchNorm statistics while scoring"))
    s.add_argument("--channels", type=positive_int("--channels"), help=pre("channels", "C of the supernet"))
    s.add_argument("--cells-per-stage", "--cells", dest="cells", type=positive_int("--cells-per-stage"),
                   default=None, help="N, (normal) cells per stage (default: the preset's; 5 for nb201, "
                   "2 for darts, DARTS' 8-cell search network: 3N+2 cells)")
    s.add_argument("--image-size", type=positive_int("--image-size"),
                   help=pre("image_size", "input size for --data random (CIFAR-10 modes need 32)"))
    g = s.add_argument_group("execution (how it runs; the same cells whatever the choice)")
    g.add_argument("--conv-impl", choices=("auto", "xla", "xla-dense", "xla-taps", "xla-shift", "loop-safe"),
                   default="auto",
                   help="the supernet's convolutions; auto: the space's choice for the backend (darts on "
                   "CPU: xla-taps for the staged step, xla-dense in one program; docs/darts.md); "
                   "loop-safe needs --grad-mode rev-rev, and so does xla-taps in one program")
    g.add_argument("--step-impl", choices=("auto", "one-program", "staged"), default="auto",
                   help="the search step as one compiled program, or stage by stage (darts, host loop); "
                   "auto: staged where the space offers it on the CPU")
    g.add_argument("--grad-mode", choices=("fwd-rev", "rev-rev"), default="fwd-rev",
                   help="second-order gradient: reverse over one JVP (fwd-rev) or grad of grad")
    g.add_argument("--seed-batching", choices=("auto", "map", "vmap", "threads"), default="auto",
                   help="how seeds share the compiled call (auto: the fastest measured on the backend)")
    add_scale_args(g, "seeds")
    s.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return s


def search_config(args):
    """``(SearchConfig, Execution)`` of ``nasi search``'s arguments (preset values, flags override)."""
    from nasi_jax import search
    given = dict(space=args.space, preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                 mu=args.mu, nu=args.nu, nu_mode=args.nu_mode, tau=args.tau, readout=args.readout,
                 candidates=args.candidates,
                 hard=None if args.soft is None else not args.soft, data=args.data,
                 channels=args.channels, cells_per_stage=args.cells, image_size=args.image_size,
                 init_scheme=args.init_scheme, bn_mode=args.bn_mode)
    cfg = search.SearchConfig(**given).validate()
    exe = search.Execution(loop="auto", seed_batching=args.seed_batching, grad_mode=args.grad_mode,
                           conv_impl=args.conv_impl, step_impl=args.step_impl)
    return cfg, exe


_QS = (0, 10, 25, 50, 75, 90, 100)  # percentiles of s recorded per seed


def _seed_row(space, res, k, table):
    """One seed's result: the cell, what the space reports of it, its history, its benchmark."""
    from nasi_jax import nb201_table
    seed, arch, ops = res.seeds[k], res.arch_strs[k], res.ops[k]
    h = {name: res.history[name][k] for name in ("s", "R", "nu", "grad_norm")}
    row = {"seed": seed, "arch": arch, "ops": ops.tolist()} | space.describe(ops)
    row |= {"alpha_star": res.alpha_star[k].round(6).tolist(),
            "mean_trace_estimate": float(h["s"].mean()),
            "trace_estimate_quantiles": {f"q{q}": float(v) for q, v in zip(_QS, np.percentile(h["s"], _QS))},
            "penalty_active_frac": float(np.mean(h["s"] > h["nu"])),
            "history": {name: [float(v) for v in vals] for name, vals in h.items()}}
    if table is not None:
        try:
            row["benchmark"] = table.lookup(arch) | {"rank_cifar10_test": table.rank(arch),
                                                     "table_rows": len(table)}
        except nb201_table.BenchmarkError as e:  # a partial table: keep the search result
            row["benchmark"] = None
            print(f"[nasi] warning: seed {seed}: {e}", file=sys.stderr)
    return row


def _chosen_row(space, row, choice, table):
    """A seed's row after the aggregate's choice: the chosen cell replaces the read-out's,
    which is kept (with its benchmark entry) under ``nasi_readout``."""
    keep = {k: row.pop(k) for k in ("arch", "ops", "benchmark") if k in row}
    arch = space.to_text(choice.ops)
    out = {"seed": row.pop("seed"), "arch": arch, "ops": list(choice.ops)} | space.describe(choice.ops)
    if table is not None:
        out["benchmark"] = table.lookup(arch) | {"rank_cifar10_test": table.rank(arch), "table_rows": len(table)}
    out["nasi_readout"] = keep
    out["choice"] = {"candidates": len(choice.candidates), "chosen_rank_by_probability":
                     choice.candidates.index(choice.ops) + 1}
    return out | {k: v for k, v in row.items() if k not in space.describe(choice.ops)}


def run(args, argv: Sequence[str]) -> int:
    from nasi_jax import data, nb201_table, records, search
    from nasi_jax.spaces import get_space

    space = get_space(args.space)
    if args.benchmark and space.benchmark is None:
        raise ValueError(f"--benchmark is an NB201 accuracy table; the {args.space} space has no benchmark "
                         "table: train the genotype with `nasi train --genotype ...`")
    cfg, exe = search_config(args)
    devices = setup_scale(args)
    from nasi_jax import compilation_cache
    cache_before = compilation_cache.stats()
    exe.resolve(cfg, devices=len(devices) if devices else 1)  # impossible choices fail before compiling
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    search.check_seeds(seeds)
    table = nb201_table.load_nb201_table(args.benchmark) if args.benchmark else None
    if args.output:
        check_writable(args.output)
    if cfg.data == "random" and (args.data_dir or args.split_file or args.data_source != "auto"):
        print("[nasi] warning: --data random uses no files; --data-dir/--data-source/--split-file "
              "are ignored", file=sys.stderr)
    t_start = time.perf_counter()
    images, labels = data.load_data_for_mode(cfg.data, args.data_dir, source=args.data_source,
                                             split_file=args.split_file)
    progress = not args.no_progress
    if progress:
        changed = cfg.preset_overrides()
        print(f"[nasi] preset {cfg.preset}" + (f" with {', '.join(f'{k}={v}' for k, v in changed.items())}"
                                               if changed else "")
              + f": {len(seeds)} seed(s) x {cfg.steps} steps, batch {cfg.batch_size}, data {cfg.data}, "
              f"mu {cfg.mu}, nu {cfg.nu} ({cfg.nu_mode}), tau {cfg.tau}, read-out {cfg.readout}; "
              "compiling...", file=sys.stderr)
    res = search.run_search(cfg, seeds, execution=exe, images=images, labels=labels, progress=progress,
                            devices=devices, memory_budget=args.memory_budget)
    choices, choose_s = None, 0.0
    if cfg.objective == "nasi+ensemble":
        from nasi_jax.search import choose
        if progress:
            print(f"[nasi] the aggregate {choose.ENSEMBLE!r} chooses among the {cfg.candidates} most "
                  "probable cells of each seed...", file=sys.stderr)
        choices, choose_s = choose.choose(cfg, res.alpha_star, images=images, labels=labels,
                                          progress=progress)
    wall = time.perf_counter() - t_start

    rows = [_seed_row(space, res, k, table) for k in range(len(res.seeds))]
    if choices is not None:
        rows = [_chosen_row(space, row, ch, table) for row, ch in zip(rows, choices)]
    for row in rows:
        if row["penalty_active_frac"] > 0.5 and cfg.mu > 1:
            print(f"[nasi] warning: seed {row['seed']}: s > nu at {row['penalty_active_frac']:.0%} of the "
                  f"steps; with mu > 1 the penalised objective then favours LOWER traces. Mean s was "
                  f"{row['mean_trace_estimate']:.3g}; consider --nu above it or --nu-mode adaptive.",
                  file=sys.stderr)
    found = [r["benchmark"] for r in rows if r.get("benchmark")]
    summary = nb201_table.summarize_lookups(found) if found else None
    print(nb201_table.format_table(rows, summary))
    if table is None and space.lookup_hint():
        print(space.lookup_hint())
    per_step = res.run_time_s / (len(seeds) * cfg.steps)
    cache = {"dir": compilation_cache.current_dir(), **{k: v - cache_before[k] for k, v in compilation_cache.stats().items()}}
    print(f"wall time {wall:.1f}s (compile {res.compile_time_s:.1f}s, search {res.run_time_s:.1f}s, "
          + (f"choosing among candidates {choose_s:.1f}s, " if choices is not None else "") +
          f"{per_step:.3f}s per step per seed)" + (f"; compilation cache: {cache['hits']} hit(s), "
                                                   f"{cache['misses']} miss(es)" if cache["dir"] else ""))
    import jax
    if args.output and jax.process_index() == 0:  # several hosts: process 0 writes
        result = {
            "command": records.command_line("nasi", argv),
            "created": records.now_utc(),
            "config": dataclasses.asdict(res.config) | {"data_dir": args.data_dir, "benchmark": args.benchmark,
                                                        "devices": len(devices) if devices else 1,
                                                        "data_source": args.data_source,
                                                        "split_file": args.split_file,
                                                        "loop_used": res.loop},
            "execution": dataclasses.asdict(res.execution),
            "preset": res.config.preset_record(),
            "versions": records.versions(),
            "seeds": rows,
            "summary": summary,
            "wall_time_s": wall,
            "compile_time_s": res.compile_time_s,
            "compilation_cache": cache,
            "search_time_s": res.run_time_s,
            "choose_time_s": choose_s,
            "per_step_s": per_step,
        }
        records.write_json_atomic(args.output, result)
        print(f"wrote {args.output}")
    return 0
