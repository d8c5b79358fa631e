"""The ``nasi`` command: ``nasi search`` and ``nasi info``.

    nasi search --space nb201 --seeds 5 --steps 100 --data random --output result.json
    nasi search --space nb201 --data real --data-dir DATA/cifar10_jpeg \
        --benchmark DATA/nb201/nb201_accuracies.csv
    nasi info --space nb201 --arch "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

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

DEFAULT_MU = 2.0
DEFAULT_NU = 100.0


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


def write_json_atomic(path: str, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder + ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 -> the usual permissions
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasi", description="NASI: neural architecture search at "
                                "initialisation (JAX/Flax).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run NASI (Algorithm 1) for one or more seeds",
                       description="Run NASI on a search space for S seeds in one compiled call. "
                       "Default: the data-agnostic setting (Gaussian inputs, random labels).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--space", default="nb201", help="search space (available: nb201)")
    s.add_argument("--seeds", type=_positive_int("--seeds"), default=1,
                   help="number of seeds S; seeds FIRST_SEED .. FIRST_SEED+S-1")
    s.add_argument("--first-seed", type=int, default=0, help="first seed")
    s.add_argument("--steps", type=_positive_int("--steps"), default=100, help="T, sampled architectures")
    s.add_argument("--batch-size", type=_positive_int("--batch-size"), default=64, help="b")
    s.add_argument("--mu", type=float, default=DEFAULT_MU, help="penalty coefficient mu (eq. 13)")
    s.add_argument("--nu", type=float, default=DEFAULT_NU, help="ceiling nu (fixed) or its start (adaptive)")
    s.add_argument("--nu-mode", choices=("fixed", "adaptive"), default="fixed",
                   help="NASI-FIX (fixed) or NASI-ADA (adaptive; the project's running-mean rule)")
    s.add_argument("--tau", type=float, default=1.0, help="Gumbel-softmax temperature")
    s.add_argument("--soft", action="store_true", help="soft Gumbel-softmax samples instead of "
                   "hard straight-through ones")
    s.add_argument("--data", choices=("random", "random-labels", "real"), default="random",
                   help="random: N(0,1) inputs + random labels; random-labels: CIFAR-10 images + "
                   "random labels; real: CIFAR-10 with labels (NB201 cifar10-valid train half)")
    s.add_argument("--data-dir", help="folder with cifar10_train_jpeg.npz (or its parent), "
                   "or a tensorflow-datasets data_dir")
    s.add_argument("--data-source", choices=("auto", "local", "tfds"), default="auto")
    s.add_argument("--split-file", help="NB201 cifar-split.txt (default: looked up beside the data)")
    s.add_argument("--benchmark", help="NB201 accuracy table (CSV, see docs/benchmark_table.md)")
    s.add_argument("--output", help="write the result as JSON here (atomically)")
    s.add_argument("--init", dest="init_scheme", choices=("pytorch", "flax"), default="pytorch",
                   help="weight initialisation (pytorch = the paper's scale for nu)")
    s.add_argument("--bn-mode", choices=("train", "eval"), default="train",
                   help="BatchNorm statistics while scoring")
    s.add_argument("--channels", type=_positive_int("--channels"), default=16, help="C of the supernet")
    s.add_argument("--cells", type=_positive_int("--cells"), default=5, help="N, cells per stage")
    s.add_argument("--image-size", type=_positive_int("--image-size"), default=32,
                   help="input size for --data random (CIFAR-10 modes need 32)")
    s.add_argument("--seed-batching", choices=("map", "vmap"), default="map",
                   help="how seeds share the compiled call (map: sequential, fastest on CPU)")
    s.add_argument("--no-progress", action="store_true", help="no progress line on stderr")

    i = sub.add_parser("info", help="parameter count and FLOPs of one architecture",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    i.add_argument("--space", default="nb201")
    i.add_argument("--arch", required=True, help="NB201 architecture string")
    i.add_argument("--channels", type=_positive_int("--channels"), default=16)
    i.add_argument("--cells", type=_positive_int("--cells"), default=5)
    i.add_argument("--num-classes", type=_positive_int("--num-classes"), default=10)
    i.add_argument("--benchmark", help="NB201 accuracy table: also print the cell's accuracies")
    return p


def _cmd_info(args) -> int:
    from nasi_jax import bench
    from nasi_jax.spaces import get_space
    space = get_space(args.space)
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


def _cmd_search(args, argv: Sequence[str]) -> int:
    from nasi_jax import bench, data, search
    from nasi_jax.spaces import get_space

    cfg = search.SearchConfig(
        space=args.space, steps=args.steps, batch_size=args.batch_size, mu=args.mu, nu=args.nu,
        nu_mode=args.nu_mode, tau=args.tau, hard=not args.soft, data=args.data,
        channels=args.channels, cells_per_stage=args.cells, image_size=args.image_size,
        init_scheme=args.init_scheme,
        bn_mode=args.bn_mode, seed_batching=args.seed_batching).validate()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    search.check_seeds(seeds)
    # Fail fast: everything that can be checked is checked before compiling.
    table = bench.load_nb201_table(args.benchmark) if args.benchmark else None
    if args.output:
        _check_writable(args.output)
    if args.data == "random" and (args.data_dir or args.split_file or args.data_source != "auto"):
        print("[nasi] warning: --data random uses no files; --data-dir/--data-source/--split-file "
              "are ignored", file=sys.stderr)
    t_start = time.perf_counter()
    images, labels = data.load_data_for_mode(args.data, args.data_dir, source=args.data_source,
                                             split_file=args.split_file)
    progress = not args.no_progress
    if progress:
        print(f"[nasi] {len(seeds)} seed(s) x {cfg.steps} steps, batch {cfg.batch_size}, data "
              f"{cfg.data}, mu {cfg.mu}, nu {cfg.nu} ({cfg.nu_mode}); compiling...", file=sys.stderr)
    res = search.run_search(cfg, seeds, images=images, labels=labels, progress=progress)
    wall = time.perf_counter() - t_start

    space = get_space(args.space)
    rows = []
    for k, seed in enumerate(res.seeds):
        h = {name: res.history[name][k] for name in ("s", "R", "nu", "grad_norm")}
        active = float(np.mean(h["s"] > h["nu"]))
        row = {"seed": seed, "arch": res.arch_strs[k], "ops": [int(o) for o in res.ops[k]],
               "degenerate": bool(space.is_degenerate(res.ops[k])),
               "alpha_star": res.alpha_star[k].round(6).tolist(),
               "mean_trace_estimate": float(h["s"].mean()),
               "penalty_active_frac": active,
               "history": {name: [float(v) for v in vals] for name, vals in h.items()}}
        if active > 0.5 and cfg.mu > 1:
            print(f"[nasi] warning: seed {seed}: s > nu at {active:.0%} of the steps; with mu > 1 the "
                  f"penalised objective then favours LOWER traces. Mean s was {h['s'].mean():.3g}; "
                  f"consider --nu above it or --nu-mode adaptive.", file=sys.stderr)
        if table is not None:
            try:
                row["benchmark"] = table.lookup(res.arch_strs[k])
            except bench.BenchmarkError as e:  # a partial table: keep the search result
                row["benchmark"] = None
                print(f"[nasi] warning: seed {seed}: {e}", file=sys.stderr)
        rows.append(row)
    found = [r["benchmark"] for r in rows if r.get("benchmark")]
    summary = bench.summarize_lookups(found) if found else None
    print(bench.format_table(rows, summary))
    per_step = res.run_time_s / (len(seeds) * cfg.steps)
    print(f"wall time {wall:.1f}s (compile {res.compile_time_s:.1f}s, search {res.run_time_s:.1f}s, "
          f"{per_step:.3f}s per step per seed)")
    if args.output:
        result = {
            "command": "nasi " + " ".join(shlex.quote(a) for a in argv),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": dataclasses.asdict(cfg) | {"data_dir": args.data_dir, "benchmark": args.benchmark,
                                                  "data_source": args.data_source,
                                                  "split_file": args.split_file,
                                                  "loop_used": res.loop},
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _cmd_info(args)
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
