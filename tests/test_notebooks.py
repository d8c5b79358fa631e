"""The notebooks execute top to bottom (tiny settings)."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# What each notebook's outputs must show (beyond running without error).
MARKERS = {"ntk_theory.ipynb": ("exact trace: ours", "slope", "loss after", "bound")}
NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    monkeypatch.setenv("NASI_NOTEBOOK_TINY", "1")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for marker in MARKERS.get(path.name, ("compile", "|")):  # default: a search ran, printed cells
        assert marker in outputs, f"{path.name}: {marker!r} not in the outputs"


def test_there_is_a_notebook():
    assert NOTEBOOKS, "notebooks/ should hold at least the quickstart notebook"
