"""Tests for facetracker.train: real small models trained for real steps on synthetic images."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.train import (
    PRESETS,
    SaveBest,
    WholeFileBackup,
    build_tracker,
    cpu_flags,
    make_strategy,
    read_backup_epoch,
    read_history_rows,
    resolve_preset,
    train,
    training_policy,
)

SIZE = 32


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark noisy images; half show a bright square whose box is the label."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.3, (n, SIZE, SIZE, 3)).astype(np.float32)
    classes = (np.arange(n) % 2).astype(np.float32)[:, None]
    boxes = np.zeros((n, 4), np.float32)
    for i in np.flatnonzero(classes[:, 0]):
        w = rng.integers(SIZE // 4, SIZE // 2)
        x, y = rng.integers(0, SIZE - w, 2)
        images[i, y:y + w, x:x + w] = rng.uniform(0.8, 1.0)
        boxes[i] = np.array([x, y, x + w, y + w]) / SIZE
    return images, classes, boxes


def dataset(n: int, seed: int = 0, batch: int = 8) -> tf.data.Dataset:
    images, classes, boxes = synthetic(n, seed)
    options = tf.data.Options()
    options.autotune.enabled = False  # TF 2.21 autotune can stall the end of short epochs (see dataset.py)
    return tf.data.Dataset.from_tensor_slices((images, (classes, boxes))).batch(batch).with_options(options)


QUICK = {"preset": "quick", "head_units": 16, "verbose": 0}
TOTAL = {**QUICK, "monitor": "val_loss"}  # for tests that spoil the scores, which the total loss sees


def test_presets_resolve() -> None:
    tutorial = resolve_preset("tutorial")
    assert (tutorial.backbone, tutorial.weights, tutorial.epochs, tutorial.batch_size) == ("vgg16", "imagenet", 10, 8)
    assert (tutorial.learning_rate, tutorial.head_units) == (1e-4, 2048)
    assert resolve_preset(None) == tutorial
    quick = resolve_preset("quick", epochs=3, weights=None)
    assert (quick.backbone, quick.weights, quick.epochs, quick.learning_rate) == ("small", "none", 3, 1e-3)


def test_unknown_preset_or_setting_lists_the_names() -> None:
    with pytest.raises(FaceTrackerError, match="tutorial, quick"):
        resolve_preset("fast")
    with pytest.raises(FaceTrackerError, match="epoch.*known are"):
        resolve_preset("quick", epoch=3)
    assert set(PRESETS) == {"tutorial", "quick"}


def test_strategy_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(FaceTrackerError, match="TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(FaceTrackerError, match="mirrored, multiworker"):
        make_strategy("tpu")


@pytest.mark.slow
def test_missing_tensorboard_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(FaceTrackerError, match="pip install tensorboard"):
        train(Paths(tmp_path), dataset(8), dataset(8), **QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
def test_loss_falls_on_a_fixed_batch(masked: bool) -> None:
    keras.utils.set_random_seed(0)
    config = resolve_preset("quick", head_units=64, masked=masked)
    tracker = build_tracker(config, SIZE, 1, tf.distribute.get_strategy())
    batch = dataset(16, batch=16)
    before = tracker.evaluate(batch, verbose=0, return_dict=True)
    # Training-mode losses (epoch means of 10 steps): inference-mode BatchNorm statistics lag behind
    # weights that change this fast, so an evaluate() after 30 steps can still be high.
    history = tracker.fit(batch.repeat(10), epochs=3, verbose=0, shuffle=False).history
    assert int(tracker.optimizer.iterations) == 30
    for name in ("loss", "class_loss", "regress_loss"):
        assert history[name][-1] < 0.3 * before[name], name
        assert history[name][-1] < history[name][0], name


@pytest.mark.slow
def test_train_saves_best_model_curves_and_logs(tmp_path: Path) -> None:
    paths, val_ds = Paths(tmp_path), dataset(16, seed=1)
    # float32, as on a CPU without bfloat16 units: the saved model's validation loss is checked exactly below.
    result = train(paths, dataset(32), val_ds, epochs=2, callbacks=[WorseBeforeValidation(epoch=1)],
                   mixed_precision="off", **TOTAL)
    assert set(result.history) == {"loss", "class_loss", "regress_loss", "val_loss", "val_class_loss",
                                   "val_regress_loss"}
    assert all(len(v) == 2 for v in result.history.values())
    run = paths.logs / "train" / "exp"
    assert result.log_dir == run and result.model_path == paths.model and result.curves_path == run / "loss_curves.png"
    assert result.curves_path.read_bytes()[:4] == b"\x89PNG"
    assert list((run / "train").glob("events.out.tfevents.*"))
    assert not (run / "backup").exists()  # a finished run leaves no backup
    assert (run / "best.keras").read_bytes() == paths.model.read_bytes()
    assert json.loads((run / "run.json").read_text())["seed"] == 0
    best = result.history["val_loss"][result.best_epoch]
    assert best == min(result.history["val_loss"]) and f"{best:.4f}" in result.format()
    loaded = keras.saving.load_model(result.model_path, safe_mode=True)
    assert loaded.output_names == ["score", "box"]
    # facetracker.keras holds the best epoch (the first), not the last one (made worse on purpose).
    val = result.history["val_loss"]
    assert result.best_epoch == 0 and val[1] > 2 * val[0]
    assert validation_loss(loaded, val_ds) == pytest.approx(val[0], rel=1e-4)


class LastWeights(keras.callbacks.Callback):
    """The training weights at the end of each epoch (after SaveBest has swapped any average back out)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.weights = self.model.detector.get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("ema_momentum", [0.0, 0.9])
