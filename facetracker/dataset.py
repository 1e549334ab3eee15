"""Load the augmented samples as tf.data pipelines (tutorial sections 6-7).

The video lists the image files and the label files separately and zips them in sorted
order, reading each JSON inside `tf.py_function`. That mispairs everything after one
missing file and gives labels of unknown rank, which Keras 3 `fit` rejects. Here labels are
read up front with plain `json`, paired with images by file stem (a missing partner is an
error naming the file), and every element has static shapes:
image [120, 120, 3] float32 in [0, 1], labels ([class], [x1, y1, x2, y2]).

The pairing (`load_labels`) lives in `facetracker.fileio`, with the label format, so that `evaluate`
scores augmented samples without importing TensorFlow.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from facetracker.config import BATCH_SIZE, IMAGE_SIZE, SPLITS, Paths
from facetracker.fileio import load_labels

SHUFFLE_CAP = 10_000  # shuffle buffer = dataset size up to this many (paths, not decoded images)
PREFETCH = 4  # batches, as in the video
# Fixed parallelism with autotune off: in TF 2.21 autotune sometimes stalls the end of an iteration.
PARALLEL_CALLS = os.cpu_count() or 1


def pipeline_options() -> tf.data.Options:
    """tf.data options shared by our datasets: autotune off (see PARALLEL_CALLS)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """A JPEG/PNG file as a [H, W, 3] uint8 tensor."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def to_network_input(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize to [image_size, image_size, 3] float32 in [0, 1] by area averaging (the video: bilinear).

    A 450 or 480 px image shrinks about 4x: bilinear reads 2x2 of every 4x4 pixels and leaves aliasing
    noise for the box head to learn around. `inference.frame_to_input` averages the same way (OpenCV's
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
