"""FaceDetection.ipynb, executed headless in a real Jupyter kernel, as a learner runs it.

The notebook runs with its committed settings. Only the documented size knobs (SAMPLE_FRAMES,
PER_IMAGE, EPOCHS) are lowered, the papermill way: a cell placed right after the cell tagged
`parameters`. The camera path gets a video file as CAMERA, as a learner with no webcam would try it.

Run All happens once per module (`run_all`); the tests then read its outputs, and some go on in its
live kernel as a learner would (edit a cell, run it again). `test_jupyterlab_shows_the_executed_notebook`
opens the executed notebook in a real JupyterLab in headless Chromium.
"""

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from notebook_settings import NOTEBOOK, with_settings

import facetracker
from facetracker.config import Paths
from facetracker.sample_data import write_sample_video

SIZE_KNOBS = "SAMPLE_FRAMES = 24\nPER_IMAGE = 3\nEPOCHS = 1\n"  # 24: not FRAMES_TO_COLLECT (30)
PARAMETERS_LINE = re.compile(r"trained \w+ \(([\d,]+) parameters\)")
BLUE = (255, 0, 0)  # BGR: the loop cell's committed box colour
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def headless_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):  # the kernel runs headless, as on a server or in CI
        monkeypatch.delenv(key, raising=False)


def client_for(notebook: nbformat.NotebookNode, root: Path, monkeypatch: pytest.MonkeyPatch) -> NotebookClient:
    headless_env(monkeypatch)
    # Run All in Jupyter stops at the first error, and so does this client (allow_errors=False). Widget state
    # is stored as Jupyter stores it on save, so JupyterLab draws the progress bars of a saved notebook.
    return NotebookClient(notebook, timeout=900, kernel_name="python3", store_widget_state=True,
                          resources={"metadata": {"path": str(root)}})


def outputs(cell: nbformat.NotebookNode, kind: str) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == kind]


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in outputs(cell, "stream"))


def tagged(notebook: nbformat.NotebookNode, tag: str) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if tag in cell.metadata.get("tags", []))


def run_code(client: NotebookClient, source: str) -> nbformat.NotebookNode:
    """Run `source` as one more cell in the live kernel; returns the executed cell."""
    cell = nbformat.v4.new_code_cell(source)
    client.nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(client.nb.cells) - 1)
    finally:
        client.nb.cells.pop()
    return cell


def decoded_images(cell: nbformat.NotebookNode, mime: str) -> list[np.ndarray]:
    """The images of a cell's outputs of type `mime`, decoded to BGR arrays."""
    import base64

    return [cv2.imdecode(np.frombuffer(base64.b64decode(o["data"][mime]), np.uint8), cv2.IMREAD_COLOR)
            for o in cell.get("outputs", []) if mime in o.get("data", {})]


def box_pixels(image: np.ndarray, bgr: tuple[int, int, int]) -> int:
    """Pixels close to the colour `bgr` (JPEG shifts colours a little)."""
    return int((np.abs(image.astype(np.int16) - np.array(bgr, np.int16)).max(axis=2) < 50).sum())


@pytest.fixture(scope="module")
def run_all(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NotebookClient, Path, Path]]:
    """Run All with the committed settings (size knobs lowered); yields (client with its live kernel, root,
    the executed notebook as saved right after Run All)."""
    root = tmp_path_factory.mktemp("notebook")
    notebook = with_settings(f"ROOT = Path({str(root)!r})\n{SIZE_KNOBS}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        client = client_for(notebook, root, monkeypatch)
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            client.set_widgets_metadata()
            executed = root / "executed" / NOTEBOOK.name
            executed.parent.mkdir()
            nbformat.write(notebook, executed)
            yield client, root, executed


@pytest.mark.slow
def test_run_all_with_committed_settings(run_all):
    client, root, executed = run_all
    notebook = nbformat.read(executed, as_version=4)
    errors = [(i, o) for i, c in enumerate(notebook.cells) for o in outputs(c, "error")]
    assert not errors, errors
    assert len(list((root / "data" / "images").glob("*.jpg"))) == 24  # SAMPLE_FRAMES (set above), not 30
    assert len(list((root / "logs" / "captured").glob("*.jpg"))) == 30  # FRAMES_TO_COLLECT as committed
    assert (root / "facetracker.keras").is_file()
    assert (root / "logs" / "realtime.mp4").is_file()
    pictures = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) >= 7, "the notebook shows its frames, samples, loss curves and predictions"
    stderr = "".join(o.get("text", "") for c in notebook.cells for o in outputs(c, "stream") if o["name"] == "stderr")
    assert stderr == "", f"a red block the learner would see: {stderr[:2000]}"
    export = next(c for c in notebook.cells if c.source.startswith("tflite_file = export.export_model"))
    assert "images of" in text_of(export) and "random" not in text_of(export)  # checked on real images, as the CLI
    web = next(c for c in notebook.cells if "export.export_project(paths, fmt=\"web\"" in c.source)
    if (Path(facetracker.__file__).parent / "web" / "node_modules").is_dir():  # the runtime is installed (npm ci)
        assert (root / "export" / "web" / "index.html").is_file() and "exported the web page" in text_of(web)
        assert "images of" in text_of(web)  # the page's model checked against Keras on real images
    else:
        assert "npm ci" in text_of(web), "without the runtime the cell says how to install it"


