"""Tests for facetracker.export: SavedModel and TFLite (float, float16, dynamic, int8) with the real small model."""

import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from trained_model import frame_inputs, trained_model_file

from facetracker.errors import FaceTrackerError
from facetracker.export import QUANTIZATIONS, TOLERANCE, check_export, export_model
from facetracker.inference import Detector
from facetracker.realtime import detect

ENTRY_POINT = Path(sys.executable).with_name("facetracker")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, sample_template) -> Path:
    return trained_model_file(tmp_path_factory, sample_template, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def frames(sample_template) -> np.ndarray:
    """The 20 sample frames as model inputs: calibration and check images in one."""
    return frame_inputs(sample_template)


@pytest.fixture(scope="module")
def tflite_file(model_file, tmp_path_factory) -> Path:
    return export_model(model_file, fmt="tflite", out_dir=tmp_path_factory.mktemp("export"))


@pytest.mark.slow
def test_savedmodel_round_trip(model_file, tmp_path):
    exported = export_model(model_file, fmt="savedmodel", out_dir=tmp_path / "export")
    assert exported == tmp_path / "export" / "small_savedmodel" and (exported / "saved_model.pb").is_file()
    check = check_export(model_file, exported)
    assert check.ok and check.tolerance == TOLERANCE["savedmodel"]
    assert max(check.max_score_diff, check.max_box_diff) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("quantize", QUANTIZATIONS)
def test_each_quantization_exports_loads_and_agrees(quantize, model_file, frames, tflite_file, tmp_path):
    exported = export_model(model_file, "tflite", tmp_path, quantize=quantize, representative=frames)
    assert exported.name == ("small.tflite" if quantize == "none" else f"small_{quantize}.tflite")
    detector = Detector.load(exported)
    scores, boxes = detector.predict(frames[:2])
    assert scores.shape == (2,) and boxes.shape == (2, 4) and np.all((scores >= 0) & (scores <= 1))
    check = check_export(model_file, exported, inputs=frames)
    assert check.ok, check.format()
    assert check.agreement >= 0.9 and check.mean_iou >= 0.8
    if quantize != "none":  # quantized files are smaller: float16 about half, int8 about a quarter
        assert exported.stat().st_size < 0.6 * tflite_file.stat().st_size


@pytest.mark.slow
def test_int8_with_a_broken_calibration_fails_its_check(model_file, frames, tmp_path):
    for name, representative in (("zeros", np.zeros_like(frames)), ("0-255 scale", frames * 255)):
        exported = export_model(model_file, "tflite", tmp_path / name, quantize="int8", representative=representative)
        check = check_export(model_file, exported, inputs=frames)
        assert not check.ok and "TOO FAR" in check.format(), (name, check.format())


@pytest.mark.slow
def test_check_export_fails_for_a_different_model(model_file, tflite_file, tmp_path):
    keras.utils.set_random_seed(1)
    other = keras.saving.load_model(model_file)
    for layer in other.layers:
        layer.set_weights([w + 0.5 for w in layer.get_weights()])
    other.save(tmp_path / "other.keras")
    assert not check_export(tmp_path / "other.keras", tflite_file).ok


@pytest.mark.slow
def test_tflite_takes_one_frame_and_python_runs_a_batch_frame_by_frame(model_file, frames, tflite_file):
    from facetracker.inference import tflite_interpreter

    # A fixed batch of 1: LiteRT.js (the web page) refuses an open batch dimension.
    assert list(tflite_interpreter(tflite_file).get_input_details()[0]["shape_signature"]) == [1, 120, 120, 3]
    scores, boxes = Detector.load(tflite_file).predict(frames)
    keras_scores, keras_boxes = Detector.load(model_file).predict(frames)
    assert scores.shape == (len(frames),) and boxes.shape == (len(frames), 4)
    np.testing.assert_allclose(scores, keras_scores, atol=1e-4)
    np.testing.assert_allclose(boxes, keras_boxes, atol=1e-4)


@pytest.mark.slow
def test_tflite_detector_matches_keras_on_a_frame(model_file, tflite_file, sample_video):
    frame = cv2.VideoCapture(str(sample_video)).read()[1]
    a, b = Detector.load(model_file)(frame), Detector.load(tflite_file)(frame)
    assert a.score == pytest.approx(b.score, abs=1e-4)
    np.testing.assert_allclose(a.box, b.box, atol=1e-4)


@pytest.mark.slow
def test_detect_runs_a_tflite_model(tflite_file, sample_video, tmp_path):
    output = tmp_path / "out.avi"
    summary = detect(source=sample_video, model=tflite_file, threshold=0.0, output=output, display=False)
    capture, count = cv2.VideoCapture(str(output)), 0
    while capture.read()[0]:
        count += 1
    assert summary.frames == count == 30


def test_export_errors(small_model_file, tmp_path):
    with pytest.raises(FaceTrackerError, match="onnx"):
        export_model(small_model_file, fmt="onnx", out_dir=tmp_path)
    with pytest.raises(FaceTrackerError, match="missing.keras"):
        export_model(tmp_path / "missing.keras", fmt="tflite", out_dir=tmp_path)
    with pytest.raises(FaceTrackerError, match="needs --format tflite"):
        export_model(small_model_file, fmt="savedmodel", out_dir=tmp_path, quantize="int8")
    with pytest.raises(FaceTrackerError, match="has none"):
        export_model(small_model_file, fmt="tflite", out_dir=tmp_path, quantize="int8",
                     representative=tmp_path / "empty")


def write_images(folder: Path, frames: np.ndarray) -> None:
    """Model inputs written back as JPEG files, the way aug_data/<split>/images holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(frames):
        cv2.imwrite(str(folder / f"frame{i:02d}.jpg"), cv2.cvtColor((x * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))


@pytest.mark.slow
def test_export_int8_through_the_entry_point(model_file, frames, tmp_path):
    root = tmp_path / "project"
    write_images(root / "aug_data" / "train" / "images", frames)
    write_images(root / "aug_data" / "val" / "images", frames[::-1])
    (root / "facetracker.keras").write_bytes(model_file.read_bytes())
    done = subprocess.run([str(ENTRY_POINT), "--root", str(root), "export", "--quantize", "int8"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    exported = root / "export" / "facetracker_int8.tflite"
    assert exported.is_file() and f"to {exported}" in done.stdout
    assert "20 images of" in done.stdout and ": OK" in done.stdout
    # Without training images there is nothing to calibrate on: one line naming the folder, exit 2.
    (root / "aug_data" / "train" / "images").rename(root / "elsewhere")
    done = subprocess.run([str(ENTRY_POINT), "--root", str(root), "export", "--quantize", "int8"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "aug_data/train/images has none" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # Calibrated on black images, the int8 model disagrees with the Keras one on the val frames: exit 1.
    write_images(root / "black", np.zeros_like(frames))
    done = subprocess.run([str(ENTRY_POINT), "--root", str(root), "export", "--quantize", "int8", "--calibration",
                           str(root / "black")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith(": TOO FAR")


def op_types(tflite: Path) -> dict[str, set[str]]:
    """{op name: the dtypes of its outputs} over the ops of a .tflite file."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    found: dict[str, set[str]] = {}
    for op in interpreter._get_ops_details():
        found.setdefault(op["op_name"], set()).update(dtypes[i] for i in op["outputs"])
    return found


@pytest.mark.slow
def test_int8_keeps_the_grid_heads_merge_and_the_outputs_in_float(model_file, frames, tmp_path):
    """The backbone runs in int8; the softmax-weighted merge of the grid cells (and their logits), the sigmoids
    and the ops that give the outputs in float32."""
    ops = op_types(export_model(model_file, "tflite", tmp_path, quantize="int8", representative=frames))
    assert ops["CONV_2D"] >= {"int8"} and ops["MAX_POOL_2D"] == {"int8"}
    assert ops["SOFTMAX"] == {"float32"} and ops["SUM"] == {"float32"}
    assert ops["LOGISTIC"] == {"float32"} and ops["PACK"] == {"float32"}


@pytest.mark.slow
def test_int8_scores_of_confident_faces_do_not_tie_at_255_of_256(model_file, frames, tmp_path):
    """An int8 sigmoid's largest value is 255/256: every confident face would score 0.996, level with a
    confident false box, and AP would fall. The session's model is not that sure of itself after a few
    steps, so its score layer's logits are spread out (x10, +8) to make one that is."""
    model = keras.saving.load_model(model_file)
    kernel, bias = model.get_layer("score").get_weights()
    model.get_layer("score").set_weights([kernel * 10, bias + 8])
    model.save(tmp_path / "confident.keras")
    int8 = export_model(tmp_path / "confident.keras", "tflite", tmp_path, quantize="int8", representative=frames)
    keras_scores, _ = Detector.load(tmp_path / "confident.keras").predict(frames)
    int8_scores, _ = Detector.load(int8).predict(frames)
    confident = keras_scores > 0.999
    assert confident.sum() >= 2, keras_scores
    assert np.all(int8_scores[confident] > 255 / 256), int8_scores[confident]
    assert len(np.unique(int8_scores[confident])) > 1


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "name"),
                         [((), "constant.tflite"), (("--format", "savedmodel"), "constant_savedmodel")])
def test_export_command_checks_the_default_export_on_the_val_images(argv, name, constant_model, sample_template,
                                                                    tmp_path, capsys):
    """`facetracker export` (TFLite float, the default) and `--format savedmodel`: the file, then its check against
    the Keras model on aug_data/val/images, as the user reads them."""
    from facetracker.cli import main

    root = tmp_path / "project"
    write_images(root / "aug_data" / "val" / "images", frame_inputs(sample_template)[:6])
    assert main(["--root", str(root), "export", "--model", str(constant_model), *argv]) == 0
    exported = root / "export" / name
    fmt = "savedmodel" if argv else "tflite"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"exported {fmt} model (none) to {exported} (")
    assert lines[1].startswith(f"{exported} on 6 images of {root / 'aug_data' / 'val' / 'images'}: ")
    assert lines[1].endswith(": OK") and "decisions agree on 100.0% at 0.5" in lines[1]