def test_with_ema_the_best_model_is_the_average_it_was_validated_on(tmp_path: Path, ema_momentum: float) -> None:
    paths, val_ds, last = Paths(tmp_path), dataset(16, seed=1), LastWeights()
    # float32 throughout, as on a CPU without bfloat16 units: bfloat16 validation would differ from the saved
    # float32 model by its rounding, and the check below is exact.
    result = train(paths, dataset(32), val_ds, epochs=1, callbacks=[last], mixed_precision="off",
                   **{**QUICK, "ema_momentum": ema_momentum})
    saved = keras.saving.load_model(result.model_path, safe_mode=True)
    same = [np.array_equal(a, b) for a, b in zip(saved.get_weights(), last.weights, strict=True)]
    assert all(same) if ema_momentum == 0 else not all(same)
    assert validation_loss(saved, val_ds) == pytest.approx(result.history["val_loss"][0], rel=1e-4)


@pytest.mark.slow
def test_the_monitor_chooses_the_best_epoch(tmp_path: Path) -> None:
    """The last epoch's scores are spoiled before validation: its box loss, not its total, can be the lowest."""
    paths, val_ds = Paths(tmp_path), dataset(16, seed=1)
    result = train(paths, dataset(32), val_ds, epochs=3, callbacks=[WorseBeforeValidation(epoch=2)],
                   **{**QUICK, "monitor": "val_regress_loss", "ema_momentum": 0.0})
    regress, total = result.history["val_regress_loss"], result.history["val_loss"]
    assert result.best_epoch == int(np.argmin(regress)) == 2 != int(np.argmin(total))
    assert "val_regress_loss" in result.format()
    record = json.loads((paths.logs / "train" / "current.json").read_text())
    assert record["monitor"] == "val_regress_loss" and record["val_regress_loss"] == pytest.approx(regress[2])


@pytest.mark.slow
def test_quick_preset_averages_its_weights_and_keeps_its_best_boxes() -> None:
    assert resolve_preset("quick").ema_momentum == 0.99 and resolve_preset("tutorial").ema_momentum == 0
    assert resolve_preset("quick").monitor == "val_regress_loss" and resolve_preset("tutorial").monitor == "val_loss"
    with pytest.raises(FaceTrackerError, match="ema-momentum 1.0"):
        resolve_preset("quick", ema_momentum=1.0)
    with pytest.raises(FaceTrackerError, match="--monitor 'map'"):
        resolve_preset("quick", monitor="map")


class Interrupt(keras.callbacks.Callback):
    """Record the training state at the end of an epoch, then fail as a crash would."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch, self.state = epoch, {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            self.state = snapshot(self.model)
            raise KeyboardInterrupt


class Record(keras.callbacks.Callback):
    """Record the restored state at the start of training and the first epoch run."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.state, self.first_epoch = snapshot(self.model), None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.first_epoch = epoch if self.first_epoch is None else self.first_epoch


