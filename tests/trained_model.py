"""The real small detector, trained for real steps on the sample frames: one per test session, cached on disk.

`build_model("small", 120, "none", 16)` (nested backbone, BatchNorm, Rescaling, the two heads) trained
with the package's own trainer (`build_tracker`, the tutorial's losses) on the natural sample frames
as the real-time path sees them (`frame_to_input`, truth from `labelled_frames`). Its boxes have real
sizes, so IoU checks mean something, and its scores separate faces from empty frames.
"""

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from facetracker.annotations import labelled_frames
from facetracker.config import Paths
from facetracker.fileio import read_image
from facetracker.geometry import NO_BOX
from facetracker.inference import frame_to_input
from facetracker.model import float32_copy
from facetracker.train import build_tracker, resolve_preset

EPOCHS = 15  # 20 frames, batch 8: 45 steps


def train_small_model(sample_root: Path, path: Path) -> Path:
    """Train the small detector on sample_root's frames and save it (its detector part) at `path`."""
    keras.utils.set_random_seed(0)
    paths = Paths(sample_root)
    dataset = frame_dataset(paths).batch(8)
    # 45 steps on 20 frames: at the preset's 1e-3 the box heights collapse to ~0 this early, and IoU checks
    # between two nearly empty boxes mean nothing; 3e-4 gives real-sized boxes.
    config = resolve_preset("quick", head_units=16, learning_rate=3e-4)
    tracker = build_tracker(config, 120, len(dataset), tf.distribute.get_strategy())
    tracker.fit(dataset, epochs=EPOCHS, verbose=0, shuffle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    float32_copy(tracker.detector).save(path)  # as train's SaveBest saves it, whatever the training precision
    return path


def frame_dataset(paths: Paths) -> tf.data.Dataset:
    """The labelled frames as (input, (class, box)) in file order; a face the visibility rule drops is "no face"."""
    samples, truth = labelled_frames(paths.images, paths.labels, "face")
    inputs = np.stack([frame_to_input(read_image(s.image))[0] for s in samples])
    classes = np.array([[float(box is not None)] for box in truth], np.float32)
    boxes = np.array([box or NO_BOX for box in truth], np.float32)
    return tf.data.Dataset.from_tensor_slices((inputs, (classes, boxes)))


def trained_model_file(factory: pytest.TempPathFactory, sample_template: Path, folder: Path) -> Path:
    """The trained model copied into `folder/small.keras` (trained once per session, then reused)."""
    cached = factory.getbasetemp() / "trained-small" / "small.keras"
    if not cached.is_file():
        train_small_model(sample_template, cached)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(cached, folder / "small.keras"))


def frame_inputs(sample_root: Path) -> np.ndarray:
    """The sample frames as model inputs [N, 120, 120, 3] (centre square, RGB, [0, 1])."""
    import cv2

    frames = sorted(Paths(sample_root).images.glob("*.jpg"))
    return np.stack([frame_to_input(cv2.imread(str(p)))[0] for p in frames])
