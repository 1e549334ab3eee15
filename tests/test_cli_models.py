"""The model steps' wiring (evaluate, detect, export, train, demo) through `facetracker.cli.main`, in this
process: each flag reaches its step, and what is printed and written is what the flags asked for.

The steps themselves are tested in their own files. These tests load a model, so they are `slow`; they are
also `wiring`, which mutmut's runs include (pyproject's [tool.mutmut]): the handlers' mutants need them.
"""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import test_cli
from conftest import CONSTANT_FRAME_BOX
from test_evaluate import make_project

from facetracker.cli import main
from facetracker.config import Paths

pytestmark = [pytest.mark.slow, pytest.mark.wiring]

# matplotlib's named colours of plots.plot_samples, as OpenCV reads them (BGR)
ROYALBLUE_BGR = (225, 105, 65)  # a predicted box
LIMEGREEN_BGR = (50, 205, 50)  # a true box


def run(capsys: pytest.CaptureFixture, root: Path, *argv: str) -> tuple[int, list[str]]:
    """test_cli.run, with the lines printed."""
    status, out = test_cli.run(capsys, root, *argv)
    return status, out.splitlines()


def pixels_of(image: np.ndarray, bgr: tuple[int, int, int]) -> int:
    return int(np.all(np.abs(image.astype(int) - bgr) <= 2, axis=-1).sum())


def rows(lines: list[str]) -> dict[str, list[str]]:
    """The report's table: row label -> the first word of each column."""
    return {line[:16].strip(): line[16:].split() for line in lines[3:] if line[:16].strip()}


def test_evaluate_scores_the_split_class_and_threshold_given_and_draws_that_many_frames(
        tmp_path: Path, constant_model: Path, capsys: pytest.CaptureFixture) -> None:
    """The current model on --split val, labels of class "cat", at --threshold 0.85, --grid 2.

    The constant model scores 0.8 everywhere, under 0.85: it finds none of the 3 cats, and is right only
    on the empty frame (accuracy 1/4). No Haar column: the cascade is for faces only.
    """
    paths = make_project(tmp_path, constant_model, class_name="cat")
    shutil.copy(tmp_path / "model.keras", paths.model)
    for split_of in (paths.split_images, paths.aug_images):
        split_of("test").parent.rename(split_of("val").parent)
    status, lines = run(capsys, tmp_path, "evaluate", "--split", "val", "--class", "cat", "--threshold", "0.85",
                        "--grid", "2")
    assert status == 0
    assert lines[0] == f"{paths.model} on val, threshold 0.85 (95% bootstrap intervals in brackets)"
    table = rows(lines)
    assert lines[1].split() == ["model", "model"]
    assert lines[2].split() == ["frames", "augmented"]
    assert table["images"] == ["4", "3"] and table["faces"] == ["3", "2"]
    assert table["accuracy"][0] == "0.250" and table["recall"][0] == "0.000"
    assert (paths.logs / "evaluation_val.json").is_file() and not (paths.logs / "evaluation.json").exists()
    grid_file = paths.logs / "predictions_val.png"
    assert lines[-1] == f"prediction grid saved to {grid_file}"
    grid = cv2.imread(str(grid_file))
    assert pixels_of(grid, ROYALBLUE_BGR) == 0  # no box reaches 0.85
    assert pixels_of(grid, LIMEGREEN_BGR) > 100  # the cats' true boxes
    quarter = grid.shape[1] // 4
    panels = [grid[:, i * quarter:(i + 1) * quarter] for i in range(4)]
    assert [bool((panel < 250).any()) for panel in panels] == [True, True, False, False]  # two frames drawn


def test_evaluate_frames_and_output_score_another_session_and_draw_no_grid(
        tmp_path: Path, constant_model: Path, capsys: pytest.CaptureFixture) -> None:
    """--model X --frames DIR --output FILE: that session's 4 frames, the model and Haar (faces), the report in
    FILE; no augmented column (the session has no crops) and no grid (--frames draws none)."""
    paths = make_project(tmp_path / "project", constant_model)
    session = tmp_path / "other-session"
    paths.split_images("test").parent.rename(session)
    model, output = tmp_path / "project" / "model.keras", tmp_path / "reports" / "session.json"
    status, lines = run(capsys, paths.root, "evaluate", "--model", str(model), "--frames", str(session),
                        "--output", str(output))
    assert status == 0
    assert lines[0] == f"{model} on {session}, threshold 0.5 (95% bootstrap intervals in brackets)"
    assert lines[1].split() == ["model", "haar"] and lines[2].split() == ["frames", "frames"]
    table = rows(lines)
    assert table["images"] == ["4", "4"] and table["faces"] == ["3", "3"] and table["recall"] == ["1.000", "1.000"]
    assert output.is_file() and not paths.logs.exists()
    assert not any("prediction grid" in line for line in lines)