def snapshot(model: keras.Model) -> dict:
    return {"iterations": int(model.optimizer.iterations), "weights": model.detector.get_weights(),
            "optimizer": [np.array(v) for v in model.optimizer.variables]}


@pytest.mark.slow
def test_resume_restores_weights_optimizer_and_epoch(tmp_path: Path) -> None:
    paths, train_ds, val_ds = Paths(tmp_path), dataset(32), dataset(8, seed=1)
    interrupt = Interrupt(epoch=1)
    with pytest.raises(KeyboardInterrupt):
        train(paths, train_ds, val_ds, epochs=3, callbacks=[interrupt], **QUICK)
    run = paths.logs / "train" / "exp"
    assert (run / "backup").is_dir() and interrupt.state["iterations"] == 2 * 4

    record = Record()
    result = train(paths, train_ds, val_ds, epochs=3, callbacks=[record], **QUICK)
    assert record.first_epoch == 2
    assert record.state["iterations"] == interrupt.state["iterations"]
    for before, after in zip(interrupt.state["weights"] + interrupt.state["optimizer"],
                             record.state["weights"] + record.state["optimizer"], strict=True):
        np.testing.assert_array_equal(before, after)
    assert result.log_dir == run and not (paths.logs / "train" / "exp2").exists()  # resumed in its own folder
    assert len(result.history["loss"]) == 3  # the curves show the epochs before the interruption too
    assert [row["epoch"] for row in read_history_rows(run / "history.csv")] == [0, 1, 2]


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    """An interrupted run's files (its settings, Keras' backup marker) as `train` leaves them; no training."""
    paths = Paths(tmp_path)
    settings = dataclasses.asdict(resolve_preset("quick", head_units=QUICK["head_units"]))
    del settings["epochs"]
    run = paths.logs / "train" / "exp"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 0}))
    (run / "run.json").write_text(json.dumps(settings))
    with pytest.raises(FaceTrackerError, match="delete .*exp/backup"):
        train(paths, dataset(16), dataset(8, seed=1), epochs=2, **{**QUICK, "head_units": 32})
    assert (run / "backup" / "training_metadata.json").is_file()  # the interrupted run is kept
    assert json.loads((run / "run.json").read_text()) == settings


def test_a_backup_interrupted_mid_write_keeps_the_last_whole_one(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C (or a kill) while the backup is written leaves the previous epoch's files readable."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup = WholeFileBackup(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(0)
    saved = model.get_weights()
    model.set_weights([w + 1 for w in saved])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dumps", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backup.on_epoch_end(1)
    monkeypatch.undo()
    assert read_backup_epoch(tmp_path / "backup") == 1
    restored = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    restored.load_weights(tmp_path / "backup" / "latest.weights.h5")  # a whole file, if a newer one
    assert not list((tmp_path / "backup").glob(".*"))  # no temporary file left behind


def test_a_damaged_backup_names_the_folder_to_delete(tmp_path: Path) -> None:
    (tmp_path / "backup").mkdir()
    assert read_backup_epoch(tmp_path / "backup") is None
    (tmp_path / "backup" / "training_metadata.json").write_text("")
    with pytest.raises(FaceTrackerError, match=r"training_metadata.json: damaged .* delete .*backup"):
        read_backup_epoch(tmp_path / "backup")


class PoisonAt(keras.callbacks.Callback):
    """Turn a weight into NaN at the start of an epoch, as a diverging run would."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            kernel = self.model.detector.get_layer("score").kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


@pytest.mark.slow
def test_nan_stops_cleanly_and_keeps_the_best_model(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    result = train(paths, dataset(32), dataset(8, seed=1), epochs=5, callbacks=[PoisonAt(1)], **QUICK)
    assert result.stopped_on_nan and "NaN" in result.format()
    assert len(result.history["loss"]) == 2 and math.isnan(result.history["loss"][1])
    assert result.best_epoch == 0 and result.model_path == paths.model
    _, box = keras.saving.load_model(paths.model, safe_mode=True)(synthetic(4)[0])
    assert np.all(np.isfinite(box))



def test_an_epoch_whose_training_loss_diverged_is_never_saved_as_best(tmp_path: Path) -> None:
    """Its validation box loss may still be finite and lowest (the score head went NaN, the box head did not),
    and oneDNN's kernels can turn NaN inputs into numbers: the training loss decides."""
    from facetracker.model import build_model

    class Tracker:  # what SaveBest reads of the FaceTracker it is attached to
        detector = build_model("small", SIZE, "none", 16)

    save_best = SaveBest(tmp_path / "best.keras", monitor="val_regress_loss")
    save_best.set_model(Tracker())
    save_best.on_epoch_end(0, {"loss": 1.0, "val_regress_loss": 0.5})
    kernel = Tracker.detector.get_layer("score").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    save_best.on_epoch_end(1, {"loss": math.nan, "val_regress_loss": 0.1})
    assert (save_best.best_epoch, save_best.best) == (0, 0.5)
    score, _ = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)(synthetic(2)[0])
    assert np.all(np.isfinite(score))


