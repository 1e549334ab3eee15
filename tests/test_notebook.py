"""FaceDetection.ipynb runs top to bottom, headless, on the sample data, with small settings.

Small settings are injected the way papermill does it: a cell placed right after the cell tagged
`parameters`, so the notebook the learner sees is run as it is.
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "FaceDetection.ipynb"

SMALL_SETTINGS = """
ROOT = Path({root!r})
SAMPLE_FRAMES = 30
FRAMES_TO_COLLECT = 4
PER_IMAGE = 3
EPOCHS = 1
"""


def run_notebook(root: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(SMALL_SETTINGS.format(root=str(root))))
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(root)}})
    client.execute()
    return notebook


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_sample_data(tmp_path):
    notebook = run_notebook(tmp_path)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert len(list((tmp_path / "data" / "images").glob("*.jpg"))) >= 30
    assert list((tmp_path / "aug_data" / "train" / "labels").glob("*.json"))
    assert (tmp_path / "facetracker.keras").is_file()
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 7, "the notebook should show its samples, loss curves and predictions"
