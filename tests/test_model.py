"""Tests for facetracker.model: the tutorial's architecture, preprocessing, weights and saving."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from facetracker.errors import FaceTrackerError
from facetracker.model import build_model, predict_fn

SIZE = 32  # the smallest input VGG16 and MobileNetV2 accept: quick to build and run


def images(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


def test_default_model_is_the_tutorials() -> None:
    model = build_model(weights="none")
    assert model.count_params() == 16_826_181
    assert model.get_layer("vgg16").count_params() == 14_714_688
    assert model.input_shape == (None, 120, 120, 3)
    assert model.output_names == ["score", "box"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 1), (None, 4)]


@pytest.mark.parametrize("backbone", ["vgg16", "mobilenetv2", "small"])
def test_outputs_are_sigmoid_scores_and_boxes(backbone: str) -> None:
    score, box = build_model(backbone, SIZE, "none", head_units=8)(images())
    assert score.shape == (4, 1) and box.shape == (4, 4)
    assert np.all((np.asarray(box) >= 0) & (np.asarray(box) <= 1))


def test_small_model_keeps_a_7x7_map_for_its_grid_head() -> None:
    model = build_model("small", 120, "none", head_units=512)
    assert model.get_layer("box_cells").output.shape[1:] == (7, 7, 5)
    assert 0.8e6 < model.count_params() < 1.5e6  # a CPU model: a fifteenth of the tutorial's


def test_small_model_strides_its_first_convolution_instead_of_pooling_at_full_size() -> None:
    """The speed lever of BENCHMARKS.md's before/after item: nothing runs on the 120 px map but the first
    convolution, which writes a 60 px map straight away."""
    backbone = build_model("small", 120, "none", head_units=512).get_layer("small")
    assert backbone.get_layer("conv1").output.shape[1:3] == (60, 60)
    assert [layer.name for layer in backbone.layers if "pool" in layer.name] == ["pool2", "pool3", "pool4"]


def batch_norm_training_step(layer: keras.layers.BatchNormalization, x: np.ndarray, weights: np.ndarray) -> list:
    """One training call of `layer`: its output, the gradients of the input, gamma and beta, the moving averages."""
    import tensorflow as tf

    channels = x.shape[-1]
    layer.build(x.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, channels))
    layer.beta.assign(np.linspace(-1.0, 1.0, channels))
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
    gradients = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
    return [np.asarray(tf.cast(t, tf.float32)) for t in (outputs, *gradients, layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize(("policy", "tolerance"), [("float32", 1e-5), ("mixed_bfloat16", 0.05)])
def test_fused_batch_norm_trains_and_predicts_as_keras_batch_normalization(policy: str, tolerance: float) -> None:
    """Output, gradients and moving averages of a training step, then the inference output, equal Keras' own
    layer's. 18 values per channel: the biased variance Keras keeps differs from the unbiased one by 6%."""
    from facetracker.model import FusedBatchNormalization

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (2, 3, 3, 4)).astype(np.float32)
    weights = rng.normal(size=x.shape).astype(np.float32)
    keras.config.set_dtype_policy(policy)
    try:
        theirs_layer, ours_layer = keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)
        theirs = batch_norm_training_step(theirs_layer, x, weights)
        ours = batch_norm_training_step(ours_layer, x, weights)
        predictions = [np.asarray(layer(x, training=False), np.float32) for layer in (theirs_layer, ours_layer)]
    finally:
        keras.config.set_dtype_policy("float32")
    names = ("output", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance")
    for name, mine, reference in zip(names, ours, theirs, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=tolerance, atol=tolerance, err_msg=name)
    np.testing.assert_allclose(predictions[1], predictions[0], rtol=tolerance, atol=tolerance)


def test_the_small_backbone_trains_through_the_fused_batch_norm_kernel() -> None:
    """The speed lever of BENCHMARKS.md's training item: one fused op per block when training, none at inference."""
    import tensorflow as tf

    from facetracker.model import SMALL_CHANNELS

    backbone = build_model("small", 120, "none", head_units=16).get_layer("small")

    def op_types(training: bool) -> list[str]:
        traced = tf.function(lambda x: backbone(x, training=training))
        graph = traced.get_concrete_function(tf.TensorSpec((2, 120, 120, 3), tf.float32)).graph
        return [op.type for op in graph.get_operations()]

    assert op_types(training=True).count("FusedBatchNormV3") == len(SMALL_CHANNELS)
    assert "FusedBatchNormV3" not in op_types(training=False)


def test_grid_box_is_the_proposal_of_the_cell_with_the_highest_logit() -> None:
    from facetracker.model import GridBox

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    cells = np.zeros((2, 7, 7, 5), np.float32)
    cells[..., 0] = -30.0  # every cell but one has a negligible weight
    cells[0, 2, 5] = [30.0, logit(0.5), logit(0.25), logit(0.2), logit(0.4)]  # row 2, column 5
    cells[1, 0, 0] = [30.0, logit(0.1), logit(0.1), logit(0.5), logit(0.5)]  # reaches past the image's corner
    box = np.asarray(GridBox()(cells))
    cx, cy = (5 + 0.5) / 7, (2 + 0.25) / 7
    np.testing.assert_allclose(box[0], [cx - 0.1, cy - 0.2, cx + 0.1, cy + 0.2], atol=1e-5)
    corner = 0.1 / 7
    np.testing.assert_allclose(box[1], [corner - 0.25, corner - 0.25, corner + 0.25, corner + 0.25], atol=1e-5)
    even = np.zeros((1, 7, 7, 5), np.float32)  # equal logits: the plain mean of the proposals
    even[..., 1:] = np.random.default_rng(0).normal(size=(1, 7, 7, 4))
    centre_x = (np.arange(7)[None, :] + 1 / (1 + np.exp(-even[0, ..., 1]))) / 7
    assert float(np.asarray(GridBox()(even))[0, 0]) == pytest.approx(
        float(centre_x.mean() - (1 / (1 + np.exp(-even[0, ..., 3]))).mean() / 2), abs=1e-5)


def test_vgg16_preprocessing_matches_keras_preprocess_input(tmp_path: Path) -> None:
    """Our in-model scaling + RGB-ordered first kernel == keras' caffe preprocess_input on a BGR VGG16."""
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "vgg16_notop.h5"  # the legacy layout keras.applications distributes
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    model = build_model("vgg16", SIZE, path, head_units=8)
    x = images(2)
    ours = model.get_layer("vgg16")(model.get_layer("caffe_mean")(model.get_layer("to_0_255")(x)))
    theirs = reference(keras.applications.vgg16.preprocess_input(x * 255.0))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-5)
    # The check can fail: without the channel flip (RGB into the BGR kernel) the features differ.
    unflipped = reference(x * 255.0 - np.array([123.68, 116.779, 103.939], np.float32))
    assert np.abs(np.asarray(unflipped) - np.asarray(theirs)).max() > 1e-2