DISTRIBUTED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from facetracker.losses import classification_loss, localization_loss, masked_localization_loss
from facetracker.model import build_model
from facetracker.train import FaceTracker

def step(strategy, data, init, masked):
    with strategy.scope():
        detector = build_model("small", 32, "none", 16)
        detector.set_weights(init)
        tracker = FaceTracker(detector)
        loss = masked_localization_loss if masked else localization_loss
        tracker.compile(keras.optimizers.SGD(0.1), classification_loss(), loss, masked=masked)
    logs = tracker.fit(data, epochs=1, verbose=0, shuffle=False).history
    return detector.get_weights(), {k: v[0] for k, v in logs.items()}, detector

rng = np.random.default_rng(0)
images = rng.random((8, 32, 32, 3), dtype=np.float32)
classes = np.array([[1], [0]] * 4, np.float32)
data = tf.data.Dataset.from_tensor_slices((images, (classes, rng.random((8, 4), dtype=np.float32) * classes)))
init = build_model("small", 32, "none", 16).get_weights()
out = {}
for masked in (False, True):
    one = step(tf.distribute.get_strategy(), data.batch(8), init, masked)
    two = step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), data.batch(8), init, masked)
    if masked:  # a model built under the strategy (synchronized BatchNorm) loads back outside it
        path = sys.argv[1] + "/two.keras"
        two_model = two[2]
        two_model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
        assert np.array_equal(np.asarray(reloaded(images)[1]), np.asarray(two_model(images)[1]))
    out[str(masked)] = {"diff": max(float(np.abs(a - b).max()) for a, b in zip(one[0], two[0])),
                        "change": max(float(np.abs(a - b).max()) for a, b in zip(one[0], init)),
                        "one": one[1], "two": two[1]}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_two_device_step_matches_one_device(tmp_path: Path) -> None:
    """MirroredStrategy on 2 logical CPUs: same weights after a step, same logged losses (not halved).

    The two logical CPUs stand in for two GPUs, whose kernels are not oneDNN's: with oneDNN on, one full-suite
    run (of three, and none of seven runs alone) ended 0.004 apart after the step, so this test of the
    strategy's arithmetic runs TensorFlow's own CPU kernels."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    out = subprocess.run([sys.executable, "-c", DISTRIBUTED, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, env=env)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
    assert line, out.stderr[-3000:]
    for masked, result in json.loads(line[0][6:]).items():
        assert result["change"] > 1e-2, masked  # the step really moved the weights
        assert result["diff"] < 1e-4, (masked, result)
        for name, value in result["one"].items():
            assert result["two"][name] == pytest.approx(value, rel=1e-4), (masked, name)


@pytest.mark.slow
def test_trains_under_mixed_bfloat16() -> None:
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        tracker = build_tracker(resolve_preset("quick", head_units=16), 64, 2, make_strategy(None))
        images = np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32)
        labels = (np.ones((8, 1), np.float32), np.tile(np.float32([[0.2, 0.2, 0.6, 0.6]]), (8, 1)))
        history = tracker.fit(images, labels, epochs=12, batch_size=8, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(math.isfinite(v) for v in history["loss"])
    assert history["regress_loss"][-1] < history["regress_loss"][0]


class WorseBeforeValidation(keras.callbacks.Callback):
    """Before the validation of one epoch (or, `onwards`, of every epoch from it on), set every score's logit
    to `score_bias`: 30 makes each a sure "face" (the empty images too), -30 a sure "no face"."""

    def __init__(self, epoch: int, score_bias: float = 30.0, onwards: bool = False) -> None:
        super().__init__()
        self.epoch, self.current, self.score_bias, self.onwards = epoch, -1, score_bias, onwards

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current = epoch

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.current == self.epoch or (self.onwards and self.current > self.epoch):
            bias = self.model.detector.get_layer("score").bias
            bias.assign(np.full(bias.shape, self.score_bias, np.float32))


def validation_loss(detector: keras.Model, val_ds: tf.data.Dataset) -> float:
    """The validation total loss of a detector, computed as `train` computes it with the quick preset."""
    from facetracker.losses import classification_loss, masked_localization_loss
    from facetracker.train import FaceTracker

    assert resolve_preset("quick").masked
    tracker = FaceTracker(detector)
    tracker.compile(keras.optimizers.Adam(), classification_loss(), masked_localization_loss, masked=True,
                    jit_compile=False)
    return tracker.evaluate(val_ds, verbose=0, return_dict=True)["loss"]


class WorseEveryValidation(WorseBeforeValidation):
    """Make every epoch's validation bad: a run that ends worse than an earlier one."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.epoch = self.current
        super().on_test_begin(logs)


