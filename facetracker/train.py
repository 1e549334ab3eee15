"""Step 10 of the tutorial: train the detector, log to TensorBoard, plot the losses.

`FaceTracker` is the tutorial's `Model` subclass made right for Keras 3: it applies its own
optimizer (so the optimizer's state is saved and restored), logs epoch means through
`keras.metrics.Mean` trackers, and gives the same update on several devices as on one.

`train` adds what a long CPU run needs: TensorBoard logs in logs/, the best model by validation
loss saved as facetracker.keras (the inner functional model: it loads in safe mode), the three
loss curves as logs/loss_curves.png, resuming after an interruption (logs/backup holds weights,
optimizer state and the epoch counter) and a clean stop when the loss turns NaN.

Several devices: `strategy="mirrored"` trains on all local GPUs (or CPUs); `strategy="multiworker"`
reads the cluster from the TF_CONFIG environment variable and runs the same command on every
machine (MultiWorkerMirroredStrategy; only the chief writes logs/ and the model, the others write
below logs/worker-<index>). The dataset's batch is the global batch, split between the replicas.
"""

import dataclasses
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
from facetracker.annotations import atomic_write
from facetracker.config import BATCH_SIZE, EPOCHS, IMAGE_SIZE, LEARNING_RATE, Paths
from facetracker.errors import FaceTrackerError
from facetracker.losses import (
    classification_loss,
    localization_loss,
    make_optimizer,
    masked_localization_loss,
    total_loss,
)
from facetracker.model import HEAD_UNITS

