"""Every notebook is saved with its outputs stripped and runs top to bottom (small-size switch on), showing its
figures inline; the spectrum notebook's interactive explorer is exercised through its callback and its widgets."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
INLINE = "module://matplotlib_inline.backend_inline"

# Appended to the notebook in memory (never saved) and run in the same kernel after its last cell.
EXPLORER_CHECK = """
import numpy as np
from koopscope.spectral import band_reconstructions

fig_a, e_a = explore("all", NAMES, len(GRID) - 1, 0)        # every mode kept: the full decoding
kept, full = (ax.images[0].get_array() for ax in fig_a.axes[:2])
assert np.allclose(kept, full, atol=1e-6), np.abs(kept - full).max()
fig_b, e_b = explore(1, ("low", "high"), 3, 5)               # one level, two bands
kept, full = (ax.images[0].get_array() for ax in fig_b.axes[:2])
assert not np.allclose(kept, full)
assert list(e_b.columns) == NAMES and len(e_b) == model.levels
rec = band_reconstructions(model, seeds=[5], sigmas=[GRID[3]])  # isolated bands: the same energies
assert np.allclose(e_b.to_numpy(), rec["energy"].isel(time=0, sample=0).transpose("level", "band").values)
assert not np.allclose(e_a.to_numpy(), e_b.to_numpy())
# the widgets call explore: changing one recomputes the result
controls = {w.description: w for w in ui.kwargs_widgets}
assert set(controls) == {"level", "bands", "σ", "seed"}
before = ui.result[1]
controls["seed"].value = 11
assert not ui.result[1].equals(before)
controls["bands"].value = ("low", "mid")
controls["level"].value = 0
assert ui.result[1].equals(explore(0, ("low", "mid"), controls["σ"].value, 11)[1])
plt.close("all")
print("explorer ok")
"""
EXTRA = {"explore_spectrum.ipynb": EXPLORER_CHECK}


def _outputs(cell):
    return cell.get("outputs", []) if cell.cell_type == "code" else []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_saved_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"cells {dirty} of {path.name} are saved with outputs or an execution count: strip them"
    assert "matplotlib.use" not in "".join(c.source for c in nb.cells), "a notebook must not switch the backend"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("KOOPSCOPE_NB_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", INLINE)   # what a Jupyter kernel uses by default: figures come back as PNG
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    saved = len(nb.cells)
    if path.name in EXTRA:
        nb.cells.append(nbformat.v4.new_code_cell(EXTRA[path.name]))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in _outputs(c) if o.output_type == "error"]
    assert not errors, [f"{o.ename}: {o.evalue}" for o in errors]
    if path.name in EXTRA:
        assert "explorer ok" in "".join(o.get("text", "") for o in _outputs(nb.cells[saved]))

    # koopscope never switches the backend, so the notebook's figures come back inline
    assert any("image/png" in o.get("data", {}) for c in nb.cells[:saved] for o in _outputs(c)), \
        f"no cell of {path.name} showed a figure as image/png"