def write_val_labels(paths: Paths, text: str) -> None:
    """A stand-in for aug_data/val's labels: their bytes decide whether two runs' validation losses compare."""
    paths.aug_labels("val").mkdir(parents=True, exist_ok=True)
    (paths.aug_labels("val") / "a.0.json").write_text(text)


@pytest.mark.slow
def test_each_run_has_its_folder_and_a_worse_run_says_so(tmp_path: Path) -> None:
    paths, train_ds, val_ds = Paths(tmp_path), dataset(16), dataset(8, seed=1)
    write_val_labels(paths, '{"class": 1}')
    first = train(paths, train_ds, val_ds, epochs=1, **TOTAL)
    second = train(paths, train_ds, val_ds, epochs=1, callbacks=[WorseEveryValidation(0)], **TOTAL)
    runs = paths.logs / "train"
    assert (first.log_dir, second.log_dir) == (runs / "exp", runs / "exp2")
    assert second.history["val_loss"][0] > first.history["val_loss"][0]
    # The newest run is the current model, and the report says the earlier one was better and where it is.
    assert paths.model.read_bytes() == (runs / "exp2" / "best.keras").read_bytes()
    assert f"cp {runs / 'exp' / 'best.keras'} {paths.model}" in second.format()
    assert json.loads((runs / "current.json").read_text())["run"] == "exp2"

    write_val_labels(paths, '{"class": 0}')  # other validation data: the losses no longer compare
    third = train(paths, train_ds, val_ds, epochs=1, callbacks=[WorseEveryValidation(0)], **TOTAL)
    assert third.log_dir == runs / "exp3" and "lower val_loss" not in third.format()


@pytest.mark.slow
def test_the_seed_makes_a_run_repeatable(tmp_path: Path) -> None:
    """Through train_from_paths (what `facetracker train` runs): same seed, same losses; another seed, others."""
    import cv2

    from facetracker.train import train_from_paths

    paths = Paths(tmp_path)
    for split, seed in (("train", 0), ("val", 1)):
        images, labels = paths.aug_images(split), paths.aug_labels(split)
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i, (image, cls, box) in enumerate(zip(*synthetic(24, seed), strict=True)):
            cv2.imwrite(str(images / f"s{i}.0.jpg"), (image * 255).astype(np.uint8))
            (labels / f"s{i}.0.json").write_text(json.dumps({"image": f"s{i}.jpg", "bbox": box.tolist(),
                                                             "class": int(cls[0])}))

    def run(name: str, seed: int) -> list[float]:
        result = train_from_paths(paths, preset="quick", image_size=SIZE, epochs=2, name=name, seed=seed,
                                  head_units=16, batch_size=8, verbose=0)
        return result.history["loss"] + result.history["val_loss"]

    first, again, other = run("a", 3), run("b", 3), run("c", 4)
    assert first == pytest.approx(again, rel=1e-5)
    assert first != pytest.approx(other, rel=1e-3)