@pytest.mark.slow
def test_loop_cell_shows_its_frames_inline_with_a_box(run_all):
    client, root, executed = run_all
    notebook = nbformat.read(executed, as_version=4)
    loop = notebook.cells[tagged(notebook, "loop")]
    frames = decoded_images(loop, "image/jpeg")
    assert len(frames) == 1, "one image, updated in place, not one per frame"
    assert box_pixels(frames[0], BLUE) > 300, "the last frame shows the drawn box"
    recorded = cv2.VideoCapture(str(root / "logs" / "realtime.mp4"))
    count = int(recorded.get(cv2.CAP_PROP_FRAME_COUNT))
    recorded.release()
    assert f"{count} frames," in text_of(loop)


@pytest.mark.slow
def test_notebook_and_cli_train_alike(run_all):
    """The same seed and settings: the same first batch and the same first-epoch losses as `facetracker train`."""
    from facetracker.dataset import datasets

    client, root, _ = run_all
    saved = root / "first_batch.npz"
    run_code(client, f"np.savez({str(saved)!r}, images=batch_images, classes=batch_labels[0], boxes=batch_labels[1])")
    notebook_batch = np.load(saved)
    cli_images, (cli_classes, cli_boxes) = next(datasets(Paths(root), 16, seed=0, splits=("train",))["train"]
                                                .as_numpy_iterator())  # what train_from_paths trains on
    np.testing.assert_allclose(notebook_batch["images"], cli_images, atol=1e-6)
    np.testing.assert_array_equal(notebook_batch["boxes"], cli_boxes)
    np.testing.assert_array_equal(notebook_batch["classes"], cli_classes)

    cli = Path(sys.executable).with_name("facetracker")
    subprocess.run([str(cli), "--root", str(root), "train", "--preset", "quick", "--epochs", "1", "--name", "cli"],
                   check=True, capture_output=True)
    rows = {}
    for run in ("exp", "cli"):
        with (root / "logs" / "train" / run / "history.csv").open(newline="") as file:
            rows[run] = next(csv.DictReader(file))
    assert set(rows["exp"]) == set(rows["cli"]) >= {"loss", "class_loss", "regress_loss", "val_loss"}
    for name in rows["cli"]:
        assert float(rows["exp"][name]) == pytest.approx(float(rows["cli"][name]), rel=1e-4, abs=1e-6), name


@pytest.mark.slow
def test_edit_the_model_cell_and_retrain(run_all):
    client, _, executed = run_all
    notebook = client.nb
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


# ----------------------------------------------------------------------------- Kernel > Interrupt


@pytest.mark.slow
def test_interrupting_the_loop_leaves_a_playable_video_and_a_released_capture(tmp_path, small_model_file,
                                                                              monkeypatch):
    """The loop cell in a real kernel, stopped as JupyterLab's Kernel > Interrupt stops it (SIGINT to the kernel)."""
    from jupyter_client import KernelManager

    headless_env(monkeypatch)
    camera = write_sample_video(tmp_path / "long.mp4", frames=600, fps=15, seed=1)
    shutil.copy(small_model_file, Paths(tmp_path).model)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    imports = next(c for c in notebook.cells if c.cell_type == "code" and "from facetracker import" in c.source)
    loop = notebook.cells[tagged(notebook, "loop")].source.replace("MAX_FRAMES = 300", "MAX_FRAMES = 600")
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    kernel = manager.client()
    kernel.start_channels()
    try:
        kernel.wait_for_ready(timeout=60)
        setup = (f"from pathlib import Path\nROOT = Path({str(tmp_path)!r})\nCLASS_NAME = 'face'\n"
                 f"camera = {str(camera)!r}\n{imports.source}\npaths.logs.mkdir(parents=True, exist_ok=True)")
        assert kernel.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"
        request = kernel.execute(loop)
        frames_shown, printed = 0, ""
        while frames_shown < 5:  # let the loop run a few frames, then interrupt it
            message = kernel.get_iopub_msg(timeout=120)
            kind = message["msg_type"]
            frames_shown += kind in ("display_data", "update_display_data")
            assert kind != "error", message["content"]
        manager.interrupt_kernel()
        while True:
            message = kernel.get_iopub_msg(timeout=120)
            if message["parent_header"].get("msg_id") != request:
                continue
            assert message["msg_type"] != "error", message["content"]
            printed += message["content"].get("text", "") if message["msg_type"] == "stream" else ""
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        assert "stopped: Kernel > Interrupt" in printed
        found = int(re.search(r"(\d+) frames,", printed).group(1))
        assert 5 <= found < 600, "the loop stopped early, on the interrupt"
        check = "print(cap.isOpened(), writer.isOpened())"
        lines = []
        kernel.execute_interactive(check, timeout=30, output_hook=lambda m: lines.append(m["content"].get("text", "")))
        assert "".join(lines).split() == ["False", "False"], "the capture and the writer were released"
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    video = cv2.VideoCapture(str(Paths(tmp_path).logs / "realtime.mp4"))
    read = 0
    while video.read()[0]:
        read += 1
    video.release()
    assert read == found, "every frame the loop saw is in the video, and it plays to the end"


