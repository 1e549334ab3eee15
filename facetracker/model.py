"""Step 8 of the tutorial: the two-head detector.

A backbone turns a 120x120 RGB image into feature maps; two heads read them. The score head is the
tutorial's: GlobalMaxPooling2D -> Dense(head_units, relu) -> Dense(1, sigmoid). The box head
(x1, y1, x2, y2 in [0, 1]) depends on the backbone:
- vgg16 and mobilenetv2 keep the tutorial's: GlobalMaxPooling2D -> Dense(head_units, relu) -> Dense(4, sigmoid).
- small (the quick preset) uses a grid head. Global pooling throws away where a feature was, so the
  tutorial's head can only place boxes through side effects such as padding; the small CNN instead
  keeps a 7x7 map, and every cell proposes a box (its centre inside the cell, and its size) with a
  logit. The softmax of the logits weighs the proposals into one box (`GridBox`), so the output and
  the loss stay the tutorial's.

The model takes images as the dataset yields them: RGB floats in [0, 1]. Each backbone's own
input scaling happens inside the model with layers that save and load in safe mode:
- vgg16 (caffe style): Rescaling(255) then Normalization with the ImageNet channel means and
  variance 1. Caffe weights expect BGR; instead of a channel-reversal layer we reverse the input
  channels of the first convolution's kernel once, when ImageNet weights are loaded, so the
  model reads RGB and computes exactly what `vgg16.preprocess_input(255 * x)` would feed VGG16.
- mobilenetv2: Rescaling(2, offset=-1) to [-1, 1].
- small (a plain CNN trained from scratch): the [0, 1] input as it is.
None of these layers adds parameters: the default model has the tutorial's 16,826,181.
"""

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from facetracker.config import IMAGE_SIZE
from facetracker.errors import FaceTrackerError

BACKBONES = ("vgg16", "mobilenetv2", "small")
HEAD_UNITS = 2048
MOBILENET_ALPHA = 0.35
SMALL_CHANNELS = (16, 32, 64, 128, 192, 256)
# The first convolution strides 2 instead of being pooled: conv, batch norm, ReLU and pooling at the full
# 120 px took more of a training step than any other block (BENCHMARKS.md, the training item).
SMALL_STEM_STRIDE = 2
# With the stem, pooling after these blocks leaves a 7x7 map of a 120 px input (cells of about 17 px) for the grid head.
SMALL_POOLED_BLOCKS = (2, 3, 4)
BN_MOMENTUM = 0.9
GRID_HIDDEN = 128  # channels of the grid head's 3x3 convolution, which lets a cell see its neighbours
GRID_CHANNELS = 5  # per cell: the logit, the box centre in the cell (x, y), the box size (w, h)

# ImageNet channel means (RGB order) of the caffe preprocessing used by VGG16.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)

KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_FILES = {
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16/", "6d6bbae143d832006294945121d1f1fc"),
    "mobilenetv2": (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{MOBILENET_ALPHA}_224_no_top.h5",
                    "mobilenet_v2/", None),
}


def build_model(backbone: str = "vgg16", input_size: int = IMAGE_SIZE, weights: str | Path = "imagenet",
                head_units: int = HEAD_UNITS) -> keras.Model:
    """Build the two-head detector.

    Args:
        backbone: "vgg16" (the tutorial), "mobilenetv2" (alpha 0.35) or "small" (a plain CNN for CPUs).
        input_size: side of the square input in pixels (120 in the tutorial).
        weights: "imagenet", "none", the path of a backbone .h5 as keras.applications distributes it,
            or the path of a whole-model .weights.h5 saved by `model.save_weights`.
        head_units: width of the Dense layer of the score head, and of the box head but for the small
            backbone's grid head (2048 in the tutorial).

    Returns:
        A functional model: images [N, S, S, 3] in [0, 1] -> [score [N, 1], box [N, 4]] (outputs named
        "score" and "box"; a list, as in the tutorial: `classes, coords = model(images)`).
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")
    features = backbone_features(backbone, inputs, weights)
    score = _head(features, head_units, 1, "score")
    box = grid_head(features) if backbone == "small" else _head(features, head_units, 4, "box")
    model = keras.Model(inputs, [score, box], name=f"facetracker_{backbone}")
    kind, path = _weights_kind(backbone, weights)
    if kind == "model":
        _load_model_weights(model, path)
    return model


def backbone_features(backbone: str, inputs: keras.KerasTensor, weights: str | Path = "imagenet") -> keras.KerasTensor:
    """The backbone's feature maps of `inputs` (RGB in [0, 1]), with its own input scaling inside the model.

    Args:
        backbone: "vgg16", "mobilenetv2" or "small".
        inputs: a keras.Input of shape (S, S, 3).
        weights: "imagenet", "none" or a backbone .h5; a whole-model .weights.h5 is loaded by `build_model`.

    Returns:
        The feature maps, ready for the heads.
    """
    if backbone not in BACKBONES:
        raise FaceTrackerError(f"--backbone {backbone!r} is unknown: choose one of {', '.join(BACKBONES)}")
    kind, path = _weights_kind(backbone, weights)
    backbone_file = _imagenet_file(backbone) if kind == "imagenet" else path if kind == "backbone" else None
    return _backbone(backbone, int(inputs.shape[1]), backbone_file)(_preprocess(backbone, inputs))


@keras.saving.register_keras_serializable(package="facetracker")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, trained through TensorFlow's fused batch norm kernel.

    Keras 3 computes a training batch's moments, the normalisation and their gradients as separate ops,
    each a pass over the feature map; TensorFlow's fused kernel (oneDNN on a CPU, cuDNN on a GPU) does
    each direction in one. The small backbone trains much faster with it (BENCHMARKS.md, the training
    item). Same weights, same moving averages, and the same inference graph: outside training, and
    wherever the fused kernel does not apply (a mask, renorm, synchronized replicas, no 4-D channels-last
    input, float64), it is Keras' own layer.
    """

    def call(self, inputs: tf.Tensor, training: bool | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        scale = self.gamma if self.scale else tf.ones_like(self.moving_mean)
        offset = self.beta if self.center else tf.zeros_like(self.moving_mean)
        empty = tf.constant([], tf.float32)
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.cast(scale, tf.float32),
            offset=tf.cast(offset, tf.float32), mean=empty, variance=empty, epsilon=self.epsilon,
            data_format="NHWC", is_training=True)
        # The kernel returns the unbiased variance (n - 1 in the denominator); Keras keeps the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = variance * (count - 1) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    def _fusable(self, inputs: tf.Tensor, mask: tf.Tensor | None) -> bool:
        four_d = len(inputs.shape) == 4 and self.axis in (-1, 3)
        kernel_dtype = self.compute_dtype in ("float16", "bfloat16", "float32")  # the kernel has no float64
        return (four_d and kernel_dtype and mask is None and not self.renorm and not self.synchronized
                and keras.backend.backend() == "tensorflow")