def test_evaluate_grid_0_scores_without_drawing(tmp_path: Path, constant_model: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    paths = make_project(tmp_path, constant_model)
    status, lines = run(capsys, tmp_path, "evaluate", "--model", str(tmp_path / "model.keras"), "--grid", "0")
    assert status == 0 and lines[0].startswith(f"{tmp_path / 'model.keras'} on test, threshold 0.5")
    assert (paths.logs / "evaluation.json").is_file() and not (paths.logs / "predictions.png").exists()
    assert not any("prediction grid" in line for line in lines)


# ----------------------------------------------------------------------------- detect


def label_right_edge(image: np.ndarray, box_px: tuple[int, int, int, int]) -> int:
    """How far right of the box's x1 the filled label above the box reaches (box-blue pixels above y1)."""
    x1, y1 = box_px[:2]
    blue = np.abs(image[:y1 - 2].astype(int) - (255, 0, 0)).max(axis=-1) < 60  # JPEG shifts colours a little
    return int(np.nonzero(blue.any(axis=0))[0].max()) - x1


def test_detect_folder_draws_the_class_given_into_a_new_run_folder_under_the_root(
        tmp_path: Path, constant_model: Path, capsys: pytest.CaptureFixture) -> None:
    """No --output: the annotated copies go to <root>/runs/detect/predict; each label reads "cat 0.80": the
    label reaches the text's width (OpenCV's own text size) plus 4 px of margin right of the box's corner."""
    source = tmp_path / "frames"
    source.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(source / name), np.full((480, 640, 3), 90, np.uint8))
    status, lines = run(capsys, tmp_path, "detect", "--source", str(source), "--model", str(constant_model),
                        "--class", "cat")
    out = tmp_path / "runs" / "detect" / "predict"
    assert status == 0 and lines[-1].endswith(f"annotated images and predictions.jsonl in {out}")
    assert lines[-1].startswith("2 images, model ")
    (text_width, _), _ = cv2.getTextSize("cat 0.80", cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    annotated = cv2.imread(str(out / "a.jpg"))
    assert abs(label_right_edge(annotated, CONSTANT_FRAME_BOX) - (text_width + 4)) <= 1  # JPEG blurs an edge


def test_detect_no_display_keeps_the_window_shut_on_a_desktop(
        tmp_path: Path, constant_model: Path, sample_video: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a DISPLAY set (one no window can open on), --no-display runs the video through, --max-frames 4
    frames of it, into --output; a window that could not open would have ended the run after one frame."""
    monkeypatch.setenv("DISPLAY", ":987")
    output = tmp_path / "out.mp4"
    status, lines = run(capsys, tmp_path, "detect", "--source", str(sample_video), "--model", str(constant_model),
                        "--no-display", "--max-frames", "4", "--output", str(output))
    assert status == 0
    assert lines[-1].startswith("4 frames, model ") and lines[-1].endswith(f", annotated video: {output}")
    video = cv2.VideoCapture(str(output))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    video.release()


# ----------------------------------------------------------------------------- export


def test_export_prints_the_file_or_folder_and_its_size_and_the_check(
        tmp_path: Path, small_model_file: Path, capsys: pytest.CaptureFixture) -> None:
    """The default format (a .tflite file, float16 weights here) and a SavedModel folder, whose size is that of
    every file below it. Sizes come from `os.stat` on the files the export wrote."""
    out = tmp_path / "out"
    status, lines = run(capsys, tmp_path, "export", "--model", str(small_model_file), "--quantize", "float16",
                        "--out", str(out))
    exported = out / f"{small_model_file.stem}_float16.tflite"
    assert status == 0, lines
    assert lines[-2] == f"exported tflite model (float16) to {exported} ({os.stat(exported).st_size / 1e6:.2f} MB)"
    assert lines[-1].startswith(f"{exported} on ") and lines[-1].endswith(": OK")

    status, lines = run(capsys, tmp_path, "export", "--model", str(small_model_file), "--format", "savedmodel",
                        "--out", str(out))
    exported = out / f"{small_model_file.stem}_savedmodel"
    files = [os.path.join(folder, name) for folder, _, names in os.walk(exported) for name in names]
    assert status == 0, lines
    assert len(files) > 2  # saved_model.pb, variables/ and more: the size is that of them all
    assert lines[-2] == (f"exported savedmodel model (none) to {exported} "
                         f"({sum(os.stat(file).st_size for file in files) / 1e6:.2f} MB)")
    assert lines[-1].startswith(f"{exported} on ") and lines[-1].endswith(": OK")


def test_export_web_int8_calibrates_on_the_folder_given_and_labels_the_class(
        tmp_path: Path, small_model_file: Path, capsys: pytest.CaptureFixture) -> None:
    """The project has no aug_data/train: int8 can only calibrate on --calibration's images."""
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(calibration / f"{i}.jpg"), rng.integers(0, 255, (120, 120, 3), np.uint8))
    status, lines = run(capsys, tmp_path, "export", "--model", str(small_model_file), "--format", "web",
                        "--quantize", "int8", "--calibration", str(calibration), "--class", "cat")
    web = Paths(tmp_path).web
    assert status == 0, lines
    assert lines[-2].startswith(f"exported the web page to {web} (")
    assert lines[-1].endswith(": OK")
    config = json.loads((web / "model.json").read_text())
    assert config["class_name"] == "cat" and config["quantize"] == "int8"


# ----------------------------------------------------------------------------- train and demo


def test_train_flags_reach_the_run_and_its_record(sample_root: Path, capsys: pytest.CaptureFixture) -> None:
    """One epoch of the quick preset on one augmented copy per frame, in the run folder --name gives; run.json
    records the flags; --strategy multiworker without TF_CONFIG is refused (it reaches make_strategy)."""
    assert main(["--root", str(sample_root), "split"]) == 0
    assert main(["--root", str(sample_root), "augment", "--per-image", "1", "--workers", "1"]) == 0
    capsys.readouterr()
    status, lines = run(capsys, sample_root, "train", "--preset", "quick", "--epochs", "1", "--batch-size", "4",
                        "--head-units", "8", "--seed", "2", "--name", "mine", "--cache", "off")
    run_dir = Paths(sample_root).train_runs / "mine"
    assert status == 0, lines
    trained = next(line for line in lines if line.startswith("trained small ("))
    assert trained.endswith(f" parameters) for 1 epoch(s), batch 4, seed 2; run folder {run_dir}")
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["backbone"], record["batch_size"], record["head_units"], record["seed"]) == ("small", 4, 8, 2)
    status, lines = run(capsys, sample_root, "train", "--preset", "quick", "--epochs", "1", "--strategy",
                        "multiworker")
    assert status == 2


