"""A catalogue of bad inputs, each run through the real CLI on real files.

Every case must end in a clear error (exit code != 0) that names the file or the argument and
the fix, never a traceback, and must leave the raw data (data/images, data/labels) byte-identical.
A few cases are argparse's own errors (usage line, exit 2); the rest are FaceTrackerErrors
(one line `facetracker <step>: error: ...`, exit 2) or a `check` report (ERROR lines, exit 1).
The security checks at the end: paths in labels are never opened, embedded image data is
never decoded, models load in Keras safe mode, and nothing is written outside --root.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import pytest
from conftest import SMALL_MODEL, hash_tree

from facetracker.annotations import MAX_LABEL_BYTES
from facetracker.cli import build_parser, main
from facetracker.config import Paths
from facetracker.model import build_model
from facetracker.split import split_dataset

# ----------------------------------------------------------------------------- helpers


def first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def first_label(root: Path) -> Path:
    return first(root / "data" / "labels", "*.json")


def first_image(root: Path) -> Path:
    return first(root / "data" / "images", "*.jpg")


def overwrite(path: Path, text: str) -> str:
    """Replace a file's text; returns its name."""
    path.write_text(text)
    return path.name


def write_label(root: Path, data: object) -> str:
    """Replace the first raw label with `data` (JSON); returns its file name."""
    path = first_label(root)
    path.write_text(json.dumps(data))
    return path.name


def split(root: Path) -> None:
    split_dataset(Paths(root))