def test_gpu_settings_are_off_on_a_cpu_and_can_be_forced() -> None:
    from facetracker.train import switched_on

    assert not tf.config.list_physical_devices("GPU")  # this suite runs on CPUs
    assert not switched_on("auto") and switched_on("on") and not switched_on("off")
    with pytest.raises(FaceTrackerError, match="auto, on, off"):
        resolve_preset("quick", jit_compile="yes")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(("flags", "setting", "policy"), [
    ({"avx2", "amx_bf16"}, "auto", "mixed_bfloat16"),
    ({"avx2", "avx512_bf16"}, "auto", "mixed_bfloat16"),
    ({"avx2", "avx512f"}, "auto", None),
    ({"avx2"}, "on", "mixed_bfloat16"),
    ({"amx_bf16"}, "off", None),
])
def test_mixed_precision_on_a_cpu_is_bfloat16_where_it_has_bfloat16_units(
        monkeypatch: pytest.MonkeyPatch, flags: set[str], setting: str, policy: str | None) -> None:
    import facetracker.train as train_module

    monkeypatch.setattr(train_module, "cpu_flags", lambda: flags)
    assert training_policy(setting) == policy


@pytest.mark.slow
def test_mixed_precision_and_xla_when_switched_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import facetracker.train as train_module

    config = resolve_preset("quick", head_units=16, mixed_precision="on", jit_compile="on")
    tracker = build_tracker(config, SIZE, 2, make_strategy(None))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    assert tracker.detector.get_layer("score").dtype_policy.name == "mixed_bfloat16"  # a CPU's half precision
    assert not isinstance(tracker.optimizer, keras.optimizers.LossScaleOptimizer) and tracker.jit_compile
    history = tracker.fit(dataset(16), epochs=2, verbose=0).history
    assert all(math.isfinite(v) for v in history["loss"]) and history["loss"][-1] < history["loss"][0]
    monkeypatch.setattr(train_module, "cpu_flags", lambda: {"avx2"})  # auto: a CPU without bfloat16 units
    off = build_tracker(resolve_preset("quick", head_units=16), SIZE, 2, make_strategy(None))
    assert off.detector.get_layer("score").dtype_policy.name == "float32" and not off.jit_compile


@pytest.mark.slow
def test_a_model_trained_in_mixed_precision_is_saved_computing_in_float32(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    result = train(paths, dataset(32), dataset(16, seed=1), epochs=1, mixed_precision="on", **QUICK)
    saved = keras.saving.load_model(result.model_path, safe_mode=True)
    policies = {layer.dtype_policy.name for layer in saved.get_layer("small").layers + saved.layers}
    assert policies == {"float32"}
    # The saved model computes what the trained one does, up to bfloat16's rounding.
    images = synthetic(8, seed=2)[0]
    trained = build_tracker(resolve_preset("quick", head_units=16, mixed_precision="on"), SIZE, 1,
                            make_strategy(None)).detector
    trained.set_weights(saved.get_weights())
    assert trained.get_layer("small").get_layer("conv2").dtype_policy.name == "mixed_bfloat16"
    for ours, theirs in zip(saved(images), trained(images), strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs, np.float32), atol=0.05)


@pytest.mark.slow
def test_the_tutorial_preset_trains_a_step_on_random_weights() -> None:
    """The video's VGG16 and heads (ImageNet weights need a download: random ones here), one real update."""
    config = resolve_preset("tutorial", weights="none")
    tracker = build_tracker(config, SIZE, 1, make_strategy(None))
    assert tracker.detector.count_params() == 16_826_181
    before = [np.array(w) for w in tracker.detector.trainable_weights]
    history = tracker.fit(dataset(8, batch=8), epochs=1, verbose=0).history
    assert int(tracker.optimizer.iterations) == 1 and math.isfinite(history["loss"][0])
    assert any(not np.array_equal(a, np.array(b)) for a, b in zip(before, tracker.detector.trainable_weights,
                                                                   strict=True))
