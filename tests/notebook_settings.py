"""The committed FaceDetection.ipynb with settings placed the papermill way, for the notebook tests and
benchmarks/bench_notebook.py: a cell right after the cell tagged `parameters`, so only those values change."""

from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "FaceDetection.ipynb"


def with_settings(settings: str) -> nbformat.NotebookNode:
    """The committed notebook with `settings` in a cell right after the `parameters` cell."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(settings))
    return notebook