@pytest.mark.parametrize("backbone", ["vgg16", "small"])
def test_saved_model_loads_in_safe_mode_with_identical_predictions(tmp_path: Path, backbone: str) -> None:
    model = build_model(backbone, SIZE, "none", head_units=8)
    model.save(tmp_path / "facetracker.keras")
    loaded = keras.saving.load_model(tmp_path / "facetracker.keras", safe_mode=True)
    x = images()
    for a, b in zip(model(x), loaded(x), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_whole_model_weights_file_loads(tmp_path: Path) -> None:
    model = build_model("small", SIZE, "none", head_units=8)
    rng = np.random.default_rng(0)  # move every weight, BatchNorm statistics included, off its initial value
    model.set_weights([w + rng.random(w.shape, dtype=np.float32) for w in model.get_weights()])
    model.save_weights(tmp_path / "model.weights.h5")
    again = build_model("small", SIZE, tmp_path / "model.weights.h5", head_units=8)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras' warnings about the parts it skipped would sit above our line
        with pytest.raises(FaceTrackerError, match="does not match"):
            build_model("small", SIZE, tmp_path / "model.weights.h5", head_units=16)


def test_predict_fn_matches_the_model() -> None:
    model = build_model("small", SIZE, "none", head_units=8)
    fn = predict_fn(model)
    x = images(1)
    for a, b in zip(fn(x), model(x), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backbone": "resnet"}, "vgg16, mobilenetv2, small"),
    ({"backbone": "small", "weights": "imagenet"}, "--weights none"),
    ({"weights": "missing.h5"}, "no such file"),
])
def test_bad_arguments_name_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(FaceTrackerError, match=message):
        build_model(input_size=SIZE, **kwargs)


@pytest.mark.slow  # a fresh interpreter (KERAS_HOME is read at import): about 5 s
def test_offline_imagenet_says_how_to_supply_the_weights(tmp_path: Path) -> None:
    """A failed download (empty KERAS_HOME, an unreachable URL) ends in our message, fast."""
    script = (
        "import facetracker.model as m\n"
        "m.KERAS_APPS_URL = 'http://127.0.0.1:9/'\n"
        "try:\n"
        "    m.build_model('vgg16', 32)\n"
        "except m.FaceTrackerError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "copy vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models/" in out.stdout.lower()
    assert "--weights PATH" in out.stdout and "--weights none" in out.stdout


def test_mobilenetv2_preprocessing_matches_keras_preprocess_input() -> None:
    """What the MobileNetV2 backbone receives inside our model == keras' preprocess_input: [-1, 1], which its
    ImageNet weights expect (our inputs are [0, 1])."""
    model = build_model("mobilenetv2", SIZE, "none", head_units=8)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    fed = keras.Model(model.input, backbone._inbound_nodes[0].input_tensors[0])  # the backbone's input in our graph
    x = images(2)
    theirs = keras.applications.mobilenet_v2.preprocess_input(x * 255.0)
    np.testing.assert_allclose(np.asarray(fed(x)), theirs, atol=1e-5)
    assert np.asarray(fed(np.zeros((1, SIZE, SIZE, 3), np.float32))).max() == -1.0
    assert np.asarray(fed(np.ones((1, SIZE, SIZE, 3), np.float32))).min() == 1.0


def test_a_model_saved_in_mixed_precision_loads_computing_in_float32(tmp_path: Path) -> None:
    from facetracker.inference import load_keras_model

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build_model("small", input_size=SIZE, weights="none", head_units=16)
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.save(tmp_path / "mixed.keras")
    loaded = load_keras_model(tmp_path / "mixed.keras")
    assert {layer.dtype_policy.name for layer in loaded.get_layer("small").layers + loaded.layers} == {"float32"}
    for ours, theirs in zip(loaded(images()), mixed(images()), strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs, np.float32), atol=0.05)
