"""The code the notebook shows (transform list, data pipeline, model builder, loss, optimizer, training
class, real-time loop) agrees with the package's.

The cells are taken from FaceDetection.ipynb by their tags and run in this process, so a learner who
edits nothing trains exactly what `facetracker train` trains, and sees the boxes `facetracker detect` draws.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import albumentations as A
import cv2
import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf

from facetracker import augment, dataset, losses, train
from facetracker.config import Paths
from facetracker.model import build_model

NOTEBOOK = Path(__file__).resolve().parents[1] / "FaceDetection.ipynb"
SIZE = 64


def cell_source(tag: str) -> str:
    """The source of the notebook cell tagged `tag`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    return next(c.source for c in notebook.cells if tag in c.metadata.get("tags", []))


@pytest.fixture(scope="module")
def notebook_code() -> dict:
    """The namespace after running the notebook's import cell and its teaching cells."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {"Path": Path}  # from the settings cell
    imports = next(c for c in notebook.cells if c.cell_type == "code" and "from facetracker import" in c.source)
    exec(imports.source.replace("paths = Paths(ROOT)", ""), namespace)
    for tag in ("transform", "load_image", "labels", "make_dataset", "model", "loss", "tracker"):
        exec(cell_source(tag).replace("transform = build_transform(crop=450)", ""), namespace)
    return namespace


def test_transform_list_is_the_package_one(notebook_code):
    ours = A.to_dict(notebook_code["build_transform"](crop=450))
    assert ours == A.to_dict(augment.build_transform(450))


@pytest.mark.parametrize("backbone", ["small", "mobilenetv2", "vgg16"])
def test_model_builder_is_the_package_one(notebook_code, backbone):
    theirs = build_model(backbone, SIZE if backbone != "vgg16" else 32, "none", 16)
    ours = notebook_code["build_model"](backbone, theirs.input_shape[1], "none", 16)
    assert ours.count_params() == theirs.count_params()
    ours.set_weights(theirs.get_weights())
    images = np.random.default_rng(0).random((2, *theirs.input_shape[1:]), dtype=np.float32)
    for mine, package in zip(ours(images), theirs(images), strict=True):
        np.testing.assert_allclose(mine, package, atol=1e-6)


def fixed_batch(n: int = 4) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    images = rng.random((n, SIZE, SIZE, 3), dtype=np.float32)
    corners = np.sort(rng.random((n, 2, 2), dtype=np.float32), axis=1)
    boxes = np.concatenate([corners[:, 0], corners[:, 1]], axis=1)
    classes = np.array([[1], [0], [1], [1]], np.float32)[:n]
    return images, (classes, boxes * classes)


def test_loss_is_the_package_one(notebook_code):
    _, (_, boxes) = fixed_batch()
    predicted = np.random.default_rng(2).random(boxes.shape, dtype=np.float32)
    ours = float(notebook_code["localization_loss"](boxes, predicted))
    assert ours == pytest.approx(float(losses.localization_loss(boxes, predicted)), rel=1e-6)
    assert ours > 0
    classes = fixed_batch()[1][0]  # the quick preset's masked loss: faces only
    masked = float(notebook_code["localization_loss"](boxes, predicted, classes))
    assert masked == pytest.approx(float(losses.masked_localization_loss(boxes, predicted, classes)), rel=1e-6)
    assert masked < ours
    sliver = np.ones_like(classes)  # sample 1 becomes a face cut to a sliver: class 1, no box
    unboxed = float(notebook_code["localization_loss"](boxes, predicted, sliver))
    assert unboxed == pytest.approx(float(losses.masked_localization_loss(boxes, predicted, sliver)), rel=1e-6)
    assert unboxed == pytest.approx(masked, rel=1e-6)


def one_step(tracker_class: type, loss, weights: list[np.ndarray], masked: bool = False
             ) -> tuple[list[np.ndarray], dict]:
    """Weights and logs after one train_step of `tracker_class` from `weights` on the fixed batch."""
    detector = build_model("small", SIZE, "none", 16)
    detector.set_weights(weights)
    tracker = tracker_class(detector)
    tracker.compile(losses.make_optimizer(10, 1e-3), losses.classification_loss(), loss, masked=masked)
    images, labels = fixed_batch()
    logs = tracker.train_step((tf.constant(images), tuple(tf.constant(v) for v in labels)))
    return detector.get_weights(), {name: float(value) for name, value in logs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True], ids=["tutorial loss", "quick preset's masked loss"])
def test_training_class_makes_the_package_first_update(notebook_code, masked):
    start = build_model("small", SIZE, "none", 16).get_weights()
    ours, our_logs = one_step(notebook_code["FaceTracker"], notebook_code["localization_loss"], start, masked)
    package_loss = losses.masked_localization_loss if masked else losses.localization_loss
    theirs, their_logs = one_step(train.FaceTracker, package_loss, start, masked)
    assert our_logs.keys() == their_logs.keys() == set(train.LOSS_NAMES)
    for name in train.LOSS_NAMES:
        assert our_logs[name] == pytest.approx(their_logs[name], rel=1e-5)
    moved = [not np.allclose(a, b) for a, b in zip(start, theirs, strict=True)]
    assert sum(moved) > len(start) // 2, "the step changed the weights"
    for mine, package in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, package, rtol=1e-4, atol=1e-6)
    keras.backend.clear_session()


# ----------------------------------------------------------------------------- sections 6-7: the data pipeline


def write_noise_samples(paths: Paths, split: str, n: int, seed: int) -> None:
    """n augmented samples of aug_data/<split>: JPEGs of random texture (real JPEG artefacts), half with a face."""
    rng = np.random.default_rng(seed)
    images, labels = paths.aug_images(split), paths.aug_labels(split)
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(n):
        stem = f"{split}{i:02d}.{n - i}"
        pixels = cv2.resize(rng.integers(0, 256, (45, 45, 3), dtype=np.uint8), (180, 180))
        cv2.imwrite(str(images / f"{stem}.jpg"), pixels)
        corner = rng.random(2) * 0.5
        box = [*corner, *(corner + 0.4)] if i % 2 else [0, 0, 0, 0]
        (labels / f"{stem}.json").write_text(json.dumps({"image": f"{stem}.jpg", "bbox": box, "class": i % 2}))


@pytest.fixture
def aug_paths(tmp_path) -> Paths:
    paths = Paths(tmp_path)
    for split, n in (("train", 20), ("val", 9)):
        write_noise_samples(paths, split, n, seed=len(split))
    return paths


def batches(data: tf.data.Dataset) -> list:
    return list(data.as_numpy_iterator())


def test_data_cells_build_the_package_pipeline(notebook_code, aug_paths):
    """Same element_spec and the same batches, in the same shuffled order, as `facetracker train` trains on."""
    ours = dataset.datasets(aug_paths, 4, seed=3, splits=("train", "val"), make=notebook_code["make_dataset"])
    theirs = dataset.datasets(aug_paths, 4, seed=3, splits=("train", "val"))
    first_epoch = {}
    for split in ("train", "val"):
        assert ours[split].element_spec == theirs[split].element_spec
        first_epoch[split] = batches(theirs[split])
        for (my_images, my_labels), (images, labels) in zip(batches(ours[split]), first_epoch[split], strict=True):
            np.testing.assert_allclose(my_images, images, atol=1e-6)
            for mine, package in zip(my_labels, labels, strict=True):
                np.testing.assert_array_equal(mine, package)
    in_file_order = dataset.make_dataset(aug_paths.aug_images("train"), aug_paths.aug_labels("train"), 4, shuffle=False)
    first = first_epoch["train"][0][1][1]
    assert not np.array_equal(first, batches(in_file_order)[0][1][1]), "the training split is shuffled"
    again = dataset.datasets(aug_paths, 4, seed=3, splits=("train",), make=notebook_code["make_dataset"])
    np.testing.assert_array_equal(batches(again["train"])[0][1][1], first)  # the seed fixes the order
    assert ours["train"].element_spec[1][0].shape.as_list() == [None, 1]  # static label shapes, as Keras 3 needs


def test_label_cell_refuses_an_image_without_a_label(notebook_code, aug_paths):
    next(aug_paths.aug_labels("val").glob("*.json")).unlink()
    with pytest.raises(notebook_code["FaceTrackerError"], match="do not pair up by name"):
        notebook_code["load_labels"](aug_paths.aug_images("val"), aug_paths.aug_labels("val"))


# ----------------------------------------------------------------------------- section 9: the optimizer


def optimizer_from_cell(source: str, preset: str, batches_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer the notebook's optimizer cell builds for `preset` and a training set of that many batches."""
    namespace = {"keras": keras, "settings": train.resolve_preset(preset),
                 "data": {"train": tf.data.Dataset.range(batches_per_epoch)}}
    exec(source, namespace)
    return namespace["opt"]


