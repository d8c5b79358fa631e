"""The package's shape, checked from its source: layers, no cycles, no space branches, small modules.

docs/architecture.md draws the layers; these tests keep the code to it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "nasi_jax"
MAX_LINES = 600
SPACE_NAMES = {"nb201", "darts"}
MAX_SPACE_COMPARISONS = 2  # outside spaces/ and cli/


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(current: str, node: ast.AST, is_pkg: bool) -> list[str]:
    """nasi_jax modules an import statement names (``from a import b``: ``a.b`` if a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = current.split(".") if is_pkg else current.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [n for n in names if n.split(".")[0] == "nasi_jax" and n in MODULES]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(_resolve(name, node, path.name == "__init__.py"))
        graph[name] = deps - {name}
    return graph


def _is_alias(path: Path) -> bool:
    """A thin alias module of an old import path (``sys.modules[__name__] = ...``)."""
    return "sys.modules[__name__]" in path.read_text()


def test_no_import_cycle():
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is not a cycle between modules
    edges = {m: {d for d in deps if not (m != d and d.startswith(m + "."))} for m, deps in graph.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_no_library_module_imports_the_cli():
    offenders = [m for m, deps in _graph().items()
                 if not m.startswith("nasi_jax.cli") and any(d.startswith("nasi_jax.cli") for d in deps)]
    assert offenders == []


def test_layers_point_down():
    """spaces/, core/, data/, records, presets, compilation_cache and hugepages never import search, scoring, train or the CLI."""
    low = ("nasi_jax.core", "nasi_jax.spaces", "nasi_jax.data", "nasi_jax.records", "nasi_jax.presets",
           "nasi_jax.compilation_cache", "nasi_jax.hugepages")
    high = ("nasi_jax.search", "nasi_jax.scoring", "nasi_jax.train", "nasi_jax.cli", "nasi_jax.perf")
    bad = {m: sorted(d for d in deps if d.startswith(high)) for m, deps in _graph().items()
           if m.startswith(low) and not _is_alias(MODULES[m])}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_module_over_the_size_limit():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: {big}"


def test_space_names_are_not_branched_on_outside_spaces_and_cli():
    found = []
    for name, path in MODULES.items():
        if name.startswith(("nasi_jax.spaces", "nasi_jax.cli")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [n.value for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
                if SPACE_NAMES & set(c for c in consts if isinstance(c, str)):
                    found.append(f"{name}:{node.lineno}")
    assert len(found) <= MAX_SPACE_COMPARISONS, found


def test_public_api_at_the_top():
    import nasi_jax
    from nasi_jax import SearchConfig, run_search, replay, score_cells  # noqa: F401
    for name in nasi_jax.__all__:
        assert getattr(nasi_jax, name) is not None
        # no top-level name shadows a subpackage or module of the package
        assert f"nasi_jax.{name}" not in MODULES, name
    assert nasi_jax.train_model.__module__.startswith("nasi_jax.train")


def test_old_import_paths_are_the_moved_modules():
    from nasi_jax import bench, conv, memory, nb201_table, ntk, objective, proxies, relax, score, staged
    from nasi_jax.core import conv as c_conv, memory as c_memory, ntk as c_ntk, objective as c_obj, relax as c_relax
    from nasi_jax.scoring import proxies as s_proxies, scorer
    from nasi_jax.search import staged as s_staged
    assert (bench, conv, memory, ntk, objective, relax) == (nb201_table, c_conv, c_memory, c_ntk, c_obj, c_relax)
    assert (proxies, score, staged) == (s_proxies, scorer, s_staged)


def test_help_does_not_import_jax():
    code = ("import sys\nfrom nasi_jax import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
