"""The code the notebook shows (transform list, model builder, loss, training class) agrees with the package's.

The cells are taken from FaceDetection.ipynb by their tags and run in this process, so a learner who
edits nothing trains exactly what `facetracker train` trains.
"""

from pathlib import Path

import albumentations as A
import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf

from facetracker import augment, losses, train
from facetracker.model import build_model

NOTEBOOK = Path(__file__).resolve().parents[1] / "FaceDetection.ipynb"
SIZE = 64


@pytest.fixture(scope="module")
def notebook_code() -> dict:
    """The namespace after running the notebook's import cell and its teaching cells."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {}
    imports = next(c for c in notebook.cells if c.cell_type == "code" and "from facetracker import" in c.source)
    exec(imports.source.replace("paths = Paths(ROOT)", ""), namespace)
    for tag in ("transform", "model", "loss", "tracker"):
        cell = next(c for c in notebook.cells if tag in c.metadata.get("tags", []))
        exec(cell.source.replace("transform = build_transform(crop=450)", ""), namespace)
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
