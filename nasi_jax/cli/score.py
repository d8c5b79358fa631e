"""``nasi score``: a training-free proxy for many cells, one compilation, a resumable CSV."""

from __future__ import annotations

import sys
import time
from typing import Sequence

import numpy as np

from nasi_jax.cli._common import DefaultsFormatter, add_scale_args, check_writable, positive_int, setup_scale

__all__ = ["add_parser", "run"]


def add_parser(sub):
    from nasi_jax.scoring import ScoreConfig, proxies
    c = sub.add_parser("score", help="score the cells of a space with a training-free proxy (one compilation)",
                       description="Score cells with the supernet's weights theta_0 and one batch, "
                       "both from --seed; rows are streamed to --output (CSV: index,arch_str,<proxy>) "
                       "and a run that was stopped resumes from it.",
                       formatter_class=DefaultsFormatter)
    c.add_argument("--space", default=ScoreConfig.space, help="search space (a scorable one: nb201)")
    from nasi_jax.scoring.ensemble import ENSEMBLES
    c.add_argument("--proxy", default=ScoreConfig.proxy, metavar="NAME",
                   help="training-free score, one of: " + ", ".join(
                       f"{name} ({'+' if sign > 0 else '-'})" for name, sign, _ in proxies.describe())
                   + " (+: larger predicts higher accuracy, -: smaller does; papers and maths in "
                   "nasi_jax/scoring/proxies.py); or an aggregate of several (+), ranked among the "
                   "cells scored together: " + ", ".join(ENSEMBLES) + " (nasi_jax/scoring/ensemble.py; "
                   "each component streams to OUTPUT_STEM.<proxy>.csv and resumes)")
    c.add_argument("--cells", default="all", help="'all', a number N (a seeded sample of N distinct "
                   "cells) or a file of cells in the space's text form (NB201 arch strings)")
    c.add_argument("--seed", type=int, default=0, help="seed of theta_0, the batch and the sample")
    c.add_argument("--output", required=True, help="CSV to write (resumed if it exists)")
    c.add_argument("--batch-size", type=positive_int("--batch-size"), default=ScoreConfig.batch_size,
                   help="examples in the batch shared by all cells")
    c.add_argument("--data", choices=("random", "random-labels", "real"), default=ScoreConfig.data)
    c.add_argument("--data-dir", help="CIFAR-10 folder for --data real/random-labels")
    c.add_argument("--data-source", choices=("auto", "local", "binary", "tfds"), default="auto")
    c.add_argument("--split-file", help="NB201 cifar-split.txt (default: looked up beside the data)")
    c.add_argument("--benchmark", help="NB201 accuracy table: the index column is then the NB201 "
                   "index and 'all' follows its order (else the index is the cell code)")
    c.add_argument("--init", dest="init_scheme", choices=("pytorch", "flax", "kaiming"),
                   default=ScoreConfig.init_scheme, help="weight initialisation (kaiming: AZ-NAS's N(0, 2/fan_in))")
    c.add_argument("--bn-mode", choices=("train", "eval"), default=ScoreConfig.bn_mode)
    c.add_argument("--channels", type=positive_int("--channels"), default=ScoreConfig.channels)
    c.add_argument("--cells-per-stage", type=positive_int("--cells-per-stage"),
                   default=ScoreConfig.cells_per_stage)
    c.add_argument("--image-size", type=positive_int("--image-size"), default=ScoreConfig.image_size)
    c.add_argument("--chunk-size", type=positive_int("--chunk-size"), default=None,
                   help="Jacobian rows per VJP batch for --proxy ntk_trace")
    c.add_argument("--mu", type=float, default=ScoreConfig.mu,
                   help="penalty coefficient mu of --proxy nasi_objective (eq. 13; the paper preset's)")
    c.add_argument("--nu", type=float, default=ScoreConfig.nu,
                   help="ceiling nu of --proxy nasi_objective (the paper preset's)")
    c.add_argument("--conv-impl", choices=("auto", "xla", "loop-safe"), default="auto")
    c.add_argument("--workers", type=positive_int("--workers"), default=2, help="cells in flight")
    add_scale_args(c, "cells")
    c.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return c


def run(args, argv: Sequence[str]) -> int:
    from nasi_jax import data, nb201_table, records, scoring
    from nasi_jax.scoring import ensemble
    from nasi_jax.search import check_seeds
    ens = ensemble.ENSEMBLES.get(args.proxy)
    # an aggregate's shared settings are checked with its first component
    proxy = ens.components[0].proxy if ens else args.proxy
    cfg = scoring.ScoreConfig(space=args.space, proxy=proxy, batch_size=args.batch_size,
                              data=args.data, channels=args.channels,
                              cells_per_stage=args.cells_per_stage, image_size=args.image_size,
                              init_scheme=args.init_scheme, bn_mode=args.bn_mode,
                              conv_impl=args.conv_impl, chunk_size=args.chunk_size,
                              mu=args.mu, nu=args.nu).validate()
    check_seeds([args.seed])
    table = nb201_table.load_nb201_table(args.benchmark) if args.benchmark else None
    ops, index, kind = scoring.parse_cells(args.cells, seed=args.seed, table=table, space=cfg.space)
    check_writable(args.output)
    devices = setup_scale(args)
    images, labels = data.load_data_for_mode(args.data, args.data_dir, source=args.data_source,
                                             split_file=args.split_file)
    t0 = time.perf_counter()
    extra = {"command": records.command_line("nasi", argv), "created": records.now_utc(),
             "cells_spec": args.cells, "benchmark": args.benchmark, "data_dir": args.data_dir}
    if not args.no_progress:
        print(f"[nasi score] {len(ops)} cells, proxy {cfg.proxy}, batch {cfg.batch_size}, data "
              f"{cfg.data}, seed {args.seed}; compiling...", file=sys.stderr)
    common = dict(index=index, index_kind=kind, progress=not args.no_progress, workers=args.workers,
                  devices=devices, extra_meta=extra, memory_budget=args.memory_budget)
    if ens:
        if images is None and any(c.settings.get("data", args.data) != "random" for c in ens.components):
            images, labels = data.load_data_for_mode("real", args.data_dir, source=args.data_source,
                                                     split_file=args.split_file)
        scores, _ = ensemble.score_ensemble(cfg, ops, args.seed, name=args.proxy, output=args.output,
                                            images=images, labels=labels, **common)
    else:
        scores = scoring.score_cells(cfg, ops, args.seed, output=args.output, images=images,
                                     labels=labels, **common)
    wall = time.perf_counter() - t0
    print(f"scored {len(scores)} cells into {args.output} in {wall:.1f}s "
          f"({args.proxy}: min {np.min(scores):.4g}, median {np.median(scores):.4g}, max {np.max(scores):.4g})")
    return 0
