"""Helpers shared by the experiment scripts: data paths, run records, formatting, cached runs.

Every script in ``experiments/`` (and ``benchmarks/``) imports what it needs from here
(``from _common import ...``; the scripts run as ``python experiments/X.py``, with
``experiments/`` on ``sys.path``):

* **Data paths**: :func:`data_root` (``$NASI_DATA_DIR``, else ``../shared/data`` beside the
  checkout), :func:`data_path` and :func:`add_data_args` (the standard ``--benchmark``,
  ``--data-dir``, ... arguments, with defaults under :func:`data_root`).
* **The run record**: :func:`run_record` builds what every result file carries (the
  ``command`` as run, when it was ``created``, the ``versions``), :func:`write_result` writes
  the JSON and its Markdown beside it, :func:`save_figure` a figure; all atomically, through
  :mod:`nasi_jax.records`.
* **Formatting**: :func:`fmt_ms` (``mean±std`` of a :func:`nasi_jax.nb201_table.summarize`
  summary), :func:`fmt_num`, :func:`md_row` and :func:`md_header` (Markdown tables).
* **Search runs**: :func:`config_record` (a config and its execution as one dict, the layout
  result files used before the two were split), and the cached ``mu = 0`` search
  (:func:`mu0_run`, built on :func:`load_run` / :func:`save_run`).

The mu = 0 search (:func:`mu0_run`) is the raw material of every NB201 table: its history
holds ``s_t`` and ``G_t = grad_alpha s(A_t)``, so :func:`nasi_jax.search.replay` turns it into
the search at any ``(mu, nu)``, NASI-FIX or NASI-ADA, and any ``T`` up to its length.
Runs are cached as ``.npz`` files keyed by the fields that change the history (not by
execution choices such as the loop or the seed batching, which give the same numbers).

This module imports nothing heavy at import time (jax and the search load on first use).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from nasi_jax import records

if TYPE_CHECKING:  # pragma: no cover
    from nasi_jax import search

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The checkout's root (commands are recorded relative to it)."""

# The fields that change a mu = 0 history (mu, nu, nu_mode, xi and the read-out only act in
# the replay; loop / seed batching / step implementation are execution). ``grad_mode`` and
# ``conv_impl`` live in the run's :class:`~nasi_jax.search.Execution`, the others in its
# :class:`~nasi_jax.search.SearchConfig`; the cache key is the same as when all were one config.
HISTORY_FIELDS = ("space", "steps", "batch_size", "tau", "hard", "data", "channels",
                  "cells_per_stage", "num_classes", "image_size", "init_scheme", "bn_mode",
                  "grad_mode", "conv_impl")

# The execution fields in the order the single config held them (before SearchConfig and
# Execution were split): result files and cache metadata keep that layout.
EXECUTION_FIELDS = ("seed_batching", "loop", "grad_mode", "conv_impl", "step_impl")


# ----------------------------------------------------------------------------- data paths

def data_root() -> str:
    """``$NASI_DATA_DIR`` or ``../shared/data`` beside the checkout."""
    return os.environ.get("NASI_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")


def data_path(*parts: str) -> str:
    """A path under :func:`data_root`, e.g. ``data_path("nb201", "nb201_accuracies.csv")``."""
    return os.path.join(data_root(), *parts)


BENCHMARK = ("nb201", "nb201_accuracies.csv")
CIFAR10 = ("cifar10_jpeg",)
NBSZ = ("nb201_zc", "nbsz_proxies_cifar10.csv")


def add_data_args(parser, *, benchmark: bool = True, data_dir: bool = True, nbsz: bool = False):
    """Add the standard data arguments to ``parser`` (defaults under :func:`data_root`):
    ``--benchmark`` (the NB201 accuracy table), ``--data-dir`` (CIFAR-10 images) and, with
    ``nbsz``, ``--nbsz`` (NAS-Bench-Suite-Zero's published scores). Returns ``parser``."""
    def default(parts):
        return f"default: {'/'.join(parts)} in the data folder ($NASI_DATA_DIR, else ../shared/data)"
    if benchmark:
        parser.add_argument("--benchmark", default=data_path(*BENCHMARK),
                            help=f"the NB201 accuracy table ({default(BENCHMARK)})")
    if nbsz:
        parser.add_argument("--nbsz", default=data_path(*NBSZ),
                            help=f"NAS-Bench-Suite-Zero's published scores ({default(NBSZ)})")
    if data_dir:
        parser.add_argument("--data-dir", default=data_path(*CIFAR10),
                            help=f"the CIFAR-10 images ({default(CIFAR10)})")
    return parser


# ----------------------------------------------------------------------------- run records

