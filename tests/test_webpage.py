"""Tests for facetracker.webpage: `facetracker export --format web`, and the page itself in headless Chromium.

The page runs a model trained for real (tests/trained_model.py) with LiteRT.js (wasm), served by
`facetracker serve`; Playwright drives Debian's Chromium, with a fake camera fed from the sample video.
"""

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from trained_model import trained_model_file
from web_browser import ENTRY_POINT, FAKE_CAMERA, blue_pixels, chromium, missing, open_page, served

from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.evaluate import iou
from facetracker.inference import frame_to_input, tflite_interpreter
from facetracker.realtime import PREDICTIONS_FILE
from facetracker.sample_data import make_sample_data, video_to_y4m
from facetracker.split import split_dataset
from facetracker.webpage import CONFIG_FILE, RUNTIME_FILES, integrity, runtime_folder

# Each test starts a browser, a server or a fresh Python. .ci/run installs Chromium; dev.py runs npm ci.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
SCREENSHOT = Path(tempfile.gettempdir()) / "facetracker-web" / "camera.png"
PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"  # 512x600


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRY_POINT), *argv], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory, sample_template) -> Path:
    """A project with the trained small model as facetracker.keras and the 90-frame sample session, split."""
    root = tmp_path_factory.mktemp("web-project")
    trained_model_file(tmp_path_factory, sample_template, root).rename(root / "facetracker.keras")
    make_sample_data(Paths(root))
    split_dataset(Paths(root))
    return root


@pytest.fixture(scope="module")
def page_dir(project) -> Path:
    """export/web written by `facetracker export --format web` through the entry point."""
    done = run("--root", str(project), "export", "--format", "web")
    assert done.returncode == 0, done.stderr
    folder = project / "export" / "web"
    assert f"to {folder}" in done.stdout and f"facetracker serve {folder}" in done.stdout and ": OK" in done.stdout
    return folder


def test_export_writes_the_page_with_a_batch_one_model(page_dir):
    config = json.loads((page_dir / CONFIG_FILE).read_text())
    model = page_dir / config["model"]
    interpreter = tflite_interpreter(model)
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [1, 120, 120, 3]
    # model.json says which output is which, as the file itself names and shapes them.
    outputs = interpreter.get_signature_runner().get_output_details()
    assert {kind: list(outputs[o["name"]]["shape"]) for kind, o in config["outputs"].items()} == {
        "score": [1, 1], "box": [1, 4]}
    assert config["input_size"] == 120 and config["class_name"] == "face" and config["threshold"] == 0.5
    assert "@litertjs/core 2.5.3" in config["runtime"]
    # Only what the page loads is vendored, byte for byte what npm ci installed.
    modules = runtime_folder()
    for vendored, source in RUNTIME_FILES.items():
        assert (page_dir / vendored).read_bytes() == (modules / source).read_bytes()
    assert not list(page_dir.rglob("*threaded*")) and not list(page_dir.rglob("*jspi*"))
    # index.html pins each script and the stylesheet by its hash, and names no other host.
    html = (page_dir / "index.html").read_text()
    for name in ("app.js", "style.css", "vendor/litertjs/core/index.js", "vendor/litertjs/wasm-utils/index.js"):
        assert integrity(page_dir / name) in html, name
    for name in ("index.html", "app.js", "style.css"):
        urls = re.findall(r"[a-z]+://[^\s\"'`]*", (page_dir / name).read_text())
        assert all(url.startswith("http://127.0.0.1:") for url in urls), (name, urls)


