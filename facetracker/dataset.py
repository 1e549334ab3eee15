"""Load the augmented samples as tf.data pipelines (tutorial sections 6-7).

The video lists the image files and the label files separately and zips them in sorted
order, reading each JSON inside `tf.py_function`. That mispairs everything after one
missing file and gives labels of unknown rank, which Keras 3 `fit` rejects. Here labels are
read up front with plain `json`, paired with images by file stem (a missing partner is an
error naming the file), and every element has static shapes:
image [120, 120, 3] float32 in [0, 1], labels ([class], [x1, y1, x2, y2]).

The pairing (`load_labels`) lives in `facetracker.fileio`, with the label format, so that `evaluate`
scores augmented samples without importing TensorFlow.

Decoding the JPEG crops is most of a training epoch's input cost, and every epoch reads the same
files, so `make_dataset` decodes and resizes each crop once and caches the 120 px uint8 pixels
(`cache`: in memory, or in a temporary file for a split too big for memory); later epochs reuse them.
"""

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from facetracker.config import BATCH_SIZE, CACHES, IMAGE_SIZE, SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import load_labels

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


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """A JPEG/PNG file as a [H, W, 3] uint8 tensor."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def to_pixels(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize to [image_size, image_size, 3] uint8 by area averaging (the video: bilinear).

    A 450 or 480 px image shrinks about 4x: bilinear reads 2x2 of every 4x4 pixels and leaves aliasing
    noise for the box head to learn around. `inference.frame_to_input` averages the same way (OpenCV's
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
