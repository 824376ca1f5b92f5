"""Every notebook in colabs/ runs top to bottom in a fresh kernel, shrunk by SSLJAX_NOTEBOOK_QUICK=1."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "colabs").glob("*.ipynb"))


def test_every_colab_is_tested():
  assert {p.name for p in NOTEBOOKS} == {"quickstart.ipynb", "mae_reconstructions.ipynb", "augmentations.ipynb"}


# The quickstart trains and evaluates SimCLR's smoke run (1.7 min on 2 cores), the code path of README command 1
# and of tests/test_methods.py's end-to-end runs: slow, so the default run stays within CI's 30 minutes.
SLOW_NOTEBOOKS = ("quickstart",)


@pytest.mark.parametrize(
  "path",
  [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_NOTEBOOKS else p for p in NOTEBOOKS],
  ids=lambda p: p.stem,
)
def test_notebook_runs_headless(path, monkeypatch):
  monkeypatch.setenv("SSLJAX_NOTEBOOK_QUICK", "1")
  notebook = nbformat.read(path, as_version=4)
  client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
  client.execute()
  images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
  assert images, "every notebook shows at least one image"