def detector(channels: int = 3, with_lambda: bool = False) -> keras.Model:
    """The real small detector; with a 1-channel input adapter, or behind a Lambda layer, to make bad models."""
    keras.utils.set_random_seed(0)
    model = build_model(*SMALL_MODEL)
    if channels == 3 and not with_lambda:
        return model
    inputs = keras.Input((120, 120, channels))
    x = keras.layers.Conv2D(3, 1)(inputs) if channels != 3 else inputs
    if with_lambda:
        x = keras.layers.Lambda(lambda t: t * 1.0)(x)
    return keras.Model(inputs, model(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of models: good.keras (the real small detector), gray.keras (1-channel input), lambda.keras."""
    folder = tmp_path_factory.mktemp("models")
    detector().save(folder / "good.keras")
    detector(channels=1).save(folder / "gray.keras")
    detector(with_lambda=True).save(folder / "lambda.keras")
    return folder


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> Run:
    """`facetracker ARGV` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def raw_hashes(root: Path) -> dict[str, dict[str, str]]:
    return {name: hash_tree(root / "data" / name) for name in ("images", "labels")}


# ----------------------------------------------------------------------------- the catalogue

# kind: "error" (FaceTrackerError: one line on stderr, exit 2), "report" (`check`: ERROR lines on stdout,
# exit 1) or "usage" (argparse: usage and error on stderr, exit 2).
Setup = Callable[[Path], str | None]  # changes the project; may return a file name the message must contain


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup | None
    argv: tuple[str, ...]
    expect: tuple[str, ...]  # substrings of the message ({root}, {models}, {video} are filled in)
    kind: str = "error"


def truncate_jpeg(root: Path) -> str:
    path = first_image(root)
    path.write_bytes(path.read_bytes()[:2000])
    return path.name


def add_file(relative: str, data: bytes) -> Setup:
    def setup(root: Path) -> str:
        (root / relative).write_bytes(data)
        return Path(relative).name
    return setup


def huge_label(root: Path) -> str:
    path = first_label(root)
    with path.open("r+b") as file:
        file.truncate(MAX_LABEL_BYTES + 1)  # sparse: the size is checked before anything is read
    return path.name


def corrupt_split_label(root: Path) -> str:
    split(root)
    path = first(root / "data" / "train" / "labels", "*.json")
    path.write_text("{not json")
    return path.name


def remove_data(root: Path) -> None:
    shutil.rmtree(root / "data")


def images_is_file(root: Path) -> None:
    shutil.rmtree(root / "data" / "images")
    (root / "data" / "images").write_text("not a folder")


def empty_val_split(root: Path) -> None:
    split(root)
    for sub in ("images", "labels"):
        for path in (root / "data" / "val" / sub).iterdir():
            path.unlink()


def text_model(root: Path) -> str:
    (root / "facetracker.keras").write_text("this is not a model")
    return "facetracker.keras"


def split_then(setup: Setup) -> Setup:
    def both(root: Path) -> str | None:
        split(root)
        return setup(root)
    return both


VIDEO = ("--source", "{video}", "--no-display")
GOOD = ("--model", "{models}/good.keras")

CASES = [
    # labels (data/labels)
    Case("label-malformed-json", lambda r: overwrite(first_label(r), "{not json"),
         ("check",), ("not valid JSON", "re-save it in labelme"), "report"),
    Case("label-zero-area", lambda r: write_label(r, {"shapes": [{"label": "face", "shape_type": "rectangle",
                                                                  "points": [[10, 10], [10, 50]]}]}),
         ("check",), ("zero area", "redraw the box"), "report"),
    Case("label-is-a-list", lambda r: write_label(r, [1, 2, 3]), ("check",), ("not a labelme file",), "report"),
    Case("label-points-not-numbers", lambda r: write_label(r, {"shapes": [{"label": "face",
                                                                           "points": [["a", "b"], [1, 2]]}]}),
         ("check",), ("malformed points", "redraw it"), "report"),
    Case("label-no-shapes-list", lambda r: write_label(r, {"shapes": "face"}), ("check",), ("no 'shapes' list",),
         "report"),
    Case("label-huge-file", huge_label, ("check",), ("too large for a labelme file", "without image data"), "report"),
    Case("label-malformed-in-split", corrupt_split_label, ("augment", "--per-image", "1", "--workers", "1"),
         ("not valid JSON", "facetracker check")),
    # images (data/images)
    Case("image-truncated-jpeg", truncate_jpeg, ("check",), ("truncated JPEG", "re-capture it or delete it"),
         "report"),
    Case("image-text-named-jpg", add_file("data/images/notes.jpg", b"hello, not a photo"), ("check",),
         ("not a JPEG or PNG", "convert it"), "report"),
    Case("image-zero-bytes", add_file("data/images/empty.jpg", b""), ("check",), ("not a JPEG or PNG",), "report"),
    # folders
    Case("no-data-images-check", remove_data, ("check",), ("data/images", "no images folder", "facetracker collect")),
    Case("no-data-images-split", remove_data, ("split",), ("data/images", "no images to split")),
    Case("data-images-is-a-file", images_is_file, ("check",), ("data/images", "no images folder")),
    Case("empty-val-split", empty_val_split, ("augment", "--splits", "val", "--per-image", "1", "--workers", "1"),
         ("data/val/images", "facetracker split")),
    Case("root-is-a-file", None, ("--root", "{models}/good.keras", "check"), ("--root", "good.keras", "is a file")),
    Case("class-empty", None, ("check", "--class", ""), ("--class", "--class face")),
    # configuration
    Case("ratios-sum-to-2", None, ("split", "--ratios", "1", "0.5", "0.5"), ("--ratios", "sum to 1")),
    Case("ratios-negative", None, ("split", "--ratios", "1.2", "-0.1", "-0.1"), ("--ratios", "non-negative")),
    Case("per-image-0", split, ("augment", "--per-image", "0"), ("--per-image 0", ">= 1")),
    Case("per-image-negative", split, ("augment", "--per-image", "-5"), ("--per-image -5", ">= 1")),
    Case("crop-0", split, ("augment", "--crop", "0", "--per-image", "1"), ("--crop 0", "e.g. 450")),
    Case("workers-negative", split, ("augment", "--workers", "-2", "--per-image", "1"), ("--workers -2",)),
    Case("count-negative", None, ("sample-data", "--count", "-1"), ("count=-1", "count >= 0")),
    Case("negatives-1.5", None, ("sample-data", "--negatives", "1.5"), ("negatives=1.5", "<= 1")),
    Case("preset-unknown", None, ("train", "--preset", "huge"), ("invalid choice: 'huge'", "'tutorial', 'quick'")),
    Case("epochs-0", None, ("train", "--preset", "quick", "--epochs", "0"), ("--epochs 0", "positive")),
    Case("batch-size-0", None, ("train", "--batch-size", "0"), ("--batch-size 0", "positive")),
    Case("learning-rate-negative", None, ("train", "--learning-rate", "-0.001"), ("--learning-rate", "positive")),
    Case("train-without-augmented-data", None, ("train", "--preset", "quick"),
         ("aug_data/train/images", "facetracker augment")),
    Case("backbone-unknown", None, ("train", "--backbone", "resnet"), ("--backbone", "resnet"), "usage"),
    # model files
    Case("evaluate-missing-model", split, ("evaluate",), ("facetracker.keras not found", "--model PATH")),
    Case("detect-missing-model", None, ("detect", *VIDEO), ("facetracker.keras not found", "--model PATH")),
    Case("export-missing-model", None, ("export",), ("facetracker.keras not found", "--model PATH")),
    Case("annotate-prelabel-missing-model", None, ("annotate", "--prelabel", "model", "--no-gui"),
         ("facetracker.keras not found", "--model PATH")),
    Case("evaluate-text-as-keras", split_then(text_model), ("evaluate",), ("not a .keras file",)),
    Case("export-text-as-keras", text_model, ("export",), ("not a .keras file",)),
    Case("detect-garbage-tflite", add_file("model.tflite", os.urandom(4096)),
         ("detect", "--model", "{root}/model.tflite", *VIDEO), ("not a TFLite model", "facetracker export")),
    Case("detect-wrong-input-shape", None, ("detect", "--model", "{models}/gray.keras", *VIDEO),
         ("gray.keras", "(None, 120, 120, 1)", "facetracker train")),
    Case("export-wrong-input-shape", None, ("export", "--model", "{models}/gray.keras"),
         ("gray.keras", "(None, 120, 120, 1)")),
    Case("evaluate-grid-negative", split, ("evaluate", *GOOD, "--grid", "-1"), ("--grid -1", "0 for no grid")),
    Case("export-out-is-a-file", add_file("outfile", b"x"), ("export", *GOOD, "--out", "{root}/outfile"),
         ("--out", "outfile", "give a folder")),
    # video sources
    Case("detect-missing-video", None, ("detect", *GOOD, "--source", "{root}/nope.mp4", "--no-display"),
         ("--source", "nope.mp4", "no such video file")),
    Case("collect-not-a-video", add_file("notes.mp4", b"hello"), ("collect", "--source", "{root}/notes.mp4"),
         ("notes.mp4", "cannot open video file")),
    Case("detect-camera-99", None, ("detect", *GOOD, "--source", "99", "--no-display"),
         ("camera 99", "--source 0")),
    Case("collect-camera-99", None, ("collect", "--source", "99", "--count", "1"), ("camera 99", "--source 0")),
    Case("detect-output-gif", None, ("detect", *GOOD, *VIDEO, "--output", "{root}/out.gif"),
         ("--output", "out.gif", ".mp4, .avi")),
    Case("detect-max-frames-negative", None, ("detect", *GOOD, *VIDEO, "--max-frames", "-1"), ("--max-frames -1",)),
    Case("detect-threshold-2", None, ("detect", *GOOD, *VIDEO, "--threshold", "2"), ("--threshold 2", "0 and 1")),
    Case("collect-interval-negative", None, ("collect", "--source", "{video}", "--interval", "-1"),
         ("interval=-1", ">= 0")),
    # command line
    Case("no-step", None, (), ("required", "<step>"), "usage"),
    Case("count-not-a-number", None, ("sample-data", "--count", "abc"), ("--count", "invalid int value"), "usage"),
    Case("ratios-two-values", None, ("split", "--ratios", "0.5", "0.5"), ("--ratios", "expected 3"), "usage"),
    Case("demo-frames-negative", None, ("demo", "--frames", "-1"), ("--frames -1", ">= 1")),
    Case("serve-no-page", None, ("serve",), ("holds no index.html", "facetracker export --format web")),
]


def test_every_step_of_the_command_has_bad_input_cases():
    """The catalogue covers each step the real parser offers (a new step needs its bad-input cases)."""
    parser = build_parser()
    steps = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    covered = {arg for case in CASES for arg in case.argv if not arg.startswith(("-", "{"))} & set(steps)
    assert set(steps) == covered, sorted(set(steps) - covered)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_a_clear_error(case, sample_root, models, sample_video, capsys, monkeypatch, tmp_path):
    elsewhere = tmp_path / "cwd"  # the working folder is not --root: nothing may land in it
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    named = case.setup(sample_root) if case.setup else None
    before = raw_hashes(sample_root)
    outside = {path: digest for path, digest in hash_tree(tmp_path).items() if not path.startswith("project/")}
    models_before = hash_tree(models)
    fill = {"root": str(sample_root), "models": str(models), "video": str(sample_video)}
    argv = [arg.format(**fill) for arg in case.argv]
    if not argv or argv[0] != "--root":
        argv = ["--root", str(sample_root), *argv]

    result = run_cli(argv, capsys)

    assert result.code != 0
    assert "Traceback" not in result.err + result.out
    if case.kind == "report":
        assert result.code == 1
        message = "\n".join(line for line in result.out.splitlines() if line.startswith("ERROR"))
        assert message, result.out
    elif case.kind == "usage":
        assert result.code == 2
        message = result.err.strip().splitlines()[-1]
        assert message.startswith("facetracker")
    else:
        assert result.code == 2
        lines = result.err.strip().splitlines()
        step = next(arg for arg in argv[2:] if not arg.startswith("-"))
        assert lines[0].startswith(f"facetracker {step}: error: "), result.err
        assert all(line.startswith("  - ") for line in lines[1:]), result.err  # only a listing may follow
        message = result.err
    for text in (*case.expect, *([named] if named else [])):
        assert text.format(**fill) in message, f"{text!r} not in {message!r}"
    assert raw_hashes(sample_root) == before
    assert {path: digest for path, digest in hash_tree(tmp_path).items() if not path.startswith("project/")} == outside
    assert not any(elsewhere.iterdir()) and hash_tree(models) == models_before


@pytest.mark.slow
def test_the_installed_command_prints_one_line(sample_root):
    """The same through the real entry point in a subprocess: one line on stderr, exit 2."""
    command = Path(sys.executable).with_name("facetracker")
    argv = [str(command)] if command.is_file() else [sys.executable, "-m", "facetracker.cli"]
    before = raw_hashes(sample_root)
    done = subprocess.run([*argv, "--root", str(sample_root), "split", "--ratios", "1", "1", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "facetracker split: error: --ratios (1.0, 1.0, 1.0): give 3 non-negative shares for train/test/val that "
        "sum to 1, e.g. 0.7 0.15 0.15."]
    assert raw_hashes(sample_root) == before


# ----------------------------------------------------------------------------- security


def test_image_path_outside_the_dataset_is_reported_and_never_opened(sample_root, capsys, monkeypatch, tmp_path):
    secret = tmp_path / "secret.jpg"
    shutil.copy(first_image(sample_root), secret)
    label = first_label(sample_root)
    data = json.loads(label.read_text())
    data["imagePath"] = "../../../secret.jpg"
    label.write_text(json.dumps(data))
    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(audit)  # cannot be removed; it only appends to this test's list
    result = run_cli(["--root", str(sample_root), "check"], capsys)
    reading = list(opened)
    opened.clear()

    assert result.code == 0  # a warning, not an error: the label is paired with its image by name
    assert "points outside the dataset; ignored, never opened" in result.out
    assert label.name in result.out
    assert any(Path(path).name == label.name for path in reading)  # the hook sees what is opened
    assert not any(Path(path).name == "secret.jpg" for path in reading)


def test_embedded_image_data_is_never_decoded(sample_root, capsys, monkeypatch):
    label = first_label(sample_root)
    data = json.loads(label.read_text())
    data["imageData"] = base64.b64encode(os.urandom(6 * 1024 * 1024)).decode()  # 8 MB of base64
    label.write_text(json.dumps(data))

    def refuse(*args, **kwargs):
        raise AssertionError("imageData was decoded")

    monkeypatch.setattr(base64, "b64decode", refuse)
    monkeypatch.setattr(base64, "standard_b64decode", refuse)
    result = run_cli(["--root", str(sample_root), "check"], capsys)
    assert result.code == 0, result.out
    assert "0 errors" in result.out


def test_label_too_large_is_refused_before_reading(sample_root, capsys, monkeypatch):
    label = first_label(sample_root)
    with label.open("r+b") as file:
        file.truncate(MAX_LABEL_BYTES + 1)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} was read"), raising=True)
    from facetracker.annotations import load_label_json

    data, error = load_label_json(label)
    assert data is None and "too large" in error and label.name in error


@pytest.mark.parametrize("step", ["evaluate", "detect", "export"])
def test_model_with_a_lambda_layer_is_refused(step, sample_root, models, sample_video, capsys):
    model = str(models / "lambda.keras")
    if step == "evaluate":
        split(sample_root)
    extra = {"evaluate": [], "detect": ["--source", str(sample_video), "--no-display"], "export": []}[step]
    result = run_cli(["--root", str(sample_root), step, "--model", model, *extra], capsys)
    assert result.code == 2
    assert result.err.strip() == (
        f"facetracker {step}: error: model {model} cannot be loaded (it contains a Lambda layer (Python code), "
        "which safe mode refuses to load); retrain it with facetracker train or re-save it without custom Python code.")
    assert not (sample_root / "export").exists()


@pytest.mark.slow
def test_nothing_is_written_outside_root(tmp_path, capsys, monkeypatch, small_model_file):
    """Successful steps run from another working folder write only below --root."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = hash_tree(tmp_path)
    model_before = hash_tree(small_model_file.parent)
    root = tmp_path / "a"
    for argv in (["sample-data", "--count", "12"], ["check"], ["split"], ["augment", "--per-image", "2", "--workers",
                 "1"], ["evaluate", "--model", str(small_model_file), "--grid", "2"]):
        result = run_cli(["--root", str(root), *argv], capsys)
        assert result.code == 0, result.err
    after = {path: digest for path, digest in hash_tree(tmp_path).items() if not path.startswith("a/")}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "cwd"]
    assert hash_tree(root / "aug_data") and (root / "logs" / "evaluation.json").is_file()
    assert hash_tree(small_model_file.parent) == model_before