LOSS_NAMES = ("total_loss", "class_loss", "regress_loss")
MONITOR = "val_total_loss"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.json"
RUN_FILE = "run.json"
CURVES_FILE = "loss_curves.png"
STRATEGIES = ("mirrored", "multiworker")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train` needs to know besides the data."""

    backbone: str = "vgg16"
    weights: str = "imagenet"
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    head_units: int = HEAD_UNITS
    # The tutorial's unmasked box loss. Measured against the masked one (small CNN, synthetic 64 px squares,
    # 12 epochs, 3 seeds): held-out mean IoU 0.74 vs 0.40; the masked box head stalled in 2 of 3 seeds.
    masked: bool = False


PRESETS = {
    # The video: VGG16 with ImageNet weights, 10 epochs of batch 8, Adam 1e-4, 2048-unit heads.
    "tutorial": TrainConfig(),
    # A CPU preset: a small CNN from scratch learns in minutes on 2 cores where VGG16 needs hours.
    # 12 epochs: on the demo's 756 samples (48 batches) about 3-5 minutes on 2 cores.
    "quick": TrainConfig(backbone="small", weights="none", epochs=12, batch_size=16, learning_rate=1e-3,
                         head_units=512),
}


def resolve_preset(name: str | None = "tutorial", **overrides: Any) -> TrainConfig:
    """The preset's settings with `overrides` (those not None) replacing them.

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
    return config


class FaceTracker(keras.Model):
    """The tutorial's training wrapper around the functional detector (images -> [score, box])."""

    def __init__(self, detector: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

    def compile(self, optimizer: keras.optimizers.Optimizer, classloss: keras.losses.Loss,
                localizationloss: Any = localization_loss, masked: bool = False, **kwargs: Any) -> None:
        """Set the optimizer and the two losses; `masked` counts the box loss on faces only."""
        kwargs.setdefault("jit_compile", False)
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
        return {name: tracker.result() for name, tracker in self.trackers.items()}

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

    def format(self) -> str:
        """A short report for the CLI and the notebook."""
        epochs = len(self.history.get("total_loss", []))
        lines = [f"trained {self.config.backbone} ({self.parameters:,} parameters) for {epochs} epoch(s), "
                 f"batch {self.config.batch_size}; logs in {self.log_dir}, curves in {self.curves_path}"]
        if self.stopped_on_nan:
            lines.append("stopped: the loss became NaN (try a lower --learning-rate)")
        if self.model_path is None:
            lines.append("no model saved: no epoch had a finite validation loss")
        else:
            best = self.history[MONITOR][self.best_epoch]
            lines.append(f"best model (epoch {self.best_epoch + 1}, {MONITOR} {best:.4f}) saved to {self.model_path}")
        return "\n".join(lines)


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


def _worker_paths(paths: Paths) -> tuple[Path, Path]:
    """(log dir, model path): the chief's, or a private folder for the other workers of a multi-worker run."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    kind, index = task.get("type"), task.get("index", 0)
    chief_kind = "chief" if "chief" in tf_config.get("cluster", {}) else "worker"
    if not task or (kind == chief_kind and index == 0):
        return paths.logs, paths.model
    folder = paths.logs / f"{kind}-{index}"
    return folder, folder / paths.model.name


def _check_resume(run_file: Path, config: TrainConfig, parameters: int, resuming: bool) -> None:
    """Record this run's settings; refuse to resume an interrupted run that had other settings."""
    settings = dataclasses.asdict(config)
    settings.pop("epochs")  # resuming with more (or fewer) epochs is fine
    settings["parameters"] = parameters  # an edited model builder cannot load the old backup
    if resuming and run_file.is_file():
        before = json.loads(run_file.read_text())
        if before != settings:
            raise FaceTrackerError(f"{run_file.parent / BACKUP_DIR} holds an interrupted run with other settings "
                                   f"({before}): rerun with those settings to resume, or delete "
                                   f"{run_file.parent / BACKUP_DIR} to start afresh")
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(settings, indent=1))


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
    """Save the inner functional detector whenever the validation total loss improves (NaN never does)."""

    def __init__(self, path: Path, best: float = math.inf) -> None:
        super().__init__()
        self.path, self.best = path, best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(MONITOR, math.nan)
        if math.isfinite(value) and value < self.best:
            self.best = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.stem}.tmp.keras")  # Keras insists on the suffix
            self.model.detector.save(temp)
            os.replace(temp, self.path)  # a kill mid-save never leaves a broken model


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first batch whose total loss is NaN or infinite (Keras' TerminateOnNaN reads `loss` only)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("total_loss")
        if value is not None and not math.isfinite(float(value)):
            self.stopped_at = (self.epoch, batch)
            self.model.stop_training = True


class HistoryFile(keras.callbacks.Callback):
    """Keep every epoch's logs in a JSON file, so the curves of a resumed run show all epochs."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rows = [row for row in read_history_rows(self.path) if row["epoch"] < epoch]
        rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        atomic_write(self.path, json.dumps(rows, indent=1).encode())


def read_history_rows(path: Path) -> list[dict[str, float]]:
    """The rows a `HistoryFile` wrote (none if the file is missing)."""
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FaceTrackerError(f"{path}: damaged ({error}); delete it and {path.parent / BACKUP_DIR} "
                               "to train from the start.") from error


def history_dict(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Rows of epoch logs -> {"total_loss": [...], "val_total_loss": [...], ...} as `fit` returns."""
    keys = [k for k in (*LOSS_NAMES, *(f"val_{n}" for n in LOSS_NAMES)) if any(k in row for row in rows)]
    return {key: [row.get(key, math.nan) for row in rows] for key in keys}


def plot_curves(history: dict[str, list[float]], path: Path) -> Path:
    """The tutorial's three plots (total, class, regress loss; train vs val) saved as a PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4))
    for ax, name in zip(figure.subplots(1, 3), LOSS_NAMES, strict=True):
        ax.plot(history.get(name, []), color="teal", label="train")
        ax.plot(history.get(f"val_{name}", []), color="orange", label="val")
        ax.set(title=name.replace("_", " ").title(), xlabel="epoch")
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80, bbox_inches="tight")
    return path


@dataclass(frozen=True)
class Recipe:
    """The three pieces the video teaches, swappable from the notebook; the defaults are the package's own.

    - `build_model(backbone, input_size, weights, head_units)` returns the functional detector
      (images -> [score, box]), as `facetracker.model.build_model` does.
    - `localization_loss(y_true_box, y_pred_box)` returns a scalar (with `masked`, it also gets y_true_class).
    - `tracker_class(detector)` is a keras.Model with the video's `compile(optimizer, classloss,
      localizationloss)`, a `detector` attribute and a `train_step` that logs total_loss, class_loss
      and regress_loss.
    """

    build_model: Callable[..., keras.Model] = models.build_model
    localization_loss: Callable[..., Any] | None = None
    tracker_class: type[keras.Model] = FaceTracker

    def loss_for(self, config: TrainConfig) -> Callable[..., Any]:
        """The user's loss, else the tutorial's (or the masked one when the settings ask for it)."""
        if self.localization_loss is not None:
            return self.localization_loss
        return masked_localization_loss if config.masked else localization_loss


def build_tracker(config: TrainConfig, input_size: int, batches_per_epoch: int,
                  strategy: tf.distribute.Strategy, recipe: Recipe = Recipe()) -> keras.Model:
    """Build, compile and call (so it is built) the training wrapper under `strategy`."""
    with strategy.scope():
        detector = recipe.build_model(config.backbone, input_size, config.weights, config.head_units)
        tracker = recipe.tracker_class(detector, name="facetracker_trainer")
        optimizer = make_optimizer(batches_per_epoch, config.learning_rate)
        if config.masked:
            tracker.compile(optimizer, classification_loss(), recipe.loss_for(config), masked=True)
        else:
            tracker.compile(optimizer, classification_loss(), recipe.loss_for(config))
        tracker(np.zeros((1, input_size, input_size, 3), np.float32))
    return tracker


def train(paths: Paths, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset, preset: str | None = None,
          strategy: str | tf.distribute.Strategy | None = None, callbacks: list | tuple = (),
          verbose: str | int = "auto", build_model: Callable[..., keras.Model] | None = None,
          localization_loss: Callable[..., Any] | None = None, tracker_class: type[keras.Model] | None = None,
          **settings: Any) -> TrainResult:
    """Train the detector on batched (image, (class, box)) datasets.

    Args:
        paths: where logs/ and facetracker.keras go.
        train_ds, val_ds: finite batched datasets as `facetracker.dataset` makes them.
        preset: "tutorial" (default) or "quick"; `settings` (epochs, backbone, weights, learning_rate,
            head_units, masked) override it.
        strategy: None, "mirrored", "multiworker" or a tf.distribute.Strategy.
        callbacks: extra Keras callbacks.
        verbose: passed to `fit`.
        build_model, localization_loss, tracker_class: your own versions of the pieces the video teaches
            (see `Recipe`); None keeps the package's.

    Returns:
        A TrainResult. A run interrupted before it finished resumes from logs/backup when called again
        with the same settings; a fresh run starts when logs/backup is absent.
    """
    config = resolve_preset(preset, **settings)
    recipe = Recipe(build_model or models.build_model, localization_loss, tracker_class or FaceTracker)
    _require_tensorboard()
    log_dir, model_path = _worker_paths(paths)
    backup, history_path = log_dir / BACKUP_DIR, log_dir / HISTORY_FILE
    input_size = int(train_ds.element_spec[0].shape[1])
    tracker = build_tracker(config, input_size, _batches(train_ds), make_strategy(strategy), recipe)
    resuming = (backup / "training_metadata.json").is_file()
    _check_resume(log_dir / RUN_FILE, config, tracker.detector.count_params(), resuming)
    if not resuming:
        history_path.unlink(missing_ok=True)
    rows = read_history_rows(history_path)
    best_before = min((r[MONITOR] for r in rows if math.isfinite(r.get(MONITOR, math.nan))), default=math.inf)

    nan_stop, save_best = StopOnNaN(), SaveBest(model_path, best_before)
    # The model and history are written before the backup: a kill between them never skips an epoch's row.
    tracker.fit(train_ds, epochs=config.epochs, validation_data=val_ds, verbose=verbose, shuffle=False, callbacks=[
        nan_stop, save_best, HistoryFile(history_path), keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.TensorBoard(str(log_dir)), *callbacks])

    history = history_dict(read_history_rows(history_path))
    val = history.get(MONITOR, [])
    finite = [i for i, v in enumerate(val) if math.isfinite(v)]
    best_epoch = min(finite, key=val.__getitem__) if finite else None
    saved = model_path if best_epoch is not None and model_path.is_file() else None
    return TrainResult(history, saved, plot_curves(history, log_dir / CURVES_FILE), config, best_epoch,
                       nan_stop.stopped_at is not None, log_dir, tracker.detector.count_params())


def train_from_paths(paths: Paths, preset: str | None = "tutorial", strategy: str | None = None,
                     batch_size: int | None = None, image_size: int = IMAGE_SIZE, verbose: str | int = "auto",
                     **settings: Any) -> TrainResult:
    """Train on aug_data/train, validate on aug_data/val (what `facetracker train` runs)."""
    from facetracker.dataset import make_dataset

    config = resolve_preset(preset, batch_size=batch_size, **settings)
    train_ds, val_ds = (make_dataset(paths.aug_images(split), paths.aug_labels(split), config.batch_size,
                                     shuffle=split == "train", image_size=image_size) for split in ("train", "val"))
    return train(paths, train_ds, val_ds, preset=preset, strategy=strategy, verbose=verbose,
                 **dataclasses.asdict(config))