def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command as run: ``python experiments/X.py ARGS`` (``script``: the script's
    ``__file__``; ``argv``: the arguments ``main`` was given, ``None`` for ``sys.argv[1:]``)."""
    path = os.path.abspath(script)
    rel = os.path.relpath(path, REPO)
    prog = "python " + (rel if not rel.startswith("..") else path)
    return records.command_line(prog, list(sys.argv[1:] if argv is None else argv))


def run_record(script: str, argv: Sequence[str] | None = None, **fields: Any) -> dict[str, Any]:
    """What every result file carries: ``command`` (as run), ``created`` (UTC), then
    ``fields`` in their order, then ``versions`` (:func:`nasi_jax.records.versions`)."""
    return {"command": command(script, argv), "created": records.now_utc(), **fields,
            "versions": records.versions()}


def markdown_path(path: str) -> str:
    """The Markdown file beside a JSON result: ``x.json`` -> ``x.md``."""
    return os.path.splitext(path)[0] + ".md"


def write_result(path: str, result: dict[str, Any] | None = None, markdown: str | None = None) -> None:
    """Write ``result`` as JSON to ``path`` and ``markdown`` (as given) beside it
    (:func:`markdown_path`), each atomically; either may be ``None`` (not written)."""
    if result is not None:
        records.write_json_atomic(path, result)
    if markdown is not None:
        records.write_text_atomic(markdown_path(path), markdown)


def save_figure(fig, path: str, dpi: int = 110) -> None:
    """Save ``fig`` to ``path`` atomically (format from the name) and close it."""
    import matplotlib.pyplot as plt
    try:
        records.save_figure_atomic(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- formatting

def fmt_ms(summary: dict[str, Any], digits: int = 2) -> str:
    """``mean±std`` of a summary (:func:`nasi_jax.nb201_table.summarize`)."""
    return f"{summary['mean']:.{digits}f}±{summary['std']:.{digits}f}"


def fmt_num(v: float | None, digits: int = 3, missing: str = "–") -> str:
    """``v`` with ``digits`` decimals, or ``missing`` for ``None``."""
    return missing if v is None else f"{v:.{digits}f}"


def md_row(cells: Iterable[Any]) -> str:
    """One Markdown table row: ``| a | b |``."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_header(*names: str) -> list[str]:
    """A Markdown table's header and rule: ``["| a | b |", "|---|---|"]``."""
    return [md_row(names), "|" + "---|" * len(names)]


# ----------------------------------------------------------------------------- search runs

def config_record(cfg: "search.SearchConfig", execution: "search.Execution") -> dict[str, Any]:
    """``cfg``'s fields then ``execution``'s, as one dict in the layout of the config before
    the two were split (what result files and cached runs record as ``config``)."""
    return dataclasses.asdict(cfg) | {k: getattr(execution, k) for k in EXECUTION_FIELDS}


def _conv_impl(cfg, execution) -> str:
    """``execution.conv_impl`` made concrete for ``cfg``'s space (``auto``: on this backend)."""
    from nasi_jax.spaces import get_space
    backend = None
    if execution.conv_impl == "auto":
        import jax
        backend = jax.default_backend()
    return get_space(cfg.space).resolve_conv_impl(execution.conv_impl, backend)


def cache_key(cfg: "search.SearchConfig", seeds, data_dir: str | None,
              execution: "search.Execution | None" = None) -> str:
    """The key of a mu = 0 run: :data:`HISTORY_FIELDS` of ``cfg`` and ``execution`` (default
    ``Execution()``; ``conv_impl`` resolved), the seeds and the data folder's name."""
    from nasi_jax import search
    execution = execution or search.Execution()
    exe = {"grad_mode": execution.grad_mode, "conv_impl": _conv_impl(cfg, execution)}
    conf = {k: exe[k] if k in exe else getattr(cfg, k) for k in HISTORY_FIELDS}
    conf["seeds"] = [int(s) for s in seeds]
    conf["data_dir"] = None if cfg.data == "random" else os.path.basename(os.path.normpath(data_dir))
    return hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16]


def load_run(path: str, cfg: "search.SearchConfig", seeds) -> "tuple[search.SearchResult, dict]":
    """A run saved by :func:`save_run` as the :class:`~nasi_jax.search.SearchResult` of ``cfg``
    (the execution that ran it from the file), and the file's metadata."""
    from nasi_jax import search
    z = np.load(path, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    hist = {k[5:]: z[k] for k in z.files if k.startswith("hist_")}
    ran = {f.name: meta["config"][f.name] for f in dataclasses.fields(search.Execution)
           if f.name in meta["config"]}
    res = search.SearchResult(cfg, list(seeds), z["alpha_star"], z["ops"], meta["arch_strs"], hist,
                              meta["compile_time_s"], meta["run_time_s"], search.Execution(**ran))
    return res, meta


def save_run(path: str, res: "search.SearchResult", *, data_dir: str | None) -> None:
    """Save ``res`` (alpha*, ops, the history and its metadata) to ``path`` (``.npz``) atomically."""
    cfg = res.config
    meta = {"config": config_record(cfg, res.execution), "seeds": list(res.seeds),
            "arch_strs": res.arch_strs,
            "data_dir": None if cfg.data == "random" else os.path.abspath(data_dir),
            "compile_time_s": res.compile_time_s, "run_time_s": res.run_time_s, "loop": res.loop}
    records.save_npz_atomic(path, alpha_star=res.alpha_star, ops=res.ops, meta=json.dumps(meta),
                            **{f"hist_{k}": v for k, v in res.history.items()})


def mu0_run(cfg: "search.SearchConfig", seeds, *, data_dir: str | None, cache: str,
            progress: bool = True, execution: "search.Execution | None" = None) -> "search.SearchResult":
    """The ``mu = 0`` search of ``cfg`` over ``seeds`` (run as ``execution``), cached in ``cache``."""
    from nasi_jax import data as data_lib, search
    cfg = dataclasses.replace(cfg, mu=0.0)
    path = os.path.join(cache, f"{cfg.data}_b{cfg.batch_size}_t{cfg.steps}_"
                               f"{cache_key(cfg, seeds, data_dir, execution)}.npz")
    if os.path.exists(path):
        return load_run(path, cfg, seeds)[0]
    images = labels = None
    if cfg.data != "random":
        images, labels = data_lib.load_data_for_mode(cfg.data, data_dir)
    print(f"[mu0] {cfg.data} N={cfg.cells_per_stage} b={cfg.batch_size} tau={cfg.tau} "
          f"T={cfg.steps} seeds {seeds[0]}..{seeds[-1]} -> {path}", file=sys.stderr, flush=True)
    res = search.run_search(cfg, seeds, execution=execution, images=images, labels=labels,
                            progress=progress)
    save_run(path, res, data_dir=data_dir)
    return res
