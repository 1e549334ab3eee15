"""Step 10 of the tutorial: train the detector, log to TensorBoard, plot the losses.

`FaceTracker` is the tutorial's `Model` subclass made right for Keras 3: it applies its own
optimizer (so the optimizer's state is saved and restored), logs epoch means through
`keras.metrics.Mean` trackers (its total as `loss`, so Keras' stock callbacks read it), and gives
the same update on several devices as on one.

`train` gives each run its own folder, logs/train/exp, exp2, ... (as YOLO does): the settings
(run.json), history.csv, TensorBoard logs, the three loss curves and best.keras, the model of the
epoch with the lowest validation loss. That model is then copied to facetracker.keras, the
current model that evaluate, detect and export read. An interrupted run resumes in its folder
(backup/ holds weights, optimizer state and the epoch counter); a NaN loss stops it cleanly.

Several devices: `strategy="mirrored"` trains on all local GPUs (on a machine without one: on its one
CPU device); `strategy="multiworker"` reads the cluster from the TF_CONFIG environment variable and runs
the same command on every machine (MultiWorkerMirroredStrategy; only the chief writes logs/train and the
model, the others write below logs/worker-<index>). The dataset's batch is the global batch, split between
the replicas.
"""

import csv
import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from facetracker import model as models
from facetracker.config import (
    BATCH_SIZE,
    CURRENT_RUN_FILE,
    EPOCHS,
    IMAGE_SIZE,
    LEARNING_RATE,
    MONITORS,
    SWITCHES,
    Paths,
    current_run_record,
    latest_run_dir,
    next_run_dir,
)
from facetracker.errors import FaceTrackerError
from facetracker.fileio import TEMP_MARK, atomic_copy, atomic_write, publish
from facetracker.losses import (
    classification_loss,
    localization_loss,
    make_optimizer,
    masked_localization_loss,
    total_loss,
)
from facetracker.model import HEAD_UNITS
from facetracker.plots import plot_curves

