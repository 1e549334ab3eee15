"""FaceDetection.ipynb, executed headless in a real Jupyter kernel, as a learner runs it.

The notebook runs with its committed settings. Only the documented size knobs (SAMPLE_FRAMES,
PER_IMAGE, EPOCHS) are lowered, the papermill way: a cell placed right after the cell tagged
`parameters`. The camera path gets a video file as CAMERA, as a learner with no webcam would try it.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = Path(__file__).resolve().parents[1] / "FaceDetection.ipynb"
SIZE_KNOBS = "SAMPLE_FRAMES = 24\nPER_IMAGE = 3\nEPOCHS = 1\n"  # 24: not FRAMES_TO_COLLECT (30)
PARAMETERS_LINE = re.compile(r"trained \w+ \(([\d,]+) parameters\)")


def with_settings(settings: str) -> nbformat.NotebookNode:
    """The committed notebook with `settings` in a cell right after the `parameters` cell."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(settings))
    return notebook


def client_for(notebook: nbformat.NotebookNode, root: Path, monkeypatch: pytest.MonkeyPatch) -> NotebookClient:
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):  # the kernel runs headless, as on a server or in CI
        monkeypatch.delenv(key, raising=False)
    # Run All in Jupyter stops at the first error, and so does this client (allow_errors=False).
    return NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(root)}})


def outputs(cell: nbformat.NotebookNode, kind: str) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == kind]


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in outputs(cell, "stream"))


def tagged(notebook: nbformat.NotebookNode, tag: str) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if tag in cell.metadata.get("tags", []))


@pytest.mark.slow
def test_run_all_with_committed_settings_then_edit_the_model_and_retrain(tmp_path, monkeypatch):
    notebook = with_settings(f"ROOT = Path({str(tmp_path)!r})\n{SIZE_KNOBS}")
    client = client_for(notebook, tmp_path, monkeypatch)
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        errors = [(i, o) for i, c in enumerate(notebook.cells) for o in outputs(c, "error")]
        assert not errors, errors
        train_cell = tagged(notebook, "train")
        before = int(PARAMETERS_LINE.search(text_of(notebook.cells[train_cell])).group(1).replace(",", ""))

        # The learner doubles the head width in the model cell, runs it, then runs training again.
        model_cell = notebook.cells[tagged(notebook, "model")]
        assert "Dense(units, activation" in model_cell.source
        model_cell.source = model_cell.source.replace("Dense(units, activation", "Dense(2 * units, activation")
        client.execute_cell(model_cell, tagged(notebook, "model"))
        client.execute_cell(notebook.cells[train_cell], train_cell)
        assert not outputs(notebook.cells[train_cell], "error")
        after = int(PARAMETERS_LINE.search(text_of(notebook.cells[train_cell])).group(1).replace(",", ""))

    assert after > before
    assert len(list((tmp_path / "data" / "images").glob("*.jpg"))) == 24  # SAMPLE_FRAMES (set above), not 30
    assert len(list((tmp_path / "logs" / "captured").glob("*.jpg"))) == 30  # FRAMES_TO_COLLECT as committed
    assert (tmp_path / "facetracker.keras").is_file()
    assert (tmp_path / "logs" / "realtime.mp4").is_file()
    pictures = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) >= 7, "the notebook shows its frames, samples, loss curves and predictions"
    stderr = "".join(o.get("text", "") for c in notebook.cells for o in outputs(c, "stream") if o["name"] == "stderr")
    assert stderr == "", f"a red block the learner would see: {stderr[:2000]}"


@pytest.mark.slow
def test_camera_path_stops_at_the_gate_with_one_sentence(tmp_path, sample_video, monkeypatch):
    notebook = with_settings(f"ROOT = Path({str(tmp_path)!r})\nCAMERA = {str(sample_video)!r}\n"
                             "USE_SAMPLE_DATA = False\nFRAMES_TO_COLLECT = 4\n")
    with pytest.raises(CellExecutionError):
        client_for(notebook, tmp_path, monkeypatch).execute()

    errors = [(i, o) for i, c in enumerate(notebook.cells) for o in outputs(c, "error")]
    assert len(errors) == 1, errors
    index, error = errors[0]
    assert notebook.cells[index].source.startswith("report = annotations.check")
    assert error["ename"] == "FaceTrackerError"
    assert "has a 'face' box yet" in error["evalue"] and "labelme" in error["evalue"]
    assert len(error["traceback"]) == 1, "the learner sees the message, not a traceback"
    assert "needs a display" in text_of(notebook.cells[index - 2])  # the labelme cell said why it did not open
    assert len(list((tmp_path / "data" / "images").glob("*.jpg"))) == 4
    assert not (tmp_path / "data" / "train").exists(), "Run All stopped at the gate"
