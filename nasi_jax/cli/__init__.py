"""The ``nasi`` command: ``nasi search``, ``nasi score``, ``nasi bench``, ``nasi info`` and ``nasi train``.

    nasi search --space nb201 --seeds 5 --steps 100 --data random --output result.json
    nasi search --space nb201 --data real --data-dir DATA/cifar10_jpeg \
        --benchmark DATA/nb201/nb201_accuracies.csv
    nasi score --space nb201 --proxy nasi --cells all --seed 0 --output scores.csv
    nasi bench --quick
    nasi info --space nb201 --arch "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    nasi info --space darts --genotype DARTS_V2 --channels 36 --layers 20
    nasi train --genotype DARTS_V2 --dataset cifar10 --epochs 600 --data-dir DATA --workdir runs/darts_v2

Every input is checked before the (long) search starts; errors print one line that says
what is wrong and how to fix it, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

__all__ = ["main", "build_parser", "versions", "write_json_atomic"]


def versions() -> dict[str, str]:
    """Versions of python and the numerical stack (recorded in every result file)."""
    import flax
    import jax
    import jaxlib
    import numpy
    import optax

    import nasi_jax
    return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
            "nasi_jax": nasi_jax.__version__, "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind, "platform": platform.platform(),
            "cpu_count": os.cpu_count()}


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder + ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 -> the usual permissions
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """Write JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {value}")
        return value
    return parse


def _add_scale_args(p, what: str) -> None:
    p.add_argument("--devices", default="1", help=f"shard the {what} over this many local devices "
                   "('all' for every device; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                   "makes N)")
    p.add_argument("--distributed", action="store_true", help="multi-host: call "
                   "jax.distributed.initialize() first (see README, several hosts) and use every "
                   "process's devices")
    p.add_argument("--memory-budget", metavar="SIZE", help="device memory the compiled program may "
                   "use, e.g. 2GiB or 800MB (XLA's estimate, checked before running)")
    p.add_argument("--compilation-cache", metavar="DIR", help="persistent XLA compilation cache "
                   "folder (reused across runs with the same program)")


