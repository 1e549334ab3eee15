"""Tests for the options that make training faster: the crop cache, early stopping, the batch/learning-rate rule.

Each trains the real quick preset (narrow heads) through `train_from_paths`, what `facetracker train`
runs, on real augmented JPEG crops of the sample session.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_cli_docs import bare_env
from test_train import WorseBeforeValidation, validation_loss

from facetracker import dataset
from facetracker.augment import augment_dataset
from facetracker.cli import main
from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.split import split_dataset
from facetracker.train import train_from_paths

FAST = {"preset": "quick", "head_units": 16, "verbose": 0}


@pytest.fixture(scope="module")
def augmented_template(tmp_path_factory: pytest.TempPathFactory, sample_template: Path) -> Path:
    """The 20-frame sample session, split and augmented (2 copies per frame), made once for this module."""
    root = tmp_path_factory.mktemp("augmented") / "project"
    shutil.copytree(sample_template, root)
    paths = Paths(root)
    split_dataset(paths, seed=0)
    augment_dataset(paths, per_image=2, seed=0, progress=False)
    return root


def project(template: Path, folder: Path) -> Paths:
    """A fresh copy of the augmented session (tests delete its crops)."""
    shutil.copytree(template, folder)
    return Paths(folder)


class DeleteCrops(keras.callbacks.Callback):
    """Delete every aug_data image at the end of the first epoch: later epochs can only read a cache."""

    def __init__(self, paths: Paths) -> None:
        super().__init__()
        self.paths, self.deleted = paths, 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 0:
            for split in ("train", "val"):
                for image in self.paths.aug_images(split).iterdir():
                    image.unlink()
                    self.deleted += 1


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["memory", "file"])
def test_with_the_cache_later_epochs_read_no_jpeg_and_train_the_same(augmented_template: Path, tmp_path: Path,
                                                                     cache: str) -> None:
    cached = project(augmented_template, tmp_path / "cached")
    delete = DeleteCrops(cached)
    with_cache = train_from_paths(cached, epochs=3, cache=cache, callbacks=[delete], **FAST)
    assert delete.deleted > 0 and not any(cached.aug_images("train").iterdir())
    plain = train_from_paths(project(augmented_template, tmp_path / "plain"), epochs=3, cache="off", **FAST)
    assert len(with_cache.history["loss"]) == 3
    for key, values in plain.history.items():
        np.testing.assert_allclose(with_cache.history[key], values, rtol=1e-5, err_msg=key)


def test_auto_cache_goes_to_a_file_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dataset.cache_place(1000, 120, "auto") == "memory"
    monkeypatch.setattr(dataset, "MEMORY_CACHE_SHARE", 1e-9)
    assert dataset.cache_place(1000, 120, "auto") == "file"
    assert dataset.cache_place(1000, 120, "off") is None
    with pytest.raises(FaceTrackerError, match="--cache 'disk'"):
        dataset.cache_place(1000, 120, "disk")


def test_the_cli_refuses_an_unknown_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(tmp_path), "train", "--cache", "disk"])
    assert exit_info.value.code == 2 and "--cache" in capsys.readouterr().err


def saved_validation_loss(model_file: Path, paths: Paths) -> float:
    """The validation total loss of a saved detector on aug_data/val, as the quick preset's training computes it."""
    from facetracker.dataset import make_dataset

    val_ds = make_dataset(paths.aug_images("val"), paths.aug_labels("val"), 16, shuffle=False, cache="off")
    return validation_loss(keras.saving.load_model(model_file, safe_mode=True), val_ds)


@pytest.mark.slow
def test_early_stop_ends_after_the_patience_and_keeps_the_best_epoch(augmented_template: Path,
                                                                      tmp_path: Path) -> None:
    paths = project(augmented_template, tmp_path / "project")
    # float32, as on a CPU without bfloat16 units: the saved model's loss is checked against the validated one exactly.
    result = train_from_paths(paths, epochs=8, patience=2, monitor="val_loss", ema_momentum=0.0, mixed_precision="off",
                              callbacks=[WorseBeforeValidation(epoch=1, score_bias=-30.0, onwards=True)], **FAST)
    val = result.history["val_loss"]
    assert len(val) == 3  # the best epoch, then two without a better loss
    assert result.best_epoch == 0 and min(val[1:]) > val[0]
    assert saved_validation_loss(result.model_path, paths) == pytest.approx(val[0], rel=1e-4)


