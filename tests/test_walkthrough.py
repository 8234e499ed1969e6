"""notebooks/walkthrough.ipynb runs from top to bottom, briefly, without writing into the repo."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
CELL_TIMEOUT_SECONDS = 600  # a whole training is one cell; a busy CI machine is slow

pytestmark = pytest.mark.slow  # starts a kernel and trains


def test_walkthrough_notebook_runs_without_errors(tmp_path, mnist_dir, monkeypatch):
    before = NOTEBOOK.read_bytes()
    monkeypatch.setenv("DIGITLAB_WALKTHROUGH_EPOCHS", "1")
    monkeypatch.setenv("DIGITLAB_WALKTHROUGH_SUBSET", "2000")
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_dir))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folders land here
    monkeypatch.delenv("MPLBACKEND")  # conftest's Agg; the kernel draws inline by default
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert errors == []
    (runs,) = tmp_path.glob("digitlab-walkthrough-*")
    assert {p.name for p in runs.iterdir()} >= {"seed", "default", "default.onnx"}
    assert NOTEBOOK.read_bytes() == before
