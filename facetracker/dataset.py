"""Load the augmented samples as tf.data pipelines (tutorial sections 6-7).

The video lists the image files and the label files separately and zips them in sorted
order, reading each JSON inside `tf.py_function`. That mispairs everything after one
missing file and gives labels of unknown rank, which Keras 3 `fit` rejects. Here labels are
read up front with plain `json`, paired with images by file stem (a missing partner is an
error naming the file), and every element has static shapes:
image [120, 120, 3] float32 in [0, 1], labels ([class], [x1, y1, x2, y2]).

Decoding the JPEG crops is most of a training epoch's input cost, and every epoch reads the same
files, so `make_dataset` decodes and resizes each crop once and caches the 120 px uint8 pixels
(`cache`: in memory, or in a temporary file for a split too big for memory); later epochs reuse them.

`make_frame_dataset` reads natural frames (data/<split>, labelme labels) the way the
real-time path sees them: the centre square of the frame, resized to 120 (the geometry lives in
`facetracker.geometry`).
"""

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from facetracker.annotations import labelled_frames
from facetracker.config import BATCH_SIZE, CACHES, CLASS_NAME, IMAGE_EXTENSIONS, IMAGE_SIZE, SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import read_crop_label
from facetracker.geometry import center_square

SHUFFLE_CAP = 10_000  # shuffle buffer = dataset size up to this many (paths, not decoded images)
PREFETCH = 4  # batches, as in the video
# Fixed parallelism with autotune off: in TF 2.21 autotune sometimes stalls the end of an iteration.
PARALLEL_CALLS = os.cpu_count() or 1
MEMORY_CACHE_SHARE = 0.25  # "auto" caches in memory when a split's decoded pixels fit in this share of RAM


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


def to_pixels(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize to [image_size, image_size, 3] uint8 by area averaging (the video: bilinear).

    A 450 or 480 px image shrinks about 4x: bilinear reads 2x2 of every 4x4 pixels and leaves aliasing
    noise for the box head to learn around. `realtime.frame_to_input` averages the same way (OpenCV's
    INTER_AREA) and rounds to uint8 too, so the model sees live what it was trained on.
    """
    image = tf.image.resize(image, (image_size, image_size), method="area")
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.ensure_shape(image, (image_size, image_size, 3))


def to_unit(pixels: tf.Tensor) -> tf.Tensor:
    """uint8 pixels as float32 in [0, 1], the network's input."""
    return tf.cast(pixels, tf.float32) / 255.0


def to_network_input(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize to [image_size, image_size, 3] float32 in [0, 1] (`to_pixels`, then `to_unit`)."""
    return to_unit(to_pixels(image, image_size))


def cache_place(count: int, image_size: int, cache: str) -> str | None:
    """Where make_dataset caches `count` decoded crops: "memory", "file" or None (no cache).

    Raises:
        FaceTrackerError: for an unknown `cache`.
    """
    if cache not in CACHES:
        raise FaceTrackerError(f"--cache {cache!r}: choose one of {', '.join(CACHES)}")
    if cache != "auto":
        return None if cache == "off" else cache
    pixels = count * image_size * image_size * 3
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return "memory" if not memory or pixels <= MEMORY_CACHE_SHARE * memory else "file"


def cache_file() -> str:
    """A fresh cache file name in a temporary folder that is removed when Python exits."""
    folder = tempfile.mkdtemp(prefix="facetracker-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return os.path.join(folder, "crops")


def finish(dataset: tf.data.Dataset, batch_size: int | None) -> tf.data.Dataset:
    """Batch (None: already batched), prefetch and set our options."""
    dataset = dataset if batch_size is None else dataset.batch(batch_size)
    return dataset.prefetch(PREFETCH).with_options(pipeline_options())


def shuffled(dataset: tf.data.Dataset, count: int, seed: int | None) -> tf.data.Dataset:
    """The dataset reshuffled at each epoch through a buffer of `count` elements (at most SHUFFLE_CAP)."""
    return dataset.shuffle(min(count, SHUFFLE_CAP), seed=seed, reshuffle_each_iteration=True)


def make_dataset(images_dir: Path, labels_dir: Path, batch_size: int = BATCH_SIZE, shuffle: bool = True,
                 image_size: int = IMAGE_SIZE, seed: int | None = None, cache: str = "auto") -> tf.data.Dataset:
    """Batches of (image [B, S, S, 3] float32 in [0, 1], (class [B, 1], box [B, 4])) from aug_data/<split>.

    One parallel map decodes and resizes each crop to uint8 pixels; with a cache ("auto": in memory
    when the split fits in a quarter of RAM, else in a temporary file; "memory"; "file"; "off") the
    first epoch keeps them and later epochs read no JPEG. The shuffle then comes after the cache;
    without one it shuffles file names before decoding. Both give the same order for the same seed
    (a shuffle's order depends on its seed and size only), so the cache never changes training.
    """
    paths, classes, boxes = load_labels(labels_dir, images_dir)
    place = cache_place(len(paths), image_size, cache)
    dataset = tf.data.Dataset.from_tensor_slices((paths, classes, boxes))
    if shuffle and place is None:
        dataset = shuffled(dataset, len(paths), seed)  # names: a buffer of decoded crops would hold the split
    dataset = dataset.map(lambda path, cls, box: (to_pixels(decode_image(path), image_size), (cls, box)),
                          num_parallel_calls=PARALLEL_CALLS)
    if place is not None:
        dataset = dataset.cache(cache_file() if place == "file" else "")
        dataset = shuffled(dataset, len(paths), seed) if shuffle else dataset
    return finish(dataset.batch(batch_size).map(lambda pixels, labels: (to_unit(pixels), labels)), None)


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


def datasets(paths: Paths, batch_size: int = BATCH_SIZE, image_size: int = IMAGE_SIZE,
             seed: int | None = None, cache: str = "auto") -> dict[str, tf.data.Dataset]:
    """Shuffled batches of aug_data/<split> for train, test and val (as the video); `cache` as make_dataset's."""
    return {split: make_dataset(paths.aug_images(split), paths.aug_labels(split), batch_size, True, image_size, seed,
                                cache) for split in SPLITS}