class FirstStep(keras.callbacks.Callback):
    """The learning rate and the number of steps of the first epoch."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.steps = self.params["steps"]


@pytest.mark.slow
@pytest.mark.parametrize(("rule", "factor"), [("none", 1.0), ("linear", 2.0), ("sqrt", 2 ** 0.5)])
def test_the_learning_rate_follows_the_batch_size_by_its_rule(augmented_template: Path, tmp_path: Path,
                                                               rule: str, factor: float) -> None:
    paths = project(augmented_template, tmp_path / "project")
    crops = len(list(paths.aug_images("train").iterdir()))
    first = FirstStep()
    train_from_paths(paths, epochs=1, batch_size=32, lr_rule=rule, callbacks=[first], **FAST)
    assert first.steps == -(-crops // 32)
    assert first.learning_rate == pytest.approx(1e-3 * factor, rel=1e-6)  # the quick preset: 1e-3 at batch 16


def test_rule_and_patience_settings_are_checked() -> None:
    from facetracker.train import resolve_preset

    assert resolve_preset("quick", batch_size=64, lr_rule="sqrt").learning_rate == pytest.approx(2e-3)
    assert resolve_preset("quick", batch_size=64).learning_rate == pytest.approx(1e-3)
    with pytest.raises(FaceTrackerError, match="--lr-rule 'cubic'"):
        resolve_preset("quick", lr_rule="cubic")
    with pytest.raises(FaceTrackerError, match="--patience -1"):
        resolve_preset("quick", patience=-1)


ONEDNN_NOTICE = "oneDNN custom operations are on"


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "on"), [(None, True), ("0", False)], ids=["unset: on", "the user's 0 wins"])
def test_importing_facetracker_first_turns_on_tensorflows_onednn_kernels(setting, on):
    """TensorFlow's faster CPU kernels are on unless the user turned them off (its own default is off on CPUs
    without AVX-512 VNNI, bf16 or AMX). A fresh Python with TensorFlow's logging left on: its notice says.
    The CLI keeps that notice off the terminal: test_cli_docs' one-line error tests load TensorFlow."""
    env = {**bare_env(), **({"TF_ENABLE_ONEDNN_OPTS": setting} if setting else {})}
    done = subprocess.run([sys.executable, "-c", "import facetracker, tensorflow"], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    assert (ONEDNN_NOTICE in done.stderr) == on, done.stderr



ONE_STEP = """
import sys
import numpy as np
import facetracker
import keras
import tensorflow as tf
from facetracker.losses import classification_loss, masked_localization_loss
from facetracker.model import build_model

dtype = sys.argv[2]
keras.utils.set_random_seed(0)
weights = build_model("small", 120, "none", 512).get_weights()
keras.config.set_dtype_policy(dtype)
model = build_model("small", 120, "none", 512)
model.set_weights([w.astype(dtype) for w in weights])
rng = np.random.default_rng(0)
images = rng.uniform(0, 1, (16, 120, 120, 3)).astype(dtype)
classes = (rng.uniform(size=(16, 1)) > 0.3).astype(dtype)
corner = rng.uniform(0, 0.5, (16, 2))
boxes = np.concatenate([corner, corner + 0.4], 1).astype(dtype)
with tf.GradientTape() as tape:
    score, box = model(images, training=True)
    total = classification_loss()(classes, score) + masked_localization_loss(boxes, box, classes)
grads = tape.gradient(total, model.trainable_variables)
np.savez(sys.argv[1], total=total.numpy(), **{f"g{i}": g.numpy() for i, g in enumerate(grads)})
"""


@pytest.mark.slow
def test_onednn_kernels_take_the_same_training_step(tmp_path):
    """The quick preset's model, one batch, the same weights: the loss and every gradient in float32, with oneDNN
    off and on, are the float64 step's to float32 rounding, so turning oneDNN on changes speed, not what is learnt.

    The reference is float64 with TensorFlow's own kernels (batch norm as Keras' ops: the fused kernel has no
    float64). Rounding in float32 moves the convolutions' gradients by up to about a hundredth of their norm
    with TensorFlow's own kernels (each batch norm's backward pass sums terms that nearly cancel), and by
    about a hundred-thousandth with oneDNN's fused batch norm."""
    steps = {}
    for name, setting, dtype in (("off", "0", "float32"), ("on", "1", "float32"), ("float64", "0", "float64")):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
        subprocess.run([sys.executable, "-c", ONE_STEP, str(tmp_path / name), dtype], env=env, check=True,
                       timeout=300, capture_output=True)
        steps[name] = np.load(tmp_path / f"{name}.npz")
    # Compared as whole tensors (relative L2 error): a unit that sits at a ReLU's kink can fall on either side
    # under the two kernels' rounding, so a few single elements of the grid head's kernel differ by more.
    for name in steps["float64"].files:
        exact = steps["float64"][name]
        for setting in ("off", "on"):
            error = np.linalg.norm(steps[setting][name] - exact) / np.linalg.norm(exact)
            assert error <= 2e-2, f"{name} with oneDNN {setting}: relative error {error:.1e}"