# The tracker logs its total as `loss`, the name Keras' own callbacks (TerminateOnNaN, CSVLogger) read.
LOSS_NAMES = ("loss", "class_loss", "regress_loss")
RUN_PREFIX = "exp"  # logs/train/exp, exp2, ...
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"
RUN_FILE = "run.json"
CURVES_FILE = "loss_curves.png"
BEST_FILE = "best.keras"
STRATEGIES = ("mirrored", "multiworker")
# CPU flags of bfloat16 units: AMX (Intel Sapphire Rapids and later), AVX-512 BF16 (those and AMD Zen 4).
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
LR_RULES = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train` needs to know besides the data."""

    backbone: str = "vgg16"
    weights: str = "imagenet"
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    head_units: int = HEAD_UNITS
    # False: the tutorial's box loss, over every sample; True: over faces only (losses.masked_localization_loss).
    masked: bool = False
    # Reaches keras.utils.set_random_seed (weights, dropout) and the training set's shuffle.
    seed: int = 0
    # 0: off. Otherwise Adam keeps a moving average of the weights (this momentum per step); validation,
    # best.keras and the current model use the average, which places boxes tighter than the last step's weights.
    ema_momentum: float = 0.0
    # The validation loss whose lowest epoch is best.keras. "val_loss" is the total; the box loss alone
    # ("val_regress_loss") suits a model whose score loss rises once it is sure of the training faces.
    monitor: str = "val_loss"
    # "auto" turns XLA on where a GPU is visible: it slows a CPU down.
    jit_compile: str = "auto"
    # Mixed precision computes in float16 on a GPU and in bfloat16 on a CPU, with float32 weights; "auto" turns
    # it on where a GPU is visible or the CPU has bfloat16 units (`training_policy`). Saved models compute in float32.
    mixed_precision: str = "auto"
    # 0: off. Otherwise stop once the monitored validation loss has not improved for this many epochs;
    # best.keras and the current model hold the best epoch's weights either way.
    patience: int = 0
    # A batch size other than the preset's scales the learning rate: "none" keeps it, "linear" multiplies it by
    # batch / preset batch, "sqrt" by the square root of that (resolve_preset applies it).
    lr_rule: str = "none"


PRESETS = {
    # The video: VGG16 with ImageNet weights, 10 epochs of batch 8, Adam 1e-4, 2048-unit heads.
    "tutorial": TrainConfig(),
    # A CPU preset: a small CNN from scratch (with a grid box head) learns in minutes on 2 cores where VGG16
    # needs hours. The box loss counts faces only: the grid head has no reason to learn a box for "no face".
    # Its score loss on the few validation frames rises while its boxes still get better, so the box loss
    # picks the best epoch. 20 epochs, not 30: the last ten took a third of the time for a few thousandths
    # of validation box loss (BENCHMARKS.md, the speed-up item).
    "quick": TrainConfig(backbone="small", weights="none", epochs=20, batch_size=16, learning_rate=1e-3,
                         head_units=512, masked=True, ema_momentum=0.99, monitor="val_regress_loss"),
}


def resolve_preset(name: str | None = "tutorial", **overrides: Any) -> TrainConfig:
    """The preset's settings with `overrides` (those not None) replacing them, and its `lr_rule` applied.

    The rule scales the learning rate (the preset's or the given one) by the batch size's ratio to the
    preset's, so resolve the user's own overrides once: resolving a resolved config would scale it again.

    Raises:
        FaceTrackerError: for an unknown preset or setting.
    """
    name = name or "tutorial"
    if name not in PRESETS:
        raise FaceTrackerError(f"--preset {name!r} is unknown: choose one of {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise FaceTrackerError(f"unknown training setting(s) {', '.join(unknown)}: "
                               f"known are {', '.join(sorted(known))}")
    config = dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    for setting in ("epochs", "batch_size", "head_units", "learning_rate"):
        value = getattr(config, setting)
        if not value > 0:
            raise FaceTrackerError(f"--{setting.replace('_', '-')} {value}: must be a positive number.")
    if not 0 <= config.ema_momentum < 1:
        raise FaceTrackerError(f"--ema-momentum {config.ema_momentum}: give 0 (off) or a number below 1, such as 0.99.")
    if config.monitor not in MONITORS:
        raise FaceTrackerError(f"--monitor {config.monitor!r}: choose one of {', '.join(MONITORS)}")
    if config.patience < 0:
        raise FaceTrackerError(f"--patience {config.patience}: give 0 (train every epoch) or a number of epochs.")
    if config.lr_rule not in LR_RULES:
        raise FaceTrackerError(f"--lr-rule {config.lr_rule!r}: choose one of {', '.join(LR_RULES)}")
    ratio = config.batch_size / PRESETS[name].batch_size
    config = dataclasses.replace(config, learning_rate=config.learning_rate * LR_RULES[config.lr_rule](ratio))
    for setting in ("jit_compile", "mixed_precision"):
        if getattr(config, setting) not in SWITCHES:
            raise FaceTrackerError(f"--{setting.replace('_', '-')} {getattr(config, setting)!r}: "
                                   f"choose one of {', '.join(SWITCHES)}")
    return config


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (what "auto" settings follow)."""
    return bool(tf.config.list_physical_devices("GPU"))


def switched_on(value: str) -> bool:
    """An "auto" | "on" | "off" setting as a bool: auto is on where a GPU is visible."""
    return value == "on" or (value == "auto" and gpu_visible())


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them; empty where there is no such file (macOS, Windows)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())


def training_policy(mixed_precision: str) -> str | None:
    """The Keras dtype policy a `mixed_precision` setting trains under; None keeps the global one.

    float16 on a GPU. On a CPU, bfloat16: its matrix units (AMX, AVX-512 BF16) do the convolutions' products
    in it, while without them TensorFlow emulates it, slower than float32, so "auto" leaves such a CPU alone.
    """
    if mixed_precision == "off":
        return None
    if gpu_visible():
        return "mixed_float16"
    if mixed_precision == "on" or BF16_CPU_FLAGS & cpu_flags():
        return "mixed_bfloat16"
    return None


class FaceTracker(keras.Model):
    """The tutorial's training wrapper around the functional detector (images -> [score, box])."""

    def __init__(self, detector: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

    def compile(self, optimizer: keras.optimizers.Optimizer, classloss: keras.losses.Loss,
                localizationloss: Any = localization_loss, masked: bool = False, **kwargs: Any) -> None:
        """Set the optimizer and the two losses; `masked` counts the box loss on faces only."""
        super().compile(optimizer=optimizer, **kwargs)
        self.classloss = classloss
        self.localizationloss = localizationloss
        self.masked = masked

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """The loss trackers, listed so Keras resets them at each epoch."""
        return list(self.trackers.values())

    def call(self, images: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        return self.detector(images, training=training)

    def _batch_losses(self, data: Any, training: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-replica (total for the gradient, class loss, box loss) of one batch."""
        images, (y_class, y_box) = data
        score, box = self.detector(images, training=training)
        box = tf.cast(box, "float32")  # losses in float32, also under a mixed_bfloat16 policy
        class_loss = self.classloss(y_class, score)
        if self.masked:
            regress_loss = self.localizationloss(y_box, box, y_class)
        else:
            regress_loss = self.localizationloss(tf.cast(y_box, "float32"), box)
        # Keras sums gradients across replicas. The box loss is a sum over the batch, so per-replica sums
        # add up to one device's; a keras Loss (the class loss) already divides its batch mean by the
        # replica count for the same reason. So the plain sum gives one device's gradient.
        return total_loss(regress_loss, class_loss), class_loss, regress_loss

    def _track(self, total: tf.Tensor, class_loss: tf.Tensor, regress_loss: tf.Tensor) -> dict[str, tf.Tensor]:
        """Update the epoch means with the losses one device would see for the whole batch."""
        # Mean trackers sum their state over replicas, then divide by the summed count, so each replica
        # adds its value times the replica count: the box loss's per-replica sum becomes the global sum,
        # and the class loss, which Keras divided by the replica count, its unscaled per-replica mean.
        replicas = tf.cast(self.distribute_strategy.num_replicas_in_sync, total.dtype)
        for name, value in zip(LOSS_NAMES, (total, class_loss, regress_loss), strict=True):
            self.trackers[name].update_state(value * replicas)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages each worker's logs along axis 0, which a scalar lacks (keras-team/keras#20585).
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Skip Keras' symbolic build once `build_tracker` has built the model and the optimizer.

        That build averages a batch across the workers, which fails under MultiWorkerMirroredStrategy
        (keras-team/keras#20585: "Attempt to convert a value (PerReplica...)"); there is nothing left to build.
        """
        if not (self.built and self.optimizer is not None and self.optimizer.built):
            super()._maybe_symbolic_build(iterator, data_batch)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            total, class_loss, regress_loss = self._batch_losses(data, training=True)
            scaled = self.optimizer.scale_loss(total)
        variables = self.detector.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables, strict=True))
        return self._track(total, class_loss, regress_loss)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._track(*self._batch_losses(data, training=False))


@dataclass
class TrainResult:
    """What a training run produced."""

    history: dict[str, list[float]]
    model_path: Path | None
    curves_path: Path
    config: TrainConfig
    best_epoch: int | None = None
    stopped_on_nan: bool = False
    log_dir: Path = field(default=Path("logs"))
    parameters: int = 0
    notes: tuple[str, ...] = ()

    def format(self) -> str:
        """A short report for the CLI and the notebook."""
        epochs = len(self.history.get("loss", []))
        lines = [f"trained {self.config.backbone} ({self.parameters:,} parameters) for {epochs} epoch(s), "
                 f"batch {self.config.batch_size}, seed {self.config.seed}; run folder {self.log_dir}"]
        if self.stopped_on_nan:
            lines.append("stopped: the loss became NaN (try a lower --learning-rate)")
        if self.model_path is None:
            lines.append("no model saved: no epoch had a finite validation loss")
        else:
            monitor = self.config.monitor
            best = self.history[monitor][self.best_epoch]
            lines.append(f"best model (epoch {self.best_epoch + 1}, {monitor} {best:.4f}) saved to {self.model_path}")
        return "\n".join([*lines, *self.notes])


def make_strategy(strategy: str | tf.distribute.Strategy | None) -> tf.distribute.Strategy:
    """The tf.distribute strategy to build and train under: None (one device), "mirrored" or "multiworker"."""
    if strategy is None:
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise FaceTrackerError("--strategy multiworker reads the cluster from the TF_CONFIG environment variable, "
                                   "which is not set: set it on every worker (see the tf.distribute docs) or use "
                                   "--strategy mirrored for the devices of one machine")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise FaceTrackerError(f"--strategy {strategy!r} is unknown: choose one of {', '.join(STRATEGIES)}")


def _worker_folder(paths: Paths) -> Path | None:
    """A private folder for a multi-worker run's non-chief workers (None for the chief or a single process)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    kind, index = task.get("type"), task.get("index", 0)
    chief_kind = "chief" if "chief" in tf_config.get("cluster", {}) else "worker"
    if not task or (kind == chief_kind and index == 0):
        return None
    return paths.worker_logs(kind, index)


def run_folder(paths: Paths, name: str | None = None) -> Path:
    """This run's folder: logs/train/<name>, else the latest exp<N> when it was interrupted, else a new exp<N>.

    A worker of a multi-worker run other than the chief keeps its own folder, logs/<kind>-<index>.
    """
    worker = _worker_folder(paths)
    if worker is not None:
        return worker
    runs = paths.train_runs
    if name:
        return runs / name
    latest = latest_run_dir(runs, RUN_PREFIX)
    if latest is not None and (latest / BACKUP_DIR).is_dir():
        return latest  # interrupted: resume it
    return next_run_dir(runs, RUN_PREFIX)


def _check_resume(run_file: Path, config: TrainConfig, parameters: int, resuming: bool,
                  optimizer: dict[str, Any] | None = None) -> None:
    """Record this run's settings; refuse to resume an interrupted run that had other settings."""
    settings = dataclasses.asdict(config)
    for setting in ("epochs", "patience"):
        settings.pop(setting)  # resuming with more (or fewer) epochs, or another patience, is fine
    settings["parameters"] = parameters  # an edited model builder cannot load the old backup
    if optimizer is not None:
        settings["optimizer"] = optimizer  # the notebook's own optimizer, as it was built
    if resuming and run_file.is_file():
        before = json.loads(run_file.read_text())
        if before != settings:
            raise FaceTrackerError(f"{run_file.parent / BACKUP_DIR} holds an interrupted run with other settings "
                                   f"({before}): rerun with those settings to resume, or delete "
                                   f"{run_file.parent / BACKUP_DIR} to start afresh")
    atomic_write(run_file, json.dumps(settings, indent=1).encode())


def _require_tensorboard() -> None:
    """TensorFlow 2.21 no longer installs tensorboard, and Keras' callback fails without it."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise FaceTrackerError("the TensorBoard callback needs the tensorboard package: "
                               "pip install tensorboard==2.21.0 (it is in requirements.txt)") from error


def _batches(dataset: tf.data.Dataset) -> int:
    """Batches per epoch of a finite dataset."""
    count = int(dataset.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise FaceTrackerError("the training dataset repeats forever: pass a finite dataset (no .repeat())")
    if count < 0:
        count = int(dataset.reduce(0, lambda n, _: n + 1))
    if count == 0:
        raise FaceTrackerError("the training dataset is empty: run `facetracker augment` first")
    return count


class SaveBest(keras.callbacks.Callback):
    """Save the inner functional detector whenever the validation loss improves (NaN never does).

    Keras' ModelCheckpoint saves the model it trains, here the FaceTracker wrapper; the detector
    alone is what loads in safe mode and what evaluate, detect and export read.

    With `ema` (the run's SwapEMAWeights), the moving-average weights are saved, those the validation
    loss was measured on; the training weights are swapped back right after.

    With `patience` > 0, training stops once `patience` epochs have passed without a better loss
    (`best_epoch`: the best epoch of a resumed run so far); the saved model stays the best epoch's.
    """

    def __init__(self, path: Path, best: float = math.inf, ema: keras.callbacks.SwapEMAWeights | None = None,
                 monitor: str = "val_loss", patience: int = 0, best_epoch: int = -1) -> None:
        super().__init__()
        self.path, self.best, self.ema, self.monitor = path, best, ema, monitor
        self.patience, self.best_epoch = patience, best_epoch
        self._float32: keras.Model | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self._save_if_better(epoch, kept_value(logs.get(self.monitor, math.nan), logs.get("loss", math.nan)))
        if self.patience and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def _save_if_better(self, epoch: int, value: float) -> None:
        """Save the detector (its average with EMA) when `value` beats the best so far."""
        if math.isfinite(value) and value < self.best:
            self.best, self.best_epoch = value, epoch
            if self.ema is not None:
                self.ema.on_test_begin()  # the average in, as for validation
            try:
                publish(self.path, self._float32_detector().save)  # a kill mid-save never leaves a broken model
            finally:
                if self.ema is not None:
                    self.ema.on_test_end()


    def _float32_detector(self) -> keras.Model:
        """The detector as it is saved: computing in float32 (`model.float32_copy`), with its current weights."""
        detector = self.model.detector
        if self._float32 is None:
            self._float32 = models.float32_copy(detector)
        elif self._float32 is not detector:
            self._float32.set_weights(detector.get_weights())
        return self._float32


class WholeFileBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with each file written through a temporary one and moved into place.

    Keras writes training_metadata.json in place: a kill mid-write leaves it empty, and the next run
    fails to parse it instead of resuming.
    """

    def _save_model(self) -> None:
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        # fileio.publish's temporary name keeps only the last suffix; Keras insists on ".weights.h5".
        weights_temp = folder / f".latest.{os.getpid()}{TEMP_MARK}.weights.h5"
        try:
            self.model.save_weights(str(weights_temp), overwrite=True)
            os.replace(weights_temp, self._weights_path)
        finally:
            weights_temp.unlink(missing_ok=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        atomic_write(Path(self._training_metadata_path), json.dumps(metadata).encode())


def read_backup_epoch(backup: Path) -> int | None:
    """The epoch an interrupted run's backup resumes from, or None when there is no backup to resume."""
    metadata = backup / "training_metadata.json"
    if not metadata.is_file():
        return None
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise FaceTrackerError(f"{metadata}: damaged ({error}); delete {backup} to train this run "
                               "from the start.") from error


def read_history_rows(path: Path) -> list[dict[str, float]]:
    """The epoch rows Keras' CSVLogger wrote (none if the file is missing), the last row of each epoch kept.

    A run killed after an epoch's row but before its backup repeats that epoch when resumed, and
    appends its row again.
    """
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as file:
            rows = {int(row["epoch"]): {k: float(v) for k, v in row.items()} for row in csv.DictReader(file)}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise FaceTrackerError(f"{path}: damaged ({error}); delete it and {path.parent / BACKUP_DIR} "
                               "to train from the start.") from error
    return [rows[epoch] for epoch in sorted(rows)]


def history_dict(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Rows of epoch logs -> {"loss": [...], "val_loss": [...], ...} as `fit` returns."""
    keys = [k for k in (*LOSS_NAMES, *(f"val_{n}" for n in LOSS_NAMES)) if any(k in row for row in rows)]
    return {key: [row.get(key, math.nan) for row in rows] for key in keys}


@dataclass(frozen=True)
class Recipe:
    """The three pieces the video teaches, swappable from the notebook; the defaults are the package's own.

    - `build_model(backbone, input_size, weights, head_units)` returns the functional detector
      (images -> [score, box]), as `facetracker.model.build_model` does.
    - `localization_loss(y_true_box, y_pred_box)` returns a scalar (with `masked`, it also gets y_true_class).
    - `tracker_class(detector)` is a keras.Model with the video's `compile(optimizer, classloss,
      localizationloss)`, a `detector` attribute and a `train_step` that logs loss (the total),
      class_loss and regress_loss.
    - `optimizer` is a Keras optimizer (the notebook's Adam with its learning-rate schedule); each run
      trains a fresh copy made from its config, so running the training cell again starts from step 0.
    """

    build_model: Callable[..., keras.Model] = models.build_model
    localization_loss: Callable[..., Any] | None = None
    tracker_class: type[keras.Model] = FaceTracker
    optimizer: keras.optimizers.Optimizer | None = None

    def loss_for(self, config: TrainConfig) -> Callable[..., Any]:
        """The user's loss, else the tutorial's (or the masked one when the settings ask for it)."""
        if self.localization_loss is not None:
            return self.localization_loss
        return masked_localization_loss if config.masked else localization_loss

    def optimizer_for(self, config: TrainConfig, batches_per_epoch: int) -> keras.optimizers.Optimizer:
        """A fresh copy of the user's optimizer, else the package's Adam for these settings."""
        if self.optimizer is None:
            return make_optimizer(batches_per_epoch, config.learning_rate, config.ema_momentum)
        return type(self.optimizer).from_config(self.optimizer.get_config())


def optimizer_settings(optimizer: keras.optimizers.Optimizer) -> dict[str, Any]:
    """The learning rate at step 0 and the EMA momentum (0: off) of a new optimizer, as TrainConfig names them."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # unwrap a LossScaleOptimizer
    # A float32 variable: 7 significant digits give back the number typed (5e-4, not 0.00050000002).
    return {"learning_rate": float(f"{float(optimizer.learning_rate):.7g}"),
            "ema_momentum": float(optimizer.ema_momentum) if optimizer.use_ema else 0.0}


def optimizer_record(optimizer: keras.optimizers.Optimizer) -> dict[str, Any]:
    """The optimizer's class and config (its schedule included) as plain JSON, for run.json."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return json.loads(json.dumps(keras.optimizers.serialize(optimizer), default=str))


def build_tracker(config: TrainConfig, input_size: int, batches_per_epoch: int,
                  strategy: tf.distribute.Strategy, recipe: Recipe = Recipe()) -> keras.Model:
    """Build, compile and call (so it is built) the training wrapper under `strategy`.

    With mixed precision on (`training_policy`), layers compute in float16 or bfloat16 and keep float32
    weights; under float16 the tracker's optimizer also scales the loss (Keras wraps it in a LossScaleOptimizer).
    """
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(training_policy(config.mixed_precision) or policy)
    try:
        with strategy.scope():
            detector = recipe.build_model(config.backbone, input_size, config.weights, config.head_units)
            tracker = recipe.tracker_class(detector, name="facetracker_trainer")
            optimizer = recipe.optimizer_for(config, batches_per_epoch)
            jit = {"jit_compile": switched_on(config.jit_compile)}
            if config.masked:
                tracker.compile(optimizer, classification_loss(), recipe.loss_for(config), masked=True, **jit)
            else:
                tracker.compile(optimizer, classification_loss(), recipe.loss_for(config), **jit)
            tracker(np.zeros((1, input_size, input_size, 3), np.float32))
            tracker.optimizer.build(tracker.detector.trainable_variables)
    finally:
        keras.config.set_dtype_policy(policy)  # the policy is global: leave it as it was
    return tracker


def validation_key(paths: Paths) -> str:
    """A fingerprint of aug_data/val's labels: two runs' validation losses compare only when it matches."""
    digest = hashlib.blake2b(digest_size=8)
    for label in sorted(paths.aug_labels("val").glob("*.json")):
        digest.update(label.name.encode() + label.read_bytes())
    return digest.hexdigest()


def make_current(paths: Paths, run_dir: Path, best: float, monitor: str = "val_loss") -> str | None:
    """Copy the run's best model to facetracker.keras (the current model); say so if an earlier one was better."""
    record = current_run_record(paths)
    key = validation_key(paths)
    note = None
    # The record keeps its loss under its own name: a run judged by another loss never compares.
    if paths.model.is_file() and record.get("val_data") == key and record.get(monitor, math.inf) < best:
        earlier = paths.train_runs / record["run"] / BEST_FILE
        note = (f"note: the model this replaces ({record['run']}) had a lower {monitor} on the same validation "
                f"data ({record[monitor]:.4f} < {best:.4f}); to go back to it: cp {earlier} {paths.model}")
    atomic_copy(run_dir / BEST_FILE, paths.model)
    record = {"run": run_dir.name, "monitor": monitor, monitor: best, "val_data": key}
    atomic_write(paths.train_runs / CURRENT_RUN_FILE, json.dumps(record, indent=1).encode())
    return note


def train(paths: Paths, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset, preset: str | None = None,
          strategy: str | tf.distribute.Strategy | None = None, callbacks: list | tuple = (),
          verbose: str | int = "auto", build_model: Callable[..., keras.Model] | None = None,
          localization_loss: Callable[..., Any] | None = None, tracker_class: type[keras.Model] | None = None,
          name: str | None = None, optimizer: keras.optimizers.Optimizer | None = None,
          **settings: Any) -> TrainResult:
    """Train the detector on batched (image, (class, box)) datasets.

    Args:
        paths: where logs/ and facetracker.keras go.
        train_ds, val_ds: finite batched datasets as `facetracker.dataset` makes them.
        preset: "tutorial" (default) or "quick"; `settings` (epochs, backbone, weights, learning_rate,
            head_units, masked, ema_momentum, monitor, seed, jit_compile, mixed_precision, patience,
            lr_rule) override it.
        strategy: None, "mirrored", "multiworker" or a tf.distribute.Strategy.
        callbacks: extra Keras callbacks.
        verbose: passed to `fit`.
        build_model, localization_loss, tracker_class: your own versions of the pieces the video teaches
            (see `Recipe`); None keeps the package's.
        optimizer: your Keras optimizer (a fresh copy trains); its learning rate at step 0 and EMA momentum
            replace the preset's in the run's settings, and run.json records its config. None: the preset's Adam.
        name: the run folder below logs/train (default: a new exp<N>, or the latest one if it was interrupted).

    Returns:
        A TrainResult. The run writes its settings, history.csv, TensorBoard logs, loss curves and
        best.keras into its run folder, then copies best.keras to facetracker.keras (the current model).
        A run interrupted before it finished resumes from its folder's backup when called again with
        the same settings.
    """
    config = resolve_preset(preset, **settings)
    recipe = Recipe(build_model or models.build_model, localization_loss, tracker_class or FaceTracker, optimizer)
    if optimizer is not None:  # read from a fresh copy: the user's may have taken steps already
        config = dataclasses.replace(config, **optimizer_settings(recipe.optimizer_for(config, 1)))
    _require_tensorboard()
    run_dir = run_folder(paths, name)
    backup, history_path = run_dir / BACKUP_DIR, run_dir / HISTORY_FILE
    keras.utils.set_random_seed(config.seed)
    input_size = int(train_ds.element_spec[0].shape[1])
    tracker = build_tracker(config, input_size, _batches(train_ds), make_strategy(strategy), recipe)
    resuming = read_backup_epoch(backup) is not None
    _check_resume(run_dir / RUN_FILE, config, tracker.detector.count_params(), resuming,
                  optimizer_record(tracker.optimizer) if optimizer is not None else None)
    if not resuming:
        history_path.unlink(missing_ok=True)
    rows = read_history_rows(history_path)
    earlier = monitored_values(rows, config.monitor)
    best = lowest_finite(earlier)
    best_before = math.inf if best is None else earlier[best]
    best_epoch = -1 if best is None else int(rows[best]["epoch"])

    # Validation and best.keras use the moving-average weights when there are some; training goes on from its own.
    ema = keras.callbacks.SwapEMAWeights() if config.ema_momentum else None
    # The model and history are written before the backup: a kill between them never skips an epoch's row.
    save_best = SaveBest(run_dir / BEST_FILE, best_before, ema, config.monitor, config.patience, best_epoch)
    tracker.fit(train_ds, epochs=config.epochs, validation_data=val_ds, verbose=verbose, shuffle=False, callbacks=[
        *([ema] if ema else []), keras.callbacks.TerminateOnNaN(), save_best,
        keras.callbacks.CSVLogger(str(history_path), append=True), WholeFileBackup(str(backup)),
        keras.callbacks.TensorBoard(str(run_dir)), *callbacks])
    return _result(paths, run_dir, config, tracker.detector.count_params())


def kept_value(monitored: float, loss: float) -> float:
    """An epoch's monitored loss, or NaN when its training loss diverged: such weights are never the best.

    A NaN in one head need not reach the validation loss that picks the best epoch (the box loss, when the
    score head diverged), nor does it always spread: oneDNN's kernels can turn a NaN input into a number.
    """
    return monitored if math.isfinite(loss) else math.nan


def monitored_values(rows: list[dict[str, float]], monitor: str) -> list[float]:
    """Each history row's monitored loss as `kept_value` gives it (the values the best epoch is picked from)."""
    return [kept_value(row.get(monitor, math.nan), row.get("loss", math.nan)) for row in rows]


def lowest_finite(values: list[float]) -> int | None:
    """The index of the lowest finite value (a NaN loss is never best), or None when there is none."""
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    return min(finite, key=values.__getitem__) if finite else None


def _result(paths: Paths, run_dir: Path, config: TrainConfig, parameters: int) -> TrainResult:
    """Read back the run's history, plot it, and make its best model the current one (the chief only)."""
    rows = read_history_rows(run_dir / HISTORY_FILE)
    history = history_dict(rows)
    val = monitored_values(rows, config.monitor)
    best_epoch = lowest_finite(val)
    stopped_on_nan = not all(math.isfinite(v) for v in history.get("loss", []))
    saved, notes = None, ()
    if best_epoch is not None and (run_dir / BEST_FILE).is_file():
        chief = _worker_folder(paths) is None
        saved = paths.model if chief else run_dir / BEST_FILE
        note = make_current(paths, run_dir, val[best_epoch], config.monitor) if chief else None
        notes = (note,) if note else ()
    return TrainResult(history, saved, plot_curves(history, LOSS_NAMES, run_dir / CURVES_FILE), config, best_epoch,
                       stopped_on_nan, run_dir, parameters, notes)


def train_from_paths(paths: Paths, preset: str | None = "tutorial",
                     strategy: str | tf.distribute.Strategy | None = None, batch_size: int | None = None,
                     image_size: int = IMAGE_SIZE, verbose: str | int = "auto",
                     name: str | None = None, callbacks: list | tuple = (), cache: str = "auto",
                     **settings: Any) -> TrainResult:
    """Train on aug_data/train, validate on aug_data/val (what `facetracker train` runs).

    `cache` keeps the decoded crops between epochs (see `dataset.make_dataset`); it never changes the result.
    """
    from facetracker.dataset import datasets, make_dataset

    strategy = make_strategy(strategy)  # before any other TensorFlow call: a multi-worker strategy must be first
    config = resolve_preset(preset, batch_size=batch_size, **settings)
    data = datasets(paths, config.batch_size, image_size, config.seed, splits=("train", "val"),
                    make=functools.partial(make_dataset, cache=cache))
    # The user's own overrides, resolved once more by train: a resolved config would get its lr_rule twice.
    return train(paths, data["train"], data["val"], preset=preset, strategy=strategy, verbose=verbose, name=name,
                 callbacks=callbacks, batch_size=batch_size, **settings)
