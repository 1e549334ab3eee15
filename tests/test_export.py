"""Tests for facetracker.export: SavedModel and TFLite round trips, and `detect` on a .tflite model."""

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from tiny_model import tiny_model_file

from facetracker.errors import FaceTrackerError
from facetracker.export import TOLERANCE, check_export, export_model
from facetracker.realtime import Detector, detect


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def tflite_file(model_file, tmp_path_factory) -> Path:
    return export_model(model_file, fmt="tflite", out_dir=tmp_path_factory.mktemp("export"))


def test_savedmodel_round_trip(model_file, tmp_path):
    exported = export_model(model_file, fmt="savedmodel", out_dir=tmp_path / "export")
    assert exported == tmp_path / "export" / "tiny_savedmodel" and (exported / "saved_model.pb").is_file()
    check = check_export(model_file, exported)
    assert check.ok and check.tolerance == TOLERANCE["savedmodel"]
    assert max(check.max_score_diff, check.max_box_diff) <= 1e-5


def test_tflite_round_trip(model_file, tflite_file):
    assert tflite_file.suffix == ".tflite" and tflite_file.stat().st_size > 1000
    check = check_export(model_file, tflite_file, samples=16)
    assert check.ok and check.tolerance == TOLERANCE["tflite"], check.format()
    assert "OK" in check.format()


def test_check_export_fails_for_a_different_model(model_file, tflite_file, tmp_path):
    keras.utils.set_random_seed(1)
    other = keras.saving.load_model(model_file)
    for layer in other.layers:
        layer.set_weights([w + 0.5 for w in layer.get_weights()])
    other.save(tmp_path / "other.keras")
    assert not check_export(tmp_path / "other.keras", tflite_file).ok


def test_tflite_detector_matches_keras_on_a_frame(model_file, tflite_file):
    frame = np.random.default_rng(3).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    a, b = Detector.load(model_file)(frame), Detector.load(tflite_file)(frame)
    assert a.score == pytest.approx(b.score, abs=1e-4)
    np.testing.assert_allclose(a.box, b.box, atol=1e-4)


def test_detect_runs_a_tflite_model(tflite_file, tmp_path):
    source = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (200, 150))
    for i in range(8):
        writer.write(np.full((150, 200, 3), 20 * i, np.uint8))
    writer.release()
    output = tmp_path / "out.avi"
    summary = detect(source=source, model=tflite_file, threshold=0.0, output=output, display=False)
    assert summary.frames == 8
    capture, count = cv2.VideoCapture(str(output)), 0
    while capture.read()[0]:
        count += 1
    assert count == 8


def test_export_errors(model_file, tmp_path):
    with pytest.raises(FaceTrackerError, match="onnx"):
        export_model(model_file, fmt="onnx", out_dir=tmp_path)
    with pytest.raises(FaceTrackerError, match="missing.keras"):
        export_model(tmp_path / "missing.keras", fmt="tflite", out_dir=tmp_path)
