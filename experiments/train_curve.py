"""Accuracy curve of a `nasi train` run: its metrics and result as JSON, and a figure.

    nasi train --genotype docs/runs/darts_search_data_agnostic_fix.txt --dataset cifar10 --epochs 8 \\
        --channels 16 --layers 8 --train-size 10000 --data-dir ../shared/data --workdir runs/train_fix
    python experiments/train_curve.py --workdir runs/train_fix --output docs/runs/darts_train_cpu_data_agnostic_fix.json

Reads ``WORKDIR/metrics.jsonl`` (one line per epoch) and ``WORKDIR/result.json`` (written
when the run completes) and writes ``--output`` (both, with the run record: command, created,
versions) and ``<output stem>.png`` (train and test accuracy per epoch, with the learning rate
on a second axis), each atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from _common import run_record, save_figure, write_result  # experiments/ is on sys.path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="the `nasi train --workdir` of the run")
    p.add_argument("--output", required=True, help="JSON to write; the figure goes beside it (.png)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    metrics_path = os.path.join(args.workdir, "metrics.jsonl")
    result_path = os.path.join(args.workdir, "result.json")
    for path in (metrics_path, result_path):
        if not os.path.isfile(path):
            p.error(f"{path} not found: run `nasi train ... --workdir {args.workdir}` to completion first")
    with open(metrics_path) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    with open(result_path) as f:
        result = json.load(f)
    if not metrics:
        p.error(f"{metrics_path} is empty")
    write_result(args.output, run_record(__file__, argv, workdir=args.workdir, result=result, metrics=metrics))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m["train_acc"] for m in metrics], "o-", label="train (augmented, drop-path)")
    ax.plot(epochs, [m["test_acc"] for m in metrics], "s-", label="CIFAR-10 test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(epochs, [m["lr"] for m in metrics], "k:", label="learning rate")
    ax2.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    cfg = result.get("config", {})
    ax.set_title(args.title or f"C={cfg.get('channels')}, {cfg.get('layers')} cells, "
                 f"{cfg.get('train_size') or 'all'} train images, batch {cfg.get('batch_size')}",
                 fontsize=9)
    fig.tight_layout()
    png = os.path.splitext(args.output)[0] + ".png"
    save_figure(fig, png, dpi=110)
    print(f"wrote {args.output} and {png}")
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