@pytest.mark.parametrize("preset", ["tutorial", "quick"])
def test_optimizer_cell_is_the_package_one(preset):
    ours = optimizer_from_cell(cell_source("optimizer"), preset, 7)
    config = train.resolve_preset(preset)
    theirs = losses.make_optimizer(7, config.learning_rate, config.ema_momentum)
    assert {**ours.get_config(), "name": None} == {**theirs.get_config(), "name": None}  # Keras numbers the names
    for step in (0, 7, 70):
        assert float(ours._learning_rate(step)) == pytest.approx(float(theirs._learning_rate(step)), rel=1e-7)


@pytest.mark.slow
def test_an_edited_learning_rate_and_decay_reach_training(aug_paths):
    source = cell_source("optimizer").replace("LEARNING_RATE = settings.learning_rate", "LEARNING_RATE = 5e-4")
    source = source.replace("lr_decay = 1 / 0.75 - 1", "lr_decay = 1.0")  # half the rate after one epoch
    opt = optimizer_from_cell(source, "quick", 5)
    data = dataset.datasets(aug_paths, 4, seed=0, splits=("train", "val"))
    result = train.train(aug_paths, data["train"], data["val"], preset="quick", epochs=1, verbose=0, optimizer=opt,
                         head_units=16)
    run = json.loads((result.log_dir / train.RUN_FILE).read_text())
    assert run["learning_rate"] == 5e-4
    schedule = run["optimizer"]["config"]["learning_rate"]["config"]  # the optimizer that trained, as built
    assert schedule["initial_learning_rate"] == 5e-4 and schedule["decay_rate"] == 1.0
    assert result.config.learning_rate == 5e-4
    keras.backend.clear_session()


