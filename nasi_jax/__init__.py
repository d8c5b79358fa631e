"""nasi_jax: NASI (Neural Architecture Search at Initialization, ICLR 2022) in JAX/Flax.

The public API, flat (imported lazily, so ``import nasi_jax`` and ``nasi --help`` stay fast)::

    from nasi_jax import SearchConfig, Execution, run_search, replay      # the search
    from nasi_jax import ScoreConfig, score_cells, parse_cells            # scoring cells
    from nasi_jax import TrainConfig, train_model, parse_architecture     # training
    from nasi_jax import get_space, register_space, Space                 # search spaces
    from nasi_jax import get_preset, PRESETS                              # presets

The layers, bottom to top (imports point down; docs/architecture.md draws them):
``records``, ``hugepages``, ``presets`` and ``core`` (the maths) -> ``data`` and ``spaces`` -> ``search`` and
``scoring`` -> ``train``, ``theory``, ``perf`` -> ``cli``. Internals stay importable by their
module paths (``nasi_jax.search.algorithm``, ...) but are not part of ``__all__``.

Example:
    >>> import nasi_jax
    >>> cfg = nasi_jax.SearchConfig(steps=2, batch_size=4, channels=2, cells_per_stage=1, image_size=8)
    >>> nasi_jax.run_search(cfg, seeds=[0]).ops.shape
    (1, 6)
"""

__version__ = "0.2.0.dev0"

_API = {
    "SearchConfig": "nasi_jax.search", "Execution": "nasi_jax.search", "SearchResult": "nasi_jax.search",
    "run_search": "nasi_jax.search", "replay": "nasi_jax.search", "read_out": "nasi_jax.search",
    "ScoreConfig": "nasi_jax.scoring", "score_cells": "nasi_jax.scoring", "parse_cells": "nasi_jax.scoring",
    "TrainConfig": "nasi_jax.train", "parse_architecture": "nasi_jax.train",
    "get_space": "nasi_jax.spaces", "Space": "nasi_jax.spaces",
    "get_preset": "nasi_jax.presets", "PRESETS": "nasi_jax.presets",
    "load_nb201_table": "nasi_jax.nb201_table", "load_data_for_mode": "nasi_jax.data",
}
_RENAMED = {"train_model": ("nasi_jax.train", "train"), "register_space": ("nasi_jax.spaces", "register"),
            "register_proxy": ("nasi_jax.scoring.proxies", "register")}

__all__ = sorted(_API) + sorted(_RENAMED)


def __getattr__(name):
    import importlib
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'nasi_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