def test_demo_flags_reach_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--frames 8 --per-image 1 --epochs 1 --seed 4 --check-frames 3: those many frames, copies, epochs and
    check frames, the seed in the training line; --cache file keeps the decoded crops in a temporary file."""
    import tempfile

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    status, lines = run(capsys, tmp_path / "project", "demo", "--frames", "8", "--per-image", "1", "--epochs", "1",
                        "--seed", "4", "--check-frames", "3", "--cache", "file", "--preset", "quick")
    assert {p.name[:18] for p in temporary.glob("facetracker-*")} == {"facetracker-cache-"}  # training, validation
    paths = Paths(tmp_path / "project")
    assert status == 0
    assert len(list(paths.images.iterdir())) == 8
    train_frames = len(list(paths.split_images("train").iterdir()))
    assert len(list(paths.aug_images("train").iterdir())) == train_frames
    assert len(list(paths.check_session.images.iterdir())) == 3
    trained = next(line for line in lines if line.startswith("trained small ("))
    assert " for 1 epoch(s), batch 16, seed 4; " in trained
    assert lines[lines.index("FaceTracker demo: done") + 1].split()[0] == "sample-data"


def test_demo_preset_reaches_training(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo --preset tutorial` trains VGG16 with ImageNet weights. Offline (an empty Keras folder, a URL that
    cannot be read) the demo prepares the data, then stops at training with the line that says how to supply
    the weights. The quick preset, trained instead, would need no download and end in 0."""
    import keras

    from facetracker import model

    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path / "keras"))
    monkeypatch.setattr(model, "KERAS_APPS_URL", (tmp_path / "offline").as_uri() + "/")
    paths = Paths(tmp_path / "project")
    status = main(["--root", str(paths.root), "demo", "--frames", "8", "--per-image", "1", "--epochs", "1",
                   "--preset", "tutorial"])
    assert status == 2
    assert len(list(paths.aug_images("train").iterdir())) == len(list(paths.split_images("train").iterdir()))
    assert "could not download the ImageNet weights of vgg16" in capsys.readouterr().err
    assert not paths.model.exists()
