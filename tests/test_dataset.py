"""Tests for facetracker.dataset: real JPEG and JSON files in tmp_path, no mocks."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.patches import Rectangle

from facetracker.config import SPLITS, Paths
from facetracker.dataset import datasets, load_labels, make_dataset, to_network_input
from facetracker.errors import FaceTrackerError
from facetracker.geometry import box_to_square, center_square
from facetracker.inference import frame_to_input
from facetracker.plots import plot_samples

N_SAMPLES = 10


def write_aug_samples(images: Path, labels: Path, n: int = N_SAMPLES) -> None:
    """n augmented-style samples whose grey level and box both encode their index i."""
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"s{i:02d}.{n - i}"  # label order by name differs from index order: pairing must use the stem
        cv2.imwrite(str(images / f"{stem}.jpg"), np.full((90, 90, 3), 20 * i, dtype=np.uint8))
        bbox = [i / 100, 0.1, i / 100 + 0.5, 0.6] if i % 2 else [0, 0, 0, 0]
        (labels / f"{stem}.json").write_text(json.dumps({"image": f"s{i:02d}.jpg", "bbox": bbox, "class": i % 2}))


@pytest.fixture
def aug_split(tmp_path) -> tuple[Path, Path]:
    images, labels = tmp_path / "aug" / "images", tmp_path / "aug" / "labels"
    write_aug_samples(images, labels)
    return images, labels


def test_load_labels_pairs_by_stem(aug_split):
    images, labels = aug_split
    paths, classes, boxes = load_labels(labels, images)
    assert classes.shape == (N_SAMPLES, 1) and boxes.shape == (N_SAMPLES, 4)
    assert classes.dtype == boxes.dtype == np.float32
    for path, cls, box in zip(paths, classes, boxes, strict=True):
        label = json.loads((labels / f"{Path(path).stem}.json").read_text())
        assert cls[0] == label["class"] and np.allclose(box, label["bbox"])


@pytest.mark.parametrize("missing", ["label", "image"])
def test_unpaired_files_are_reported(aug_split, missing):
    images, labels = aug_split
    lost = labels / "s03.7.json" if missing == "label" else images / "s03.7.jpg"
    lost.unlink()
    other = images / "s03.7.jpg" if missing == "label" else labels / "s03.7.json"
    with pytest.raises(FaceTrackerError, match=str(other)):
        load_labels(labels, images)


def test_malformed_label_is_reported(aug_split):
    images, labels = aug_split
    (labels / "s02.8.json").write_text('{"bbox": [0, 0, 0, 0]}')
    with pytest.raises(FaceTrackerError, match="s02.8.json"):
        load_labels(labels, images)


def test_make_dataset_shapes_and_pairing(aug_split):
    images, labels = aug_split
    dataset = make_dataset(images, labels, batch_size=4, shuffle=True, seed=3)
    image_spec, (class_spec, box_spec) = dataset.element_spec
    assert image_spec.shape.as_list() == [None, 120, 120, 3] and image_spec.dtype == tf.float32
    assert class_spec.shape.as_list() == [None, 1] and box_spec.shape.as_list() == [None, 4]
    seen = []
    for batch_images, (batch_classes, batch_boxes) in dataset.as_numpy_iterator():
        assert batch_images.min() >= 0.0 and batch_images.max() <= 1.0
        for image, cls, box in zip(batch_images, batch_classes, batch_boxes, strict=True):
            i = round(image.mean() * 255 / 20)  # the grey level says which sample this is
            assert cls[0] == i % 2 and np.isclose(box[0], i / 100 if i % 2 else 0.0)
            seen.append(i)
    assert sorted(seen) == list(range(N_SAMPLES)) and seen != sorted(seen)  # all once, shuffled


def test_center_square_geometry():
    assert center_square(640, 480) == (80, 0, 480)
    assert center_square(480, 640) == (0, 80, 480)
    assert center_square(300, 300) == (0, 0, 300)
    inside = box_to_square((100 / 640, 48 / 480, 200 / 640, 96 / 480), 640, 480)
    np.testing.assert_allclose(inside, (20 / 480, 0.1, 120 / 480, 0.2))
    clipped = box_to_square((40 / 640, 0.0, 120 / 640, 0.5), 640, 480)  # half in the left margin
    np.testing.assert_allclose(clipped, (0.0, 0.0, 40 / 480, 0.5))
    assert box_to_square((0.0, 0.2, 70 / 640, 0.4), 640, 480) is None  # all in the margin
    assert box_to_square((40 / 640, 0.0, 120 / 640, 0.5), 640, 480, min_visibility=0.6) is None


def test_training_and_real_time_shrink_a_frame_alike(tmp_path):
    """Both paths average areas: on pixel noise they agree to rounding; bilinear on either side would not."""
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x0, y0, side = center_square(640, 480)
    square_rgb = frame[y0:y0 + side, x0:x0 + side, ::-1]  # the crop augmentation would write, as decoded (RGB)
    trained_on = to_network_input(tf.constant(square_rgb), 120).numpy()
    seen_live = frame_to_input(frame)[0]
    assert seen_live.std() < 0.1  # noise averaged out (a 4x4 mean of uniform noise)
    np.testing.assert_allclose(trained_on, seen_live, atol=0.005)


def test_datasets_for_every_split(tmp_path):
    paths = Paths(tmp_path)
    for split in SPLITS:
        write_aug_samples(paths.aug_images(split), paths.aug_labels(split), n=3)
    splits = datasets(paths, batch_size=2)
    assert set(splits) == set(SPLITS)
    assert sum(len(b[0]) for b in splits["val"].as_numpy_iterator()) == 3


def test_plot_samples_draws_on_read_only_batches(aug_split):
    images, labels = aug_split
    batch_images, (classes, boxes) = next(make_dataset(images, labels, batch_size=8, shuffle=False)
                                          .as_numpy_iterator())
    assert not batch_images.flags.writeable
    figure = plot_samples(batch_images, (classes, boxes), ncols=4)
    drawn = [p for ax in figure.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert len(figure.axes) == 8 and len(drawn) == int(classes.sum())
    scores = np.linspace(0, 1, 8)
    figure = plot_samples(batch_images, boxes, scores=scores, truth=(classes, boxes), threshold=0.5)
    drawn = [p for ax in figure.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert len(drawn) == int(classes.sum()) + int((scores > 0.5).sum())


def test_loss_curves_of_one_epoch_show_its_points(tmp_path):
    """A one-epoch run (the notebook with EPOCHS = 1) draws its losses as points, not empty axes."""
    from facetracker.plots import plot_curves

    history = {"loss": [2.0], "val_loss": [3.0]}
    picture = cv2.imread(str(plot_curves(history, ["loss"], tmp_path / "curves.png")))
    teal = (np.abs(picture.astype(int) - (128, 128, 0)).max(axis=2) < 40).sum()  # BGR of matplotlib's teal
    assert teal > 20, "the training loss shows"