# ----------------------------------------------------------------------------- section 11: the real-time loop


def run_loop_cell(source: str, root: Path, camera: Path, model: Path) -> dict:
    """Run the notebook's loop cell (after its import cell) on `camera` with `model`; returns its namespace."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    imports = next(c for c in notebook.cells if c.cell_type == "code" and "from facetracker import" in c.source)
    namespace: dict = {"ROOT": root, "CLASS_NAME": "face", "camera": str(camera)}
    exec(imports.source, namespace)
    paths = namespace["paths"]
    paths.logs.mkdir(parents=True, exist_ok=True)
    if not paths.model.exists():
        shutil.copy(model, paths.model)
    exec(source, namespace)
    return namespace


def video_frames(path: Path) -> list[np.ndarray]:
    video = cv2.VideoCapture(str(path))
    frames = []
    while (frame := video.read()[1]) is not None:
        frames.append(frame)
    video.release()
    return frames


@pytest.fixture
def headless(monkeypatch):
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):  # no window can open: the loop shows its frames inline
        monkeypatch.delenv(key, raising=False)


@pytest.mark.slow
def test_loop_cell_finds_the_boxes_facetracker_detect_finds(tmp_path, sample_video, small_model_file, headless):
    frames = video_frames(sample_video)
    stills = tmp_path / "stills"
    stills.mkdir()
    for k, frame in enumerate(frames):
        cv2.imwrite(str(stills / f"{k:03d}.png"), frame)
    cli = Path(sys.executable).with_name("facetracker")
    subprocess.run([str(cli), "detect", "--source", str(stills), "--model", str(small_model_file),
                    "--output", str(tmp_path / "detected")], check=True, capture_output=True)
    lines = (tmp_path / "detected" / "predictions.jsonl").read_text().splitlines()
    detected = [json.loads(line) for line in lines]

    loop = run_loop_cell(cell_source("loop"), tmp_path / "nb", sample_video, small_model_file)
    assert len(loop["found"]) == len(detected) == len(frames)
    for (score, box), record in zip(loop["found"], detected, strict=True):
        assert list(box) == record["box"]
        assert score == pytest.approx(record["score"], abs=1e-5)
    assert not loop["cap"].isOpened(), "the capture is released"
    assert len(video_frames(loop["RECORDING"])) == len(frames)


def box_pixels(frames: list[np.ndarray], bgr: tuple[int, int, int]) -> int:
    """How many pixels of the frames are close to the colour `bgr` (video compression shifts colours a little)."""
    target = np.array(bgr, np.int16)
    return sum(int((np.abs(f.astype(np.int16) - target).max(axis=2) < 50).sum()) for f in frames)


@pytest.mark.slow
def test_edited_colour_and_threshold_change_the_written_frames(tmp_path, sample_video, small_model_file, headless):
    source = cell_source("loop")
    always = source.replace("THRESHOLD = 0.5", "THRESHOLD = -1.0")  # every frame gets a box
    assert always != source
    written = {}
    for name, edited in {"blue": always, "red": always.replace("BOX_COLOR = (255, 0, 0)", "BOX_COLOR = (0, 0, 255)"),
                         "none": source.replace("THRESHOLD = 0.5", "THRESHOLD = 1.0")}.items():
        loop = run_loop_cell(edited, tmp_path / name, sample_video, small_model_file)
        written[name] = video_frames(loop["RECORDING"])
    blue, red = (255, 0, 0), (0, 0, 255)
    background = box_pixels(written["none"], blue), box_pixels(written["none"], red)
    assert box_pixels(written["blue"], blue) > background[0] + 1000
    assert box_pixels(written["red"], red) > background[1] + 1000
    assert box_pixels(written["red"], blue) < background[0] + 100  # the blue box is gone, not drawn over