def _setup_scale(args):
    """Initialise multi-host / the compilation cache; return the devices to use (or None)."""
    import jax
    if args.memory_budget is not None:
        from nasi_jax import memory
        memory.parse_bytes(args.memory_budget)  # a malformed size fails before compiling
    if args.compilation_cache:
        os.makedirs(args.compilation_cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if args.distributed:
        jax.distributed.initialize()
        return jax.devices()
    if args.devices == "all":
        return jax.local_devices()
    try:
        n = int(args.devices)
    except ValueError:
        raise ValueError(f"--devices must be a number or 'all', got {args.devices!r}") from None
    local = jax.local_devices()
    if not 1 <= n <= len(local):
        raise ValueError(f"--devices {n}: this process sees {len(local)} device(s) "
                         f"({local[0].platform}); on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={n}")
    return local[:n] if n > 1 else None


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where a flag has a default of its own (not the preset's)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasi", description="NASI: neural architecture search at "
                                "initialisation (JAX/Flax).")
    sub = p.add_subparsers(dest="command", required=True)

    from nasi_jax import presets
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
                       formatter_class=_DefaultsFormatter)
    s.add_argument("--space", choices=("nb201", "darts"), default="nb201",
                   help="search space: nb201 (alpha [6, 5]) or darts (normal and reduction cell, "
                   "alpha [2, 14, 8]; prints and saves the genotype)")
    s.add_argument("--preset", metavar="NAME", help="named set of every search value, one of: "
                   + ", ".join(presets.PRESETS) + " (default: nb201 -> nb201-<data mode>, darts -> paper)")
    s.add_argument("--seeds", type=_positive_int("--seeds"), default=1,
                   help="number of seeds S; seeds FIRST_SEED .. FIRST_SEED+S-1")
    s.add_argument("--first-seed", type=int, default=0, help="first seed")
    s.add_argument("--steps", type=_positive_int("--steps"), help=pre("steps", "T, sampled architectures"))
    s.add_argument("--batch-size", type=_positive_int("--batch-size"), help=pre("batch_size", "b"))
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
    s.add_argument("--soft", action="store_const", const=True, default=None,
                   help="soft Gumbel-softmax samples instead of hard straight-through ones "
                   "(default: the preset's; all presets use hard samples)")
    s.add_argument("--data", choices=("random", "random-labels", "real"),
                   help="random: N(0,1) inputs + random labels; random-labels: CIFAR-10 images + "
                   "random labels; real: CIFAR-10 with labels (NB201 cifar10-valid train half) "
                   "(default: the preset's data mode, else random)")
    s.add_argument("--data-dir", help="folder with cifar10_train_jpeg.npz (or its parent), "
                   "or a tensorflow-datasets data_dir")
    s.add_argument("--data-source", choices=("auto", "local", "binary", "tfds"), default="auto")
    s.add_argument("--split-file", help="NB201 cifar-split.txt (default: looked up beside the data)")
    s.add_argument("--benchmark", help="NB201 accuracy table (CSV, see docs/benchmark_table.md)")
    s.add_argument("--output", help="write the result as JSON here (atomically)")
    s.add_argument("--init", dest="init_scheme", choices=("pytorch", "flax"),
                   help=pre("init_scheme", "weight initialisation (pytorch = the paper's scale for nu)"))
    s.add_argument("--bn-mode", choices=("train", "eval"),
                   help=pre("bn_mode", "BatchNorm statistics while scoring"))
    s.add_argument("--channels", type=_positive_int("--channels"), help=pre("channels", "C of the supernet"))
    s.add_argument("--cells", type=_positive_int("--cells"), default=None,
                   help="N, (normal) cells per stage (default: the preset's; 5 for nb201, 2 for darts, "
                   "DARTS' 8-cell search network: 3N+2 cells)")
    s.add_argument("--image-size", type=_positive_int("--image-size"),
                   help=pre("image_size", "input size for --data random (CIFAR-10 modes need 32)"))
    s.add_argument("--conv-impl", choices=("auto", "xla", "xla-dense", "xla-shift", "loop-safe"),
                   default="auto",
                   help="the supernet's convolutions; auto: xla for nb201; for darts xla-dense on CPU "
                   "(depthwise convolutions as dense ones with a diagonal kernel, 5-7x faster "
                   "per step there) and xla elsewhere; xla-shift: depthwise as shifted products; "
                   "loop-safe needs --grad-mode rev-rev")
    s.add_argument("--step-impl", choices=("auto", "one-program", "staged"), default="auto",
                   help="the search step as one compiled program, or (darts, host loop) cell by cell; "
                   "auto: staged for darts on CPU, where the one-program step's compilation ran out "
                   "of 24 GiB")
    s.add_argument("--grad-mode", choices=("fwd-rev", "rev-rev"), default="fwd-rev",
                   help="second-order gradient: reverse over one JVP (fwd-rev) or grad of grad")
    s.add_argument("--seed-batching", choices=("auto", "map", "vmap", "threads"), default="auto",
                   help="how seeds share the compiled call (auto: the fastest measured on the backend)")
    _add_scale_args(s, "seeds")
    s.add_argument("--no-progress", action="store_true", help="no progress line on stderr")

    c = sub.add_parser("score", help="score NB201 cells with a training-free proxy (one compilation)",
                       description="Score cells with the supernet's weights theta_0 and one batch, "
                       "both from --seed; rows are streamed to --output (CSV: index,arch_str,<proxy>) "
                       "and a run that was stopped resumes from it.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--space", default="nb201", help="search space (available: nb201)")
    from nasi_jax.proxies import describe
    c.add_argument("--proxy", default="nasi", metavar="NAME",
                   help="training-free score, one of: " + ", ".join(
                       f"{name} ({'+' if sign > 0 else '-'})" for name, sign, _ in describe())
                   + " (+: larger predicts higher accuracy, -: smaller does; papers and maths in "
                   "nasi_jax/proxies.py)")
    c.add_argument("--cells", default="all", help="'all', a number N (a seeded sample of N distinct "
                   "cells) or a file of NB201 arch strings")
    c.add_argument("--seed", type=int, default=0, help="seed of theta_0, the batch and the sample")
    c.add_argument("--output", required=True, help="CSV to write (resumed if it exists)")
    c.add_argument("--batch-size", type=_positive_int("--batch-size"), default=16,
                   help="examples in the batch shared by all cells")
    c.add_argument("--data", choices=("random", "random-labels", "real"), default="random")
    c.add_argument("--data-dir", help="CIFAR-10 folder for --data real/random-labels")
    c.add_argument("--data-source", choices=("auto", "local", "binary", "tfds"), default="auto")
    c.add_argument("--split-file", help="NB201 cifar-split.txt (default: looked up beside the data)")
    c.add_argument("--benchmark", help="NB201 accuracy table: the index column is then the NB201 "
                   "index and 'all' follows its order (else the index is the cell code)")
    c.add_argument("--init", dest="init_scheme", choices=("pytorch", "flax"), default="pytorch")
    c.add_argument("--bn-mode", choices=("train", "eval"), default="train")
    c.add_argument("--channels", type=_positive_int("--channels"), default=16)
    c.add_argument("--cells-per-stage", type=_positive_int("--cells-per-stage"), default=5)
    c.add_argument("--image-size", type=_positive_int("--image-size"), default=32)
    c.add_argument("--chunk-size", type=_positive_int("--chunk-size"), default=None,
                   help="Jacobian rows per VJP batch for --proxy ntk_trace")
    from nasi_jax.score import ScoreConfig
    c.add_argument("--mu", type=float, default=ScoreConfig.mu,
                   help="penalty coefficient mu of --proxy nasi_objective (eq. 13)")
    c.add_argument("--nu", type=float, default=ScoreConfig.nu,
                   help="ceiling nu of --proxy nasi_objective (the paper preset's)")
    c.add_argument("--conv-impl", choices=("auto", "xla", "loop-safe"), default="auto")
    c.add_argument("--workers", type=_positive_int("--workers"), default=2, help="cells in flight")
    _add_scale_args(c, "cells")
    c.add_argument("--no-progress", action="store_true", help="no progress line on stderr")

    b = sub.add_parser("bench", help="measure the cost figures of issue 4 on this backend",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    b.add_argument("--output", help="write the figures as JSON here (atomically)")
    b.add_argument("--only", help="comma-separated subset: step,seeds,trace,score")

    i = sub.add_parser("info", help="parameter count and FLOPs (darts: --flops) of one architecture",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    i.add_argument("--space", default="nb201", help="nb201 (needs --arch) or darts (needs --genotype)")
    i.add_argument("--arch", help="NB201 architecture string")
    i.add_argument("--genotype", help="DARTS genotype: the text Genotype(normal=[...], normal_concat=[...], "
                   "reduce=[...], reduce_concat=[...]), a published name (DARTS_V1, DARTS_V2), a file "
                   "holding the text, or a `nasi search --space darts` result (FILE.json or FILE.json#SEED)")
    i.add_argument("--channels", type=_positive_int("--channels"), default=None,
                   help="initial channels C (default: 16 for nb201, 36 for darts)")
    i.add_argument("--cells", type=_positive_int("--cells"), default=None,
                   help="nb201: cells per stage N (default 5); darts takes --layers instead")
    i.add_argument("--layers", type=_positive_int("--layers"), default=20,
                   help="darts: cells of the evaluation network")
    i.add_argument("--num-classes", type=_positive_int("--num-classes"), default=10)
    i.add_argument("--benchmark", help="NB201 accuracy table: also print the cell's accuracies")
    i.add_argument("--flops", action="store_true",
                   help="darts: also print the forward pass's FLOPs per image from XLA's cost analysis "
                   "(compiles the network: seconds to a minute)")

    r = sub.add_parser("presets", help="list the named search presets (every search value and "
                       "where it came from)")
    r.add_argument("name", nargs="?", help="one preset (default: all)")
    r.add_argument("--markdown", action="store_true", help="all presets as a Markdown table "
                   "(docs/presets.md is this output)")

    from nasi_jax import train
    train.add_parser(sub)
    return p


def _cmd_info_darts(args) -> int:
    from nasi_jax.spaces import darts
    if args.genotype is None:
        raise ValueError("--space darts needs --genotype \"Genotype(normal=[...], normal_concat=[2, 3, 4, 5], "
                         "reduce=[...], reduce_concat=[2, 3, 4, 5])\" or a published name (DARTS_V2)")
    if args.arch is not None or args.benchmark is not None:
        raise ValueError("--arch and --benchmark are for --space nb201; use --genotype with --space darts")
    if args.cells is not None:
        raise ValueError("--cells is for --space nb201; the DARTS network's size is --layers (cells in "
                         "all, default 20) and --channels (default 36)")
    from nasi_jax import train  # the genotype sources of `nasi train`: text, name, file, search result
    g = train.parse_architecture(genotype=args.genotype).spec
    C = 36 if args.channels is None else args.channels
    kw = dict(channels=C, layers=args.layers, num_classes=args.num_classes)
    params = darts.count_params(g, **kw)
    with_aux = darts.count_params(g, auxiliary=True, **kw)
    print(f"genotype    {darts.genotype_to_str(g)}")
    print(f"params      {params} ({params / 1e6:.6f} M)  [NetworkCIFAR C={C}, {args.layers} cells, "
          f"{args.num_classes} classes; without the auxiliary head, as the literature reports]")
    print(f"with aux    {with_aux} ({with_aux / 1e6:.6f} M)  [auxiliary head included]")
    if args.flops:
        flops = darts.count_flops(g, **kw)
        print(f"FLOPs       {flops / 1e6:.1f} M per 32x32 image, forward, without the auxiliary head "
              f"[XLA cost analysis: a multiply-add counts 2; BN, ReLU and pooling included]")
    return 0


def _cmd_info(args) -> int:
    from nasi_jax import bench
    from nasi_jax.spaces import get_space
    if args.space == "darts":
        return _cmd_info_darts(args)
    space = get_space(args.space)
    if args.arch is None:
        raise ValueError(f"--space {args.space} needs --arch (e.g. --arch \"{space.EXAMPLE_ARCH}\")"
                         if hasattr(space, "EXAMPLE_ARCH") else f"--space {args.space} needs --arch")
    if args.genotype is not None:
        raise ValueError("--genotype is for --space darts; use --arch with --space nb201")
    if args.flops:
        raise ValueError("--flops is for --space darts; nb201's FLOPs are always printed")
    if args.channels is None:
        args.channels = 16
    if args.cells is None:
        args.cells = 5
    ops = space.parse_arch(args.arch)
    table = bench.load_nb201_table(args.benchmark) if args.benchmark else None
    kw = dict(channels=args.channels, cells_per_stage=args.cells, num_classes=args.num_classes)
    params = space.count_params(ops, **kw)
    macs = space.count_flops(ops, **kw)
    print(f"arch        {space.arch_to_str(ops)}")
    print(f"op indices  {list(ops)}")
    print(f"params      {params} ({params / 1e6:.6f} M)  [C={args.channels}, N={args.cells}, "
          f"{args.num_classes} classes]")
    print(f"FLOPs       {macs / 1e6:.3f} M multiply-adds per 32x32 image (convolutions + classifier; "
          f"the NB201 API also counts BN/ReLU/pooling)")
    print(f"degenerate  {space.is_degenerate(ops)}")
    if table is not None:
        r = table.lookup(space.arch_to_str(ops))
        print(f"benchmark   index {r['index']}: " + ", ".join(
            f"{k} {r[k]:.2f}" for k in bench.METRICS))
    return 0


def _check_writable(path: str) -> None:
    """Create the output folder and prove it is writable, before any long computation."""
    if os.path.isdir(path):
        raise ValueError(f"--output {path!r} is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-"):
            pass
    except OSError as e:
        raise ValueError(f"cannot write --output {path!r}: {e.strerror or e}") from None


def _search_config(args):
    """The SearchConfig of ``nasi search``'s arguments: the preset's values, flags override."""
    from nasi_jax import search
    given = dict(space=args.space, preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                 mu=args.mu, nu=args.nu, nu_mode=args.nu_mode, tau=args.tau, readout=args.readout,
                 hard=None if args.soft is None else not args.soft, data=args.data,
                 channels=args.channels, cells_per_stage=args.cells, image_size=args.image_size,
                 init_scheme=args.init_scheme, bn_mode=args.bn_mode)
    return search.SearchConfig(**given, conv_impl=args.conv_impl, step_impl=args.step_impl,
                               grad_mode=args.grad_mode, seed_batching=args.seed_batching).validate()


def _seed_row(space_name, space, res, k, table):
    """One seed's result: the cell, its size, its history, and its benchmark entry."""
    seed, arch, ops = res.seeds[k], res.arch_strs[k], res.ops[k]
    h = {name: res.history[name][k] for name in ("s", "R", "nu", "grad_norm")}
    row = {"seed": seed, "arch": arch, "ops": ops.tolist()}
    if space_name == "darts":
        # The literature's size: NetworkCIFAR, C=36, 20 cells, without the auxiliary head.
        row["params_eval_network"] = space.count_params(arch, channels=36, layers=20)
        row["params_M"] = row["params_eval_network"] / 1e6
    else:  # NB201's evaluation network (C=16, N=5), the one the benchmark trained
        row["degenerate"] = bool(space.is_degenerate(ops))
        row["params_M"] = space.count_params(ops) / 1e6
        row["flops_M"] = space.count_flops(ops) / 1e6
    row |= {"alpha_star": res.alpha_star[k].round(6).tolist(),
            "mean_trace_estimate": float(h["s"].mean()),
            "penalty_active_frac": float(np.mean(h["s"] > h["nu"])),
            "history": {name: [float(v) for v in vals] for name, vals in h.items()}}
    if table is not None:
        from nasi_jax import bench
        try:
            row["benchmark"] = table.lookup(arch) | {"rank_cifar10_test": table.rank(arch),
                                                     "table_rows": len(table)}
        except bench.BenchmarkError as e:  # a partial table: keep the search result
            row["benchmark"] = None
            print(f"[nasi] warning: seed {seed}: {e}", file=sys.stderr)
    return row


def _cmd_search(args, argv: Sequence[str]) -> int:
    from nasi_jax import bench, data, search
    from nasi_jax.spaces import get_space

    if args.space == "darts" and args.benchmark:
        raise ValueError("--benchmark is an NB201 accuracy table; the DARTS space has no benchmark "
                         "table: train the genotype with `nasi train --genotype ...`")
    cfg = _search_config(args)
    devices = _setup_scale(args)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    search.check_seeds(seeds)
    # Fail fast: everything that can be checked is checked before compiling.
    table = bench.load_nb201_table(args.benchmark) if args.benchmark else None
    if args.output:
        _check_writable(args.output)
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
    res = search.run_search(cfg, seeds, images=images, labels=labels, progress=progress,
                            devices=devices, memory_budget=args.memory_budget)
    wall = time.perf_counter() - t_start

    space = get_space(args.space)
    rows = [_seed_row(args.space, space, res, k, table) for k in range(len(res.seeds))]
    for row in rows:
        if row["penalty_active_frac"] > 0.5 and cfg.mu > 1:
            print(f"[nasi] warning: seed {row['seed']}: s > nu at {row['penalty_active_frac']:.0%} of the "
                  f"steps; with mu > 1 the penalised objective then favours LOWER traces. Mean s was "
                  f"{row['mean_trace_estimate']:.3g}; consider --nu above it or --nu-mode adaptive.",
                  file=sys.stderr)
    found = [r["benchmark"] for r in rows if r.get("benchmark")]
    summary = bench.summarize_lookups(found) if found else None
    print(bench.format_table(rows, summary))
    if table is None and args.space == "nb201":
        print("accuracies: add --benchmark DATA/nb201/nb201_accuracies.csv (NAS-Bench-201's table, "
              "docs/benchmark_table.md), or look a cell up with: nasi info --space nb201 --arch 'ARCH' "
              "--benchmark DATA/nb201/nb201_accuracies.csv")
    elif args.space == "darts":
        print("accuracy: train a genotype with nasi train --genotype RESULT.json#SEED (docs/darts.md)")
    per_step = res.run_time_s / (len(seeds) * cfg.steps)
    print(f"wall time {wall:.1f}s (compile {res.compile_time_s:.1f}s, search {res.run_time_s:.1f}s, "
          f"{per_step:.3f}s per step per seed)")
    import jax
    if args.output and jax.process_index() == 0:  # several hosts: process 0 writes
        result = {
            "command": "nasi " + " ".join(shlex.quote(a) for a in argv),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": dataclasses.asdict(res.config) | {"data_dir": args.data_dir, "benchmark": args.benchmark,
                                                  "devices": len(devices) if devices else 1,
                                                  "data_source": args.data_source,
                                                  "split_file": args.split_file,
                                                  "loop_used": res.loop},
            "preset": res.config.preset_record(),
            "versions": versions(),
            "seeds": rows,
            "summary": summary,
            "wall_time_s": wall,
            "compile_time_s": res.compile_time_s,
            "search_time_s": res.run_time_s,
            "per_step_s": per_step,
        }
        write_json_atomic(args.output, result)
        print(f"wrote {args.output}")
    return 0


def _cmd_presets(args) -> int:
    from nasi_jax import presets
    if args.markdown:
        print(presets.markdown_table())
        return 0
    names = [args.name] if args.name else list(presets.PRESETS)
    for n in names:
        presets.get_preset(n)
    print("\n\n".join(presets.describe(n) for n in names))
    return 0


def _cmd_score(args, argv: Sequence[str]) -> int:
    from nasi_jax import bench, data, score
    cfg = score.ScoreConfig(space=args.space, proxy=args.proxy, batch_size=args.batch_size,
                            data=args.data, channels=args.channels,
                            cells_per_stage=args.cells_per_stage, image_size=args.image_size,
                            init_scheme=args.init_scheme, bn_mode=args.bn_mode,
                            conv_impl=args.conv_impl, chunk_size=args.chunk_size,
                            mu=args.mu, nu=args.nu).validate()
    from nasi_jax.search import check_seeds
    check_seeds([args.seed])
    table = bench.load_nb201_table(args.benchmark) if args.benchmark else None
    ops, index, kind = score.parse_cells(args.cells, seed=args.seed, table=table)
    _check_writable(args.output)
    devices = _setup_scale(args)
    images, labels = data.load_data_for_mode(args.data, args.data_dir, source=args.data_source,
                                             split_file=args.split_file)
    t0 = time.perf_counter()
    extra = {"command": "nasi " + " ".join(shlex.quote(a) for a in argv),
             "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "cells_spec": args.cells, "benchmark": args.benchmark, "data_dir": args.data_dir}
    if not args.no_progress:
        print(f"[nasi score] {len(ops)} cells, proxy {cfg.proxy}, batch {cfg.batch_size}, data "
              f"{cfg.data}, seed {args.seed}; compiling...", file=sys.stderr)
    scores = score.score_cells(cfg, ops, args.seed, output=args.output, index=index,
                               index_kind=kind, images=images, labels=labels,
                               progress=not args.no_progress, workers=args.workers,
                               devices=devices, extra_meta=extra,
                               memory_budget=args.memory_budget)
    wall = time.perf_counter() - t0
    print(f"scored {len(scores)} cells into {args.output} in {wall:.1f}s "
          f"({cfg.proxy}: min {np.min(scores):.4g}, median {np.median(scores):.4g}, max {np.max(scores):.4g})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "presets":
            return _cmd_presets(args)
        if args.command == "score":
            return _cmd_score(args, argv)
        if args.command == "train":
            from nasi_jax import train
            return train.run_cli(args, argv)
        if args.command == "bench":
            from nasi_jax import perf
            return perf.run(quick=args.quick, output=args.output, only=args.only)
        return _cmd_search(args, argv)
    except (ValueError, OSError, FloatingPointError) as e:
        # our errors (ArchError, DataError, BenchmarkError, NonFiniteScoreError, bad settings)
        # subclass ValueError / FloatingPointError
        print(f"nasi {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # XLA failures (e.g. out of memory) as one line, not a traceback
        import jax
        if not isinstance(e, jax.errors.JaxRuntimeError):
            raise
        print(f"nasi {args.command}: error: XLA failed ({str(e).splitlines()[0]}); if memory ran "
              f"out, lower --batch-size or --channels", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasi: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
