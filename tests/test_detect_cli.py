"""`facetracker detect` through the real entry point: folders of real JPEGs, a .tflite model without TensorFlow,
and live sources (a file:// URL)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import CONSTANT_FRAME_BOX, CONSTANT_SCORE, box_color_share
from trained_model import trained_model_file

from facetracker.capture import collect
from facetracker.cli import main
from facetracker.export import export_model
from facetracker.realtime import PREDICTIONS_FILE, detect

ENTRY_POINT = Path(sys.executable).with_name("facetracker")
HEAVY = ("tensorflow", "keras", "albumentations", "matplotlib")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, sample_template) -> Path:
    return trained_model_file(tmp_path_factory, sample_template, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def tflite_file(model_file, tmp_path_factory) -> Path:
    return export_model(model_file, fmt="tflite", out_dir=tmp_path_factory.mktemp("export"))


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRY_POINT), *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_detect_on_a_folder_with_a_corrupt_file(sample_root, tflite_file):
    images = sorted((sample_root / "data" / "images").glob("*.jpg"))
    (sample_root / "data" / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    done = run("--root", str(sample_root), "detect", "--source", str(sample_root / "data" / "images"),
               "--model", str(tflite_file), "--threshold", "0")
    assert done.returncode == 0, done.stderr
    out = sample_root / "runs" / "detect" / "predict"  # a run folder of its own
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "corrupt.jpg" in warnings[0]
    records = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert [Path(r["file"]).name for r in records] == [p.name for p in images]
    for record in records:
        x1, y1, x2, y2 = record["box"]
        assert 0 <= x1 <= x2 <= record["width"] == 640 and 0 <= y1 <= y2 <= record["height"] == 480
        assert 0.0 <= record["score"] <= 1.0
        assert cv2.imread(str(out / Path(record["file"]).name)).shape == (480, 640, 3)
    assert not (out / "corrupt.jpg").exists()
    assert f"{len(images)} images (1 unreadable, skipped)" in done.stdout
    # A second run never overwrites the first.
    assert run("--root", str(sample_root), "detect", "--source", str(sample_root / "data" / "images" / "*.jpg"),
               "--model", str(tflite_file)).returncode == 0
    assert len((sample_root / "runs" / "detect" / "predict2" / PREDICTIONS_FILE).read_text().splitlines()) == 20


@pytest.mark.slow  # over 3 s on 2 cores
def test_detect_on_a_folder_draws_the_box_and_writes_it_in_pixels(sample_root, constant_model, capsys):
    """`detect --source DIR` with the constant model: every record and every drawn box is known by hand."""
    images = sorted((sample_root / "data" / "images").glob("*.jpg"))
    argv = ["--root", str(sample_root), "detect", "--source", str(sample_root / "data" / "images"),
            "--model", str(constant_model)]
    assert main([*argv, "--threshold", "0.79"]) == 0
    out = sample_root / "runs" / "detect" / "predict"
    assert f"{len(images)} images, model" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert records == [{"file": str(p), "score": CONSTANT_SCORE, "box": list(CONSTANT_FRAME_BOX),
                        "width": 640, "height": 480} for p in images]
    for path in images[:3]:
        drawn, original = cv2.imread(str(out / path.name)), cv2.imread(str(path))
        assert box_color_share(drawn, CONSTANT_FRAME_BOX) > 0.8, path.name
        assert box_color_share(original, CONSTANT_FRAME_BOX) < 0.2, path.name
    # Above the score no box is drawn, and every prediction is still written.
    assert main([*argv, "--threshold", "0.81"]) == 0
    out2 = sample_root / "runs" / "detect" / "predict2"
    drawn, original = cv2.imread(str(out2 / images[0].name)), cv2.imread(str(images[0]))
    assert cv2.absdiff(drawn, original).mean() < 3  # only JPEG re-encoding
    assert len((out2 / PREDICTIONS_FILE).read_text().splitlines()) == len(images)


@pytest.mark.parametrize("no_display", [True, False])
def test_no_display_opens_no_window_even_with_a_screen(no_display, sample_video, constant_model, tmp_path,
                                                        monkeypatch, capsys):
    """With a display, detect opens its window, unless --no-display says not to (the window is a spy here:
    the real one, under Xvfb, is tested in test_gui.py)."""
    opened = []

    class SpyWindow:
        def __init__(self, title: str) -> None:
            opened.append(title)

        def show(self, frame) -> bool:
            return True

        def close(self) -> None:
            pass

    monkeypatch.setattr("facetracker.realtime.FrameWindow", SpyWindow)
    monkeypatch.setattr("facetracker.capture.display_available", lambda: True)
    monkeypatch.setattr("facetracker.capture.gui_available", lambda: True)
    flag = ["--no-display"] if no_display else []
    assert main(["detect", "--source", str(sample_video), "--model", str(constant_model), "--max-frames", "2",
                 *flag]) == 0
    assert "2 frames" in capsys.readouterr().out
    assert opened == ([] if no_display else ["FaceTracker (face) - q quits"])


@pytest.mark.slow
def test_library_detect_numbers_image_runs_under_its_root(sample_root, constant_model, tmp_path, monkeypatch):
    """`detect()` on images with no output: <root>/runs/detect/predict, predict2, as the CLI does, not the cwd."""
    monkeypatch.chdir(tmp_path)
    source = str(sample_root / "data" / "images" / "*.jpg")
    first, second = (detect(source=source, model=constant_model, root=sample_root) for _ in range(2))
    assert (first.output, second.output) == (sample_root / "runs" / "detect" / "predict",
                                             sample_root / "runs" / "detect" / "predict2")
    assert len((second.output / PREDICTIONS_FILE).read_text().splitlines()) == 20
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_detect_video_through_the_entry_point(sample_video, tflite_file, tmp_path):
    output = tmp_path / "annotated.avi"
    done = run("detect", "--source", str(sample_video), "--model", str(tflite_file), "--no-display",
               "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert "30 frames" in done.stdout and str(output) in done.stdout
    capture, count = cv2.VideoCapture(str(output)), 0
    while capture.read()[0]:
        count += 1
    assert count == 30


@pytest.mark.slow
def test_tflite_detect_imports_no_heavy_library(sample_video, tflite_file, tmp_path):
    """What `facetracker detect --model x.tflite` loads: never Albumentations, and neither TensorFlow, Keras
    nor matplotlib where LiteRT (ai_edge_litert) is installed."""
    code = (
        "import json, sys\n"
        "from facetracker.cli import main\n"
        f"status = main(['detect', '--source', {str(sample_video)!r}, '--model', {str(tflite_file)!r}, "
        f"'--no-display', '--output', {str(tmp_path / 'out.avi')!r}])\n"
        f"print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    status, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 0 and "albumentations" not in loaded
    litert = subprocess.run([sys.executable, "-c", "import ai_edge_litert.interpreter"], capture_output=True)
    if litert.returncode == 0:
        assert loaded == []
    else:
        # The fallback on tf.lite loads TensorFlow, and `import tensorflow` itself loads matplotlib.
        pytest.skip("ai_edge_litert is not installed: the TFLite run falls back on tf.lite (TensorFlow loaded)")


def test_collect_paces_a_live_source_in_real_time(sample_video, tmp_path):
    """A file:// URL opens as a live stream: frames are taken `interval` seconds apart in real time,
    where the same video as a file is sampled by frame number as fast as it decodes."""
    url = sample_video.resolve().as_uri()
    tick = time.perf_counter()
    saved = collect(tmp_path / "live", source=url, count=3, interval=0.5, preview=False)
    live_seconds = time.perf_counter() - tick
    assert len(saved) == 3 and live_seconds >= 1.0  # two waits of 0.5 s
    tick = time.perf_counter()
    assert len(collect(tmp_path / "file", source=str(sample_video), count=3, interval=0.5, preview=False)) == 3
    assert time.perf_counter() - tick < live_seconds
