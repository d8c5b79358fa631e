"""What sets the scale of s on the DARTS supernet: one factor at a time (issue 18, item 2).

    python experiments/darts_s_scale.py --output docs/runs/darts_s_scale.json

``s(A) = ||grad_theta (1/b) sum_i CE(f(x_i; theta_0, A), y_i)||^2`` (eq. 12) is what the
ceiling ``nu`` is compared with, so ``nu = 100`` means something only against the scale of
``s``. This script measures ``s`` at ``theta_0`` on the first ``--samples`` steps of a search
(the step's Gumbel sample ``A_t`` and batch ``D_t``, from the seed's loop key exactly as
:func:`nasi_jax.search.algorithm.sample_step_inputs` draws them) for a baseline and for
variants that each change one factor:

* baseline: the search's setting (C = 16, 8 cells, PyTorch initialisation, cell BatchNorms
  without affine parameters as in DARTS' supernet, batch statistics, b = 64, Gaussian inputs
  and random labels: ``--data random``);
* inputs: CIFAR-10 images with random labels (``random-labels``) and with their labels
  (``real``), from NB201's 25 000-image train half;
* initialisation: ``flax`` (LeCun normal, zero bias) instead of PyTorch's;
* cell BatchNorm: affine (``DartsSupernet(cell_affine=True)``: scale 1, bias 0, in theta);
* BatchNorm statistics: the initial running averages (eval mode) instead of the batch's;
* number of cells: 5 and 11 (``cells_per_stage`` 1 and 3) instead of 8;
* batch size: 16 and 32 (and 128 with ``--with-b128``) instead of 64.

``s`` is taken stage by stage (:func:`nasi_jax.search.staged.chain_trace`: the search's own
programs, forward and one reverse pass; no program larger than one mixed edge is compiled).
The same ``A_t`` in every variant (the seed's loop key does not depend on the network); the
batch differs only where its size or mode does. Per variant: ``s`` per sample, quantiles,
the fraction above ``nu = 100`` and the median relative to the baseline's. Results are
written after each variant (atomically) and a rerun skips the variants already in the file
for the same settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from _common import data_root, run_record, write_result  # noqa: E402  (experiments/ is on sys.path)

from nasi_jax import search
from nasi_jax.core import relax
from nasi_jax.data import load_data_for_mode
from nasi_jax.search import staged
from nasi_jax.spaces.darts import stages as darts_stages
from nasi_jax.spaces.darts.networks import DartsSupernet

BASE = dict(data="random", init_scheme="pytorch", cell_affine=False, train=True, cells_per_stage=2,
            batch_size=64)
VARIANTS = {
    "baseline": {},
    "inputs: CIFAR-10, random labels": dict(data="random-labels"),
    "inputs: CIFAR-10, true labels": dict(data="real"),
    "init: flax (LeCun normal)": dict(init_scheme="flax"),
    "cell BN: affine": dict(cell_affine=True),
    "BN: running statistics (eval)": dict(train=False),
    "cells: 5": dict(cells_per_stage=1),
    "cells: 11": dict(cells_per_stage=3),
    "batch: 16": dict(batch_size=16),
    "batch: 32": dict(batch_size=32),
}
NU = 100.0


def stats(s) -> dict:
    """Quantiles of ``s`` over the samples, the fraction above ``NU``."""
    s = np.asarray(s, np.float64)
    qs = (0.0, 0.25, 0.5, 0.75, 1.0)
    return {"mean": float(s.mean()), **{f"q{int(q * 100):02d}": float(v) for q, v in zip(qs, np.quantile(s, qs))},
            "frac_above_nu": float(np.mean(s > NU))}


def measure(v: dict, samples: int, seed: int, data: dict) -> dict:
    """``s(A_t)`` at ``theta_0`` for ``t < samples`` under the settings ``v``."""
    cfg = search.SearchConfig(space="darts", preset="paper", batch_size=v["batch_size"], data=v["data"],
                              init_scheme=v["init_scheme"], cells_per_stage=v["cells_per_stage"]).validate()
    net = DartsSupernet(channels=cfg.channels, layers=3 * cfg.cells_per_stage + 2, num_classes=cfg.num_classes,
                        init_scheme=cfg.init_scheme, conv_impl="xla-dense", cell_affine=v["cell_affine"])
    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))  # as search.init_state
    x0 = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
    params = net.init(init_key, x0, jnp.zeros(cfg.alpha_shape), train=False)["params"]
    sts = darts_stages.stages(net, train=v["train"])
    images, labels = data.get(v["data"], (None, None))
    state = types.SimpleNamespace(loop_key=loop_key)  # all sample_step_inputs reads
    out, times = [], []
    for t in range(samples):
        t0 = time.perf_counter()
        x, y, g = search.algorithm.sample_step_inputs(cfg, state, jnp.int32(t), images, labels)
        A = relax.relaxed_sample(jnp.zeros(cfg.alpha_shape, jnp.float32), g, tau=cfg.tau, hard=cfg.hard)
        s = float(staged.chain_trace(sts, params, x, y, A))
        if not np.isfinite(s):
            raise search.NonFiniteScoreError(f"non-finite s at sample {t} with {v}")
        out.append(s)
        times.append(time.perf_counter() - t0)
        print(f"  t={t}: s={s:.4g} ({times[-1]:.1f} s)", file=sys.stderr, flush=True)
    return {"settings": v, "s": out, **stats(out), "seconds": times,
            "num_params": int(sum(p.size for p in jax.tree_util.tree_leaves(params)))}


def table(res: dict) -> str:
    base = res["variants"].get("baseline")
    rows = ["| variant | median s | quartiles | min-max | s > 100 | median / baseline | params |",
            "|---|---|---|---|---|---|---|"]
    for name, r in res["variants"].items():
        rel = f"{r['q50'] / base['q50']:.2f}" if base else "-"
        rows.append(f"| {name} | {r['q50']:.4g} | {r['q25']:.4g}-{r['q75']:.4g} | {r['q00']:.4g}-{r['q100']:.4g} "
                    f"| {r['frac_above_nu']:.0%} | {rel} | {r['num_params']:,} |")
    return "\n".join(rows) + "\n"


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=_positive, default=6, help="steps t = 0..samples-1 of the search (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help="comma-separated variant names (default: all)")
    p.add_argument("--with-b128", action="store_true", help="also b = 128 (twice the baseline's cost)")
    p.add_argument("--data-dir", default=data_root(),
                   help="folder with cifar10_jpeg/ and nb201/cifar-split.txt (default: $NASI_DATA_DIR, else "
                        "../shared/data); needed by the CIFAR-10 variants")
    p.add_argument("--output", default="docs/runs/darts_s_scale.json")
    args = p.parse_args(argv)
    variants = dict(VARIANTS) | ({"batch: 128": dict(batch_size=128)} if args.with_b128 else {})
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        unknown = [n for n in names if n not in variants]
        if unknown:
            p.error(f"unknown variant(s) {unknown}; choose from {list(variants)}")
        variants = {n: variants[n] for n in names}
    setting = {"samples": args.samples, "seed": args.seed, "nu": NU, "base": BASE}
    res = {"variants": {}}
    if os.path.exists(args.output):
        with open(args.output) as f:
            old = json.load(f)
        if old.get("setting") != setting:
            raise SystemExit(f"{args.output} holds a study with other settings ({old.get('setting')}); "
                             "pick another --output (or remove it)")
        res["variants"] = old["variants"]
    data = {}
    for name, change in variants.items():
        if name in res["variants"] and res["variants"][name]["settings"] != BASE | change:
            print(f"[s-scale] {name}: its settings changed; measured again", file=sys.stderr)
            del res["variants"][name]
        if name in res["variants"]:
            print(f"[s-scale] {name}: in {args.output}, skipped", file=sys.stderr)
            continue
        v = BASE | change
        if v["data"] != "random" and v["data"] not in data:
            data[v["data"]] = load_data_for_mode(v["data"], args.data_dir)
        print(f"[s-scale] {name}", file=sys.stderr, flush=True)
        res["variants"][name] = measure(v, args.samples, args.seed, data)
        r = res["variants"][name]
        print(f"[s-scale] {name}: median {r['q50']:.4g}, s > {NU:g} in {r['frac_above_nu']:.0%}", file=sys.stderr)
        result = run_record(__file__, argv, setting=setting, backend=jax.default_backend(),
                            variants=res["variants"],
                            note="s at theta_0 for the first samples steps' A_t and D_t of seed 0's search; "
                                 "one factor changed per variant (BASE). seconds: per sample, the first "
                                 "includes compiling.")
        write_result(args.output, result, table(result))
    print(table(res), end="")
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