def test_export_without_the_runtime_says_to_run_npm_ci(project, tmp_path, monkeypatch):
    import facetracker.webpage as webpage

    source = tmp_path / "web"
    shutil.copytree(webpage.PAGE_SOURCE, source, ignore=shutil.ignore_patterns("node_modules"))
    monkeypatch.setattr(webpage, "PAGE_SOURCE", source)
    with pytest.raises(FaceTrackerError, match=rf"run `npm ci` in {source}"):
        webpage.export_web(project / "facetracker.keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # it fails before exporting anything


def page_predictions(page, files: list[Path]) -> dict[str, dict]:
    """Pick `files` with the page's file input; its predictions.jsonl lines by file name."""
    page.set_input_files("#files", [str(f) for f in files])
    page.wait_for_function(f"document.querySelector('#predictions').textContent.trim().split('\\n').length"
                           f" >= {len(files)}", timeout=120_000)
    lines = page.text_content("#predictions").strip().splitlines()
    return {Path(record["file"]).name: record for record in map(json.loads, lines)}


def drop_file(page, path: Path, name: str) -> dict:
    """Drop a file on the page's drop zone (a real DragEvent with the file); its predictions.jsonl record."""
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate("""([data, name]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name, {type: "image/jpeg"}));
        document.querySelector("#drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true,
                                                                             cancelable: true}));
    }""", [data, name])
    page.wait_for_function(f"document.querySelector('#predictions').textContent.includes('{name}')", timeout=60_000)
    lines = page.text_content("#predictions").strip().splitlines()
    return next(record for record in map(json.loads, lines) if record["file"] == name)


def page_input(page, path: Path, method: str) -> np.ndarray:
    """The page's model input for an image file, made by its area averaging or by canvas drawImage."""
    data = base64.b64encode(path.read_bytes()).decode()
    values = page.evaluate("async ([data, method]) => Array.from(await window.facetracker.input("
                           "new Blob([Uint8Array.from(atob(data), c => c.charCodeAt(0))]), method))", [data, method])
    return np.asarray(values, np.float32).reshape(120, 120, 3)


def test_page_predicts_as_detect_on_the_test_frames(project, page_dir, tmp_path):
    frames = sorted((project / "data" / "test" / "images").glob("*.jpg"))
    config = json.loads((page_dir / CONFIG_FILE).read_text())
    done = run("detect", "--source", str(frames[0].parent), "--model", str(page_dir / config["model"]),
               "--output", str(tmp_path / "detect"), "--no-display")
    assert done.returncode == 0, done.stderr
    python = {Path(r["file"]).name: r for r in map(json.loads, (tmp_path / "detect" / PREDICTIONS_FILE).open())}
    requests = []
    with served(page_dir) as url, chromium() as browser:
        page = open_page(browser, url + "?camera=off", requests)
        assert page.get_attribute("body", "data-ready") == "model", page.text_content("#status")
        web = page_predictions(page, frames)
        dropped = drop_file(page, frames[0], "dropped.jpg")
        # The test frames (640x480: 4x4 pixels per input pixel) and a portrait whose square is not a multiple of 120.
        images = [*frames, PORTRAIT]
        area = [np.abs(page_input(page, f, "area") - frame_to_input(cv2.imread(str(f)))[0]) for f in images]
        canvas = [np.abs(page_input(page, f, "canvas") - frame_to_input(cv2.imread(str(f)))[0]) for f in images]
    assert sorted(web) == sorted(python) == sorted(f.name for f in frames)
    faces_python = np.array([python[n]["score"] >= 0.5 for n in sorted(python)])
    faces_web = np.array([web[n]["score"] >= 0.5 for n in sorted(python)])
    both = faces_python & faces_web
    boxes = [(np.array(python[n]["box"], float), np.array(web[n]["box"], float)) for n in sorted(python)]
    mean_iou = float(np.mean(iou(np.stack([b[0] for b in boxes])[both], np.stack([b[1] for b in boxes])[both])))
    score_diff = max(abs(python[n]["score"] - web[n]["score"]) for n in python)
    print(f"\n{len(frames)} test frames: same face/no-face decision on {np.sum(faces_python == faces_web)} "
          f"({faces_python.sum()} faces); mean box IoU {mean_iou:.4f} on the {both.sum()} faces; largest score "
          f"difference {score_diff:.2e}")
    print(f"page input vs cv2.INTER_AREA, in 8-bit levels: area averaging max {255 * max(a.max() for a in area):.0f}, "
          f"mean {255 * np.mean(area):.4f}; canvas drawImage max {255 * max(c.max() for c in canvas):.0f}, "
          f"mean {255 * np.mean(canvas):.4f}")
    assert np.array_equal(faces_python, faces_web)
    assert 0 < faces_python.sum() < len(frames)  # both decisions occur, so agreeing on each means something
    assert mean_iou >= 0.95
    assert score_diff < 1e-3  # the same input reaches the same model: float rounding apart, the same scores
    assert all(web[n]["width"] == 640 and web[n]["height"] == 480 for n in web)
    assert {**dropped, "file": frames[0].name} == web[frames[0].name]  # dropping a file does what picking does
    # The page's resize is OpenCV's area averaging (within JPEG decoding), not the browser's drawImage.
    assert 255 * np.mean(area) < 0.5 < 255 * np.mean(canvas)
    assert requests and all(r.startswith(url) for r in requests), requests


def test_camera_shows_boxes_and_fps(page_dir, sample_video, tmp_path):
    y4m = video_to_y4m(sample_video, tmp_path / "camera.y4m")
    requests = []
    with served(page_dir) as url, chromium(*FAKE_CAMERA, f"--use-file-for-fake-video-capture={y4m}") as browser:
        page = open_page(browser, url, requests)
        page.wait_for_function("Number(document.querySelector('#view').dataset.boxes || 0) >= 5", timeout=120_000)
        page.evaluate("window.facetracker.holdOnBox()")  # a frame with a box stays on screen for the screenshot
        page.wait_for_function("document.querySelector('#view').dataset.held === '1'", timeout=60_000)
        view = page.locator("#view")
        fps, frames = float(view.get_attribute("data-fps")), view.get_attribute("data-frames")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        shot = view.screenshot()
        status = page.text_content("#status")
    print(f"\ncamera page: {frames} frames, {fps:.1f} FPS; screenshot {SCREENSHOT}")
    assert "Running" in status and fps > 0
    assert blue_pixels(shot) > 200  # the box's outline
    assert all(r.startswith(url) for r in requests), requests


def broken_copy(page_dir: Path, folder: Path, change) -> Path:
    """A copy of the exported page with one thing broken by `change(folder)`."""
    shutil.copytree(page_dir, folder)
    change(folder)
    return folder


def open_batch_model(folder: Path) -> None:
    """Replace the page's model by the same model exported with an open batch dimension ([-1, 120, 120, 3])."""
    import keras

    config = json.loads((folder / CONFIG_FILE).read_text())
    model = keras.saving.load_model(folder.parent.parent / "facetracker.keras", compile=False)
    model.export(str(folder / config["model"]), format="litert", verbose=False)


@pytest.mark.parametrize("broken, change, message", [
    ("missing-model", lambda f: next(f.glob("*.tflite")).unlink(), "facetracker.tflite is missing (HTTP 404)"),
    ("no-runtime", lambda f: shutil.rmtree(f / "vendor"), "The LiteRT.js runtime did not load"),
    ("open-batch", open_batch_model, "Its batch size is open (-1)"),
])
def test_page_failures_are_messages(broken, change, message, page_dir, project):
    folder = broken_copy(page_dir, project / "export" / broken, change)
    with served(folder) as url, chromium(*FAKE_CAMERA) as browser:
        page = open_page(browser, url)
        status, ready = page.text_content("#status"), page.get_attribute("body", "data-ready")
    assert message in status and "facetracker export --format web" in status, status
    assert ready == "error"


@pytest.mark.parametrize("flags, message", [
    (["--use-fake-device-for-media-stream", "--deny-permission-prompts"], "Camera permission denied"),
    ([], "No camera found"),
])
def test_camera_failures_are_messages(flags, message, page_dir):
    with served(page_dir) as url, chromium(*flags) as browser:
        page = open_page(browser, url)
        page.wait_for_function("document.querySelector('#status').dataset.state === 'error'", timeout=60_000)
        status = page.text_content("#status")
    assert message in status, status
