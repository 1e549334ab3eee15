"""Load the augmented samples as tf.data pipelines (tutorial sections 6-7).

The video lists the image files and the label files separately and zips them in sorted
order, reading each JSON inside `tf.py_function`. That mispairs everything after one
missing file and gives labels of unknown rank, which Keras 3 `fit` rejects. Here labels are
read up front with plain `json`, paired with images by file stem (a missing partner is an
error naming the file), and every element has static shapes:
image [120, 120, 3] float32 in [0, 1], labels ([class], [x1, y1, x2, y2]).

`make_frame_dataset` reads natural frames (data/<split>, labelme labels) the way the
real-time path sees them: the centre square of the frame, resized to 120 (the geometry lives in
`facetracker.geometry`).
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facetracker.annotations import labelled_frames
from facetracker.config import BATCH_SIZE, CLASS_NAME, IMAGE_EXTENSIONS, IMAGE_SIZE, SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import read_crop_label
from facetracker.geometry import center_square

SHUFFLE_CAP = 10_000  # shuffle buffer = dataset size up to this many (paths, not decoded images)
PREFETCH = 4  # batches, as in the video
# Fixed parallelism with autotune off: in TF 2.21 autotune sometimes stalls the end of an iteration.
PARALLEL_CALLS = os.cpu_count() or 1


def pipeline_options() -> tf.data.Options:
    """tf.data options shared by our datasets: autotune off (see PARALLEL_CALLS)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def files_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """{stem: path} of the files in a folder with one of the suffixes."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def unpaired_error(images_dir: Path, labels_dir: Path, no_label: list[Path], no_image: list[Path]) -> FaceTrackerError:
    """The error for images without labels and labels without images."""
    parts = [f"{len(files)} {what}: {', '.join(str(p) for p in files[:3])}{', ...' if len(files) > 3 else ''}"
             for what, files in (("images without a label", no_label), ("labels without an image", no_image)) if files]
    return FaceTrackerError(f"{images_dir} and {labels_dir} do not pair up by name ({'; '.join(parts)}); "
                            "run `facetracker augment` again to complete them, or delete the unpaired files.")


def load_labels(labels_dir: Path, images_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Augmented samples paired by file stem: (image paths, classes [N, 1], boxes [N, 4]) float32."""
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise FaceTrackerError(f"{folder}: folder not found; run `facetracker augment` first.")
    images = files_by_stem(images_dir, IMAGE_EXTENSIONS)
    labels = files_by_stem(labels_dir, (".json",))
    if images.keys() != labels.keys():
        raise unpaired_error(images_dir, labels_dir, [images[s] for s in sorted(images.keys() - labels.keys())],
                             [labels[s] for s in sorted(labels.keys() - images.keys())])
    if not images:
        raise FaceTrackerError(f"{images_dir}: no samples; run `facetracker augment` first.")
    stems = sorted(images)
    pairs = [read_crop_label(labels[s]) for s in stems]
    classes = np.array([[c] for c, _ in pairs], dtype=np.float32)
    boxes = np.array([b for _, b in pairs], dtype=np.float32)
    return [str(images[s]) for s in stems], classes, boxes


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """A JPEG/PNG file as a [H, W, 3] uint8 tensor."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def to_network_input(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize to [image_size, image_size, 3] float32 in [0, 1] by area averaging (the video: bilinear).

    A 450 or 480 px image shrinks about 4x: bilinear reads 2x2 of every 4x4 pixels and leaves aliasing
    noise for the box head to learn around. `realtime.frame_to_input` averages the same way (OpenCV's
    INTER_AREA), so the model sees live what it was trained on.
    """
    image = tf.image.resize(image, (image_size, image_size), method="area") / 255.0
    return tf.ensure_shape(image, (image_size, image_size, 3))


def finish(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batch, prefetch and set our options."""
    return dataset.batch(batch_size).prefetch(PREFETCH).with_options(pipeline_options())


def make_dataset(images_dir: Path, labels_dir: Path, batch_size: int = BATCH_SIZE, shuffle: bool = True,
                 image_size: int = IMAGE_SIZE, seed: int | None = None) -> tf.data.Dataset:
    """Batches of (image [B, S, S, 3] float32 in [0, 1], (class [B, 1], box [B, 4])) from aug_data/<split>.

    Shuffling happens on file names before decoding (a full-size buffer of names costs little;
    one of decoded images would hold the whole split in memory), then one parallel map
    decodes and resizes.
    """
    paths, classes, boxes = load_labels(labels_dir, images_dir)
    dataset = tf.data.Dataset.from_tensor_slices((paths, classes, boxes))
    if shuffle:
        dataset = dataset.shuffle(min(len(paths), SHUFFLE_CAP), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda path, cls, box: (to_network_input(decode_image(path), image_size), (cls, box)),
                          num_parallel_calls=PARALLEL_CALLS)
    return finish(dataset, batch_size)


def frame_labels(images_dir: Path, labels_dir: Path,
                 class_name: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Frames with labelme labels: (paths, squares [N, 3] int32, classes [N, 1], boxes [N, 4])."""
    samples, truth = labelled_frames(images_dir, labels_dir, class_name)
    squares, classes, boxes = [], [], []
    for sample, box in zip(samples, truth, strict=True):
        squares.append(center_square(sample.width, sample.height))
        classes.append([0.0 if box is None else 1.0])
        boxes.append((0.0, 0.0, 0.0, 0.0) if box is None else box)
    return ([str(s.image) for s in samples], np.array(squares, dtype=np.int32),
            np.array(classes, dtype=np.float32), np.array(boxes, dtype=np.float32))


def make_frame_dataset(images_dir: Path, labels_dir: Path, class_name: str = CLASS_NAME,
                       image_size: int = IMAGE_SIZE, batch_size: int = BATCH_SIZE) -> tf.data.Dataset:
    """Batches of natural frames as the real-time path sees them (centre square, resized), in file order.

    Images without a label, or whose box the visibility rule drops from the centre square
    (`geometry.box_in_square`, as evaluation judges), are negatives: class 0, box [0, 0, 0, 0].
    """
    paths, squares, classes, boxes = frame_labels(images_dir, labels_dir, class_name)

    def load(path: tf.Tensor, square: tf.Tensor, cls: tf.Tensor, box: tf.Tensor):
        image = tf.image.crop_to_bounding_box(decode_image(path), square[1], square[0], square[2], square[2])
        return to_network_input(image, image_size), (cls, box)

    dataset = tf.data.Dataset.from_tensor_slices((paths, squares, classes, boxes))
    return finish(dataset.map(load, num_parallel_calls=PARALLEL_CALLS), batch_size)


def datasets(paths: Paths, batch_size: int = BATCH_SIZE, image_size: int = IMAGE_SIZE, seed: int = 0,
             splits: Sequence[str] = SPLITS, make: Callable[..., tf.data.Dataset] = make_dataset
             ) -> dict[str, tf.data.Dataset]:
    """Batches of aug_data/<split> for each split: what `facetracker train` and the notebook train on.

    Only the training split is shuffled, with `seed`; the others stay in file order. The global seed is
    set first, because tf.data draws its shuffle seeds when a dataset is made: the same seed gives the
    same batches in the notebook and on the command line.

    Args:
        make: builds one split's pipeline with `make_dataset`'s signature (the notebook passes its own).
    """
    keras.utils.set_random_seed(seed)
    return {split: make(paths.aug_images(split), paths.aug_labels(split), batch_size, shuffle=split == "train",
                        image_size=image_size, seed=seed)
            for split in splits}
