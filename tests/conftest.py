"""Shared test settings: the shared data root comes from NASI_DATA_DIR (``.ci/run`` sets it)."""

import atexit
import os
import pathlib
import shutil
import tempfile

import pytest

# XLA:CPU spends most of a tiny test's time compiling; its LLVM optimisation level and its
# fusion code generator do not change what is computed, only how fast, so the suite compiles
# at -O0 (about 2x faster to compile), without LLVM's expensive passes and with the older
# fusion emitters (the tiny NB201 search step: 12.3 s -> 8.2 s to compile). Set XLA_FLAGS
# yourself to override. Must happen before jax is imported.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                  "--xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("XLA_FLAGS", TEST_XLA_FLAGS)

# Many tests compile the same programs (the tiny supernet's step, the notebooks' searches, the
# subprocess tests). jax's persistent compilation cache, in a directory of this session only
# (removed at exit), turns the repeats into look-ups: test_search.py + test_cli.py measured
# 288 s without it and 229 s with it on 2 cores. Set JAX_COMPILATION_CACHE_DIR to override.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE_DIR = tempfile.mkdtemp(prefix="nasi-jax-test-cache-")
    atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

DATA_DIR = os.environ.get("NASI_DATA_DIR")


def data_path(*parts: str) -> pathlib.Path:
    """Path under the shared data root, or skip the test with the reason."""
    if not DATA_DIR:
        pytest.skip("set NASI_DATA_DIR to the shared data root (e.g. ../shared/data) for real-data tests")
    p = pathlib.Path(DATA_DIR, *parts)
    if not p.exists():
        pytest.skip(f"{p} not found under NASI_DATA_DIR")
    return p


def import_experiment(name: str):
    """The module of ``experiments/<name>.py`` (the scripts are not a package)."""
    import importlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled program after each test module.

    XLA:CPU maps each compiled program's kernels into memory separately: one tiny NB201
    search step added about 2 800 memory mappings to the process (2 800 -> 100 after
    ``jax.clear_caches()``). The suite compiles enough programs to pass Linux's
    ``vm.max_map_count`` (65 530) in one process, after which XLA crashes inside a compile
    (seen as a segfault or an abort in ``test_score.py``). Tests that share a compilation
    sit in one module, or find it in the persistent cache above.
    """
    yield
    import gc

    import jax

    from nasi_jax import scoring, search
    from nasi_jax.search import staged
    from nasi_jax.spaces.darts import stages as darts_stages
    search.clear_cache()
    scoring.clear_cache()
    scoring.scorer._init_fn.cache_clear()
    staged._compiled.cache_clear()
    darts_stages.clear_cache()
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def x64():
    """Float64 for one test (exact comparisons), restored afterwards."""
    import jax
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)
