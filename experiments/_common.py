"""Helpers shared by the experiment scripts: data paths, the cached mu = 0 search, records.

The mu = 0 search (:func:`mu0_run`) is the raw material of every NB201 table: its history
holds ``s_t`` and ``G_t = grad_alpha s(A_t)``, so :func:`nasi_jax.search.replay` turns it into
the search at any ``(mu, nu)``, NASI-FIX or NASI-ADA, and any ``T`` up to its length.
Runs are cached as ``.npz`` files keyed by the fields that change the history (not by
execution choices such as the loop or the seed batching, which give the same numbers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys

import numpy as np

from nasi_jax import data as data_lib, search

# The fields of SearchConfig that change a mu = 0 history (mu, nu, nu_mode, xi and the
# read-out only act in the replay; loop / seed batching / step implementation are execution).
HISTORY_FIELDS = ("space", "steps", "batch_size", "tau", "hard", "data", "channels",
                  "cells_per_stage", "num_classes", "image_size", "init_scheme", "bn_mode",
                  "grad_mode", "conv_impl")


def data_root() -> str:
    """``$NASI_DATA_DIR`` or ``../shared/data`` beside the checkout."""
    return os.environ.get("NASI_DATA_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def cache_key(cfg: search.SearchConfig, seeds, data_dir: str | None) -> str:
    conf = {k: getattr(cfg, k) for k in HISTORY_FIELDS}
    conf["seeds"] = [int(s) for s in seeds]
    conf["data_dir"] = None if cfg.data == "random" else os.path.basename(os.path.normpath(data_dir))
    return hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16]


def mu0_run(cfg: search.SearchConfig, seeds, *, data_dir: str | None, cache: str,
            progress: bool = True) -> search.SearchResult:
    """The ``mu = 0`` search of ``cfg`` over ``seeds``, cached in ``cache``."""
    cfg = dataclasses.replace(cfg, mu=0.0)
    path = os.path.join(cache, f"{cfg.data}_b{cfg.batch_size}_t{cfg.steps}_"
                               f"{cache_key(cfg, seeds, data_dir)}.npz")
    if os.path.exists(path):
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        hist = {k[5:]: z[k] for k in z.files if k.startswith("hist_")}
        used = dataclasses.replace(cfg, **{k: meta["config"][k] for k in ("loop", "seed_batching")})
        return search.SearchResult(used, list(seeds), z["alpha_star"], z["ops"], meta["arch_strs"],
                                   hist, meta["compile_time_s"], meta["run_time_s"], meta["loop"])
    images = labels = None
    if cfg.data != "random":
        images, labels = data_lib.load_data_for_mode(cfg.data, data_dir)
    print(f"[mu0] {cfg.data} N={cfg.cells_per_stage} b={cfg.batch_size} tau={cfg.tau} "
          f"T={cfg.steps} seeds {seeds[0]}..{seeds[-1]} -> {path}", file=sys.stderr, flush=True)
    res = search.run_search(cfg, seeds, images=images, labels=labels, progress=progress)
    os.makedirs(cache, exist_ok=True)
    meta = {"config": dataclasses.asdict(res.config), "seeds": list(seeds), "arch_strs": res.arch_strs,
            "data_dir": None if cfg.data == "random" else os.path.abspath(data_dir),
            "compile_time_s": res.compile_time_s, "run_time_s": res.run_time_s, "loop": res.loop}
    tmp = path[:-4] + ".tmp.npz"
    np.savez(tmp, alpha_star=res.alpha_star, ops=res.ops, meta=json.dumps(meta),
             **{f"hist_{k}": v for k, v in res.history.items()})
    os.replace(tmp, path)
    return res