# The small backbone's batch norm: the speed-up benchmark's "before" side sets Keras' own layer here.
SMALL_BATCH_NORM: type[keras.layers.BatchNormalization] = FusedBatchNormalization


@keras.saving.register_keras_serializable(package="facetracker")
class GridBox(keras.layers.Layer):
    """One box from a grid of proposals: their average, weighted by the softmax of the cells' logits.

    Input [N, G, G, 5]: per cell, a logit and the raw centre (x, y, inside the cell) and size (w, h, as
    a share of the image). Output [N, 4]: (x1, y1, x2, y2), in [0, 1] but where a face reaches past the
    image's edge (by at most half the image). No weights of its own.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")  # the softmax and the coordinates stay float32 under mixed precision
        super().__init__(**kwargs)

    def call(self, cells: tf.Tensor) -> tf.Tensor:
        grid = cells.shape[1]
        logits = ops.reshape(cells[..., 0], (-1, grid * grid))
        weights = ops.reshape(ops.softmax(logits, axis=-1), (-1, grid, grid))
        proposals = ops.sigmoid(cells[..., 1:])
        steps = ops.arange(grid, dtype=proposals.dtype)
        centre_x = (steps[None, None, :] + proposals[..., 0]) / grid
        centre_y = (steps[None, :, None] + proposals[..., 1]) / grid

        def weighted(values: tf.Tensor) -> tf.Tensor:
            return ops.sum(weights * values, axis=(1, 2))

        x, y, w, h = (weighted(v) for v in (centre_x, centre_y, proposals[..., 2], proposals[..., 3]))
        # Not clipped to the image: a clip has no gradient, and a box stuck past an edge never came back.
        # `inference.Detector`, through which evaluation, drawing and proposals read boxes, clips them.
        return ops.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], 4)


def grid_head(features: keras.KerasTensor) -> keras.KerasTensor:
    """The small CNN's box head: a 3x3 then a 1x1 convolution give every cell its proposal, `GridBox` merges them."""
    x = keras.layers.Conv2D(GRID_HIDDEN, 3, padding="same", activation="relu", name="box_conv")(features)
    cells = keras.layers.Conv2D(GRID_CHANNELS, 1, name="box_cells")(x)
    return GridBox(name="box")(cells)


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` computing in float32 (same weights), or `model` itself when it already does.

    Mixed precision is a training setting: a saved model that computed in bfloat16 or float16 would run
    emulated, and slowly, on a CPU without such units, and LiteRT's converter would keep its casts.
    """
    config = model.get_config()
    float32_config = _float32_policies(config)
    if float32_config == config:
        return model
    copy = keras.Model.from_config(float32_config)
    copy.set_weights(model.get_weights())
    return copy


def _float32_policies(config: Any) -> Any:
    """A layer config with every mixed dtype policy ("mixed_bfloat16", "mixed_float16") replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config["config"]["name"]).startswith("mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def predict_fn(model: keras.Model) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """A compiled per-frame predictor: `fn(images)` -> (score, box); much faster than `model.predict` per frame."""
    size = model.input_shape[1:]

    @tf.function(input_signature=[tf.TensorSpec((None, *size), tf.float32)], reduce_retracing=True)
    def predict(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        score, box = model(images, training=False)
        return score, box

    return predict


def _weights_kind(backbone: str, weights: str | Path) -> tuple[str, Path | None]:
    """Classify `weights` as ("imagenet"|"none"|"backbone"|"model", path)."""
    if str(weights).lower() in ("imagenet", "none"):
        kind = str(weights).lower()
        if kind == "imagenet" and backbone not in IMAGENET_FILES:
            raise FaceTrackerError(f"--backbone {backbone} has no ImageNet weights: use --weights none "
                                   "(it trains from scratch) or a .weights.h5 file saved from this model")
        return kind, None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FaceTrackerError(f"--weights {path}: no such file; pass imagenet, none, or the path of a weights file")
    if path.name.endswith(".weights.h5"):
        return "model", path
    if path.suffix == ".h5" and backbone in IMAGENET_FILES:
        return "backbone", path
    raise FaceTrackerError(f"--weights {path}: expected a backbone .h5 from keras.applications (vgg16, mobilenetv2) "
                           "or a whole-model .weights.h5")


def _imagenet_file(backbone: str) -> Path:
    """Fetch (or find in ~/.keras/models) the ImageNet backbone weights; explain the fix when offline."""
    name, folder, file_hash = IMAGENET_FILES[backbone]
    try:
        return Path(keras.utils.get_file(name, KERAS_APPS_URL + folder + name, cache_subdir="models",
                                         file_hash=file_hash))
    except Exception as error:  # get_file raises a bare Exception when the URL cannot be fetched
        raise FaceTrackerError(
            f"could not download the ImageNet weights of {backbone} ({error}). Copy {name} into ~/.keras/models/ "
            "or pass --weights PATH, or --weights none to train from scratch") from error


def _preprocess(backbone: str, images: keras.KerasTensor) -> keras.KerasTensor:
    """Map [0, 1] RGB images to what the backbone expects."""
    if backbone == "vgg16":
        scaled = keras.layers.Rescaling(255.0, name="to_0_255")(images)
        return keras.layers.Normalization(mean=CAFFE_MEAN_RGB, variance=(1.0, 1.0, 1.0), name="caffe_mean")(scaled)
    if backbone == "mobilenetv2":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(images)
    return images


def _backbone(backbone: str, size: int, weights_file: Path | None) -> keras.Model:
    """The feature extractor, with backbone weights loaded from `weights_file` when given."""
    shape = (size, size, 3)
    weights = None if weights_file is None else str(weights_file)
    try:
        if backbone == "vgg16":
            model = keras.applications.VGG16(include_top=False, weights=weights, input_shape=shape)
            if weights is not None:
                _kernel_bgr_to_rgb(model.get_layer("block1_conv1"))
            return model
        if backbone == "mobilenetv2":
            return keras.applications.MobileNetV2(include_top=False, weights=weights, input_shape=shape,
                                                  alpha=MOBILENET_ALPHA)
    except ValueError as error:
        raise FaceTrackerError(f"--weights {weights_file}: does not fit the {backbone} backbone ({error})") from error
    return small_cnn(shape)


def _kernel_bgr_to_rgb(conv: keras.layers.Conv2D) -> None:
    """Reverse the input channels of a caffe (BGR) first convolution so it reads RGB."""
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel[:, :, ::-1, :], bias])


def small_cnn(shape: tuple[int, int, int]) -> keras.Model:
    """Six conv-BN-ReLU blocks (16 -> 256 channels): the first strides 2, the next three end in 2x2 max pooling."""
    sync = tf.distribute.get_strategy().num_replicas_in_sync > 1
    inputs = keras.Input(shape)
    x = inputs
    for i, channels in enumerate(SMALL_CHANNELS, start=1):
        stride = SMALL_STEM_STRIDE if i == 1 else 1
        x = keras.layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = SMALL_BATCH_NORM(momentum=BN_MOMENTUM, synchronized=sync, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i in SMALL_POOLED_BLOCKS:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.Model(inputs, x, name="small")


def _head(features: keras.KerasTensor, units: int, outputs: int, name: str) -> keras.KerasTensor:
    """The tutorial's head: GlobalMaxPooling2D -> Dense(units, relu) -> Dense(outputs, sigmoid)."""
    x = keras.layers.GlobalMaxPooling2D(name=f"{name}_pool")(features)
    x = keras.layers.Dense(units, activation="relu", name=f"{name}_dense")(x)
    return keras.layers.Dense(outputs, activation="sigmoid", name=name)(x)


def _load_model_weights(model: keras.Model, path: Path) -> None:
    """Load a whole-model .weights.h5, explaining a mismatch."""
    # On a mismatch Keras warns about each part it skipped before it raises; our one line says it all.
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError) as error:
            raise FaceTrackerError(f"--weights {path}: does not match this model (backbone, input size, head "
                                   f"units must be those it was saved with): {error}") from error
    for warning in skipped:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