# ----------------------------------------------------------------------------- a real JupyterLab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_jupyterlab(folder: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab serving `folder`, offline: no extension manager (it asks PyPI), no update check, no news."""
    config = folder.parent / "lab_config.py"
    config.write_text("c.LabApp.extension_manager = 'readonly'\n"
                      "c.LabApp.check_for_updates_class = 'jupyterlab.handlers.announcements.NeverCheckForUpdate'\n"
                      "c.LabApp.news_url = None\n")
    settings = folder.parent / "lab_settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Every cell in the page, not only those scrolled into view (the default renders what is visible).
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(folder.parent / "lab_settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder.parent / "lab_workspaces"),
           "JUPYTER_RUNTIME_DIR": str(folder.parent / "runtime"), "JUPYTER_CONFIG_DIR": str(folder.parent / "config"),
           "JUPYTER_DATA_DIR": str(folder.parent / "data")}
    jupyter = Path(sys.executable).with_name("jupyter")
    # JupyterLab draws widgets (the progress bars) only in a trusted notebook, as one the learner ran and saved;
    # an untrusted one shows their text at the moment they were displayed ("0%").
    for notebook in folder.glob("*.ipynb"):
        subprocess.run([str(jupyter), "trust", str(notebook)], env=env, check=True, capture_output=True)
    return subprocess.Popen([str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
                             f"--config={config}", "--allow-root"],
                            env=env, stdout=subprocess.DEVNULL, stderr=(folder.parent / "lab.log").open("w"))


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "JupyterLab exited; see lab.log"
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer at {url} within {timeout} s")


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    """FACETRACKER_SCREENSHOTS when set (a folder kept after the run), else the test's tmp folder."""
    folder = Path(os.environ.get("FACETRACKER_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium")
def test_jupyterlab_shows_the_executed_notebook(run_all, screenshot_dir):
    playwright = pytest.importorskip("playwright.sync_api")
    _, _, executed = run_all
    notebook = nbformat.read(executed, as_version=4)
    port, token = free_port(), "facetracker-test"
    lab = start_jupyterlab(executed.parent, port, token)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/api/status?token={token}", lab)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{executed.name}?token={token}")
            cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
            cells.nth(len(notebook.cells) - 1).wait_for(state="attached", timeout=90_000)
            assert cells.count() == len(notebook.cells)
            page.wait_for_timeout(3000)  # widgets and images render after the cells

            assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
            assert page.get_by_text("Traceback").count() == 0
            assert page.get_by_text("Loading widget").count() == 0, "a progress bar shows as a bare 'Loading widget...'"
            widgets = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                          for c in notebook.cells for o in c.get("outputs", []))
            bars = page.locator(".jp-OutputArea .widget-hprogress .progress-bar")
            assert widgets >= 2 and bars.count() == widgets, "each progress bar shows as a bar (collect, augment)"

            shots = {}
            for name, tag, selector in (("loss_curves", "train", "img"), ("inline_frame", "loop", "img")):
                output = cells.nth(tagged(notebook, tag)).locator(f".jp-OutputArea-output {selector}").first
                output.scroll_into_view_if_needed()
                output.wait_for(state="visible", timeout=30_000)
                shots[name] = screenshot_dir / f"jupyterlab_{name}.png"
                output.screenshot(path=str(shots[name]))
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    for name, path in shots.items():
        assert cv2.imread(str(path)) is not None and cv2.imread(str(path)).shape[0] > 100, name
        print(f"screenshot of {name}: {path}")
    inline = cv2.imread(str(shots["inline_frame"]))
    assert box_pixels(inline, BLUE) > 300, "the inline frame shows its box in JupyterLab"
