"""Paths and hyperparameters in one place.

Every step takes a `Paths` built from one root folder (default: the current directory),
so the notebook, the CLI and the tests all agree on where things live.
"""

import json
from dataclasses import dataclass
from pathlib import Path

CLASS_NAME = "face"
SPLITS = ("train", "test", "val")
SPLIT_RATIOS = (0.7, 0.15, 0.15)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# The tutorial's camera frame and network input.
FRAME_WIDTH, FRAME_HEIGHT = 640, 480
IMAGE_SIZE = 120
# The score from which an image counts as showing the object (detect draws it, evaluate counts it).
SCORE_THRESHOLD = 0.5

# Augmentation (tutorial section 5).
CROP_SIZE = 450
AUG_PER_IMAGE = 60

# Training (tutorial sections 7-10).
BATCH_SIZE = 8
EPOCHS = 10
LEARNING_RATE = 1e-4
# The validation losses `train` can pick its best epoch by, and the values of its GPU switches.
MONITORS = ("val_loss", "val_regress_loss", "val_class_loss")
PRESET_NAMES = ("tutorial", "quick")  # train.PRESETS' keys, here so that --help lists them without TensorFlow
SWITCHES = ("auto", "on", "off")
# Where training keeps the decoded crops between epochs (dataset.make_dataset); "off" decodes every epoch.
CACHES = ("auto", "memory", "file", "off")
MODEL_FILE = "facetracker.keras"
CURRENT_RUN_FILE = "current.json"  # in logs/train: which run facetracker.keras was copied from


@dataclass(frozen=True)
class Paths:
    """Where every step reads and writes, below one root folder."""

    root: Path = Path(".")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def images(self) -> Path:
        """Raw frames, as captured. Never moved or deleted by our code."""
        return self.data / "images"

    @property
    def labels(self) -> Path:
        """labelme JSON files, one per image that shows the object."""
        return self.data / "labels"

    @property
    def aug_data(self) -> Path:
        return self.root / "aug_data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def train_runs(self) -> Path:
        """One folder per training run: exp, exp2, ..."""
        return self.logs / "train"

    @property
    def detect_runs(self) -> Path:
        """One folder per `detect` run on images: runs/detect/predict, predict2, ..."""
        return self.root / "runs" / "detect"

    @property
    def export(self) -> Path:
        """Exported models (`facetracker export`: SavedModel folders, .tflite files, the web page)."""
        return self.root / "export"

    @property
    def check_session(self) -> "Paths":
        """The demo's second, unseen sample session, scored after training."""
        return Paths(self.root / "check")

    def worker_logs(self, kind: str, index: int) -> Path:
        """The private folder of a multi-worker run's non-chief worker: logs/worker-<index>."""
        return self.logs / f"{kind}-{index}"

    @property
    def model(self) -> Path:
        """The current model: the best of the latest training run."""
        return self.root / MODEL_FILE

    @property
    def web(self) -> Path:
        """The exported web page (`facetracker export --format web`, `facetracker serve`)."""
        return self.export / "web"

    def split_images(self, split: str) -> Path:
        return self.data / split / "images"

    def split_labels(self, split: str) -> Path:
        return self.data / split / "labels"

    def aug_images(self, split: str) -> Path:
        return self.aug_data / split / "images"

    def aug_labels(self, split: str) -> Path:
        return self.aug_data / split / "labels"


def current_run_record(paths: Paths) -> dict:
    """logs/train/current.json: which run facetracker.keras was copied from, and its validation loss ({} if none)."""
    try:
        record = json.loads((paths.train_runs / CURRENT_RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("run"), str) else {}


def current_run_dir(paths: Paths) -> Path | None:
    """The training run folder facetracker.keras was copied from, or None."""
    record = current_run_record(paths)
    run = paths.train_runs / record["run"] if record else None
    return run if run is not None and run.is_dir() else None


def run_number(folder: Path, prefix: str) -> int:
    """The number of a run folder: exp -> 1, exp7 -> 7; a name not of that form -> 0."""
    suffix = folder.name.removeprefix(prefix)
    if not folder.name.startswith(prefix) or not (suffix == "" or suffix.isdigit()):
        return 0
    return int(suffix or 1)


def latest_run_dir(parent: Path, prefix: str) -> Path | None:
    """The highest-numbered run folder below `parent` (parent/exp, exp2, ...), or None."""
    runs = [f for f in parent.glob(f"{prefix}*") if f.is_dir() and run_number(f, prefix)]
    return max(runs, key=lambda f: run_number(f, prefix), default=None)


def next_run_dir(parent: Path, prefix: str) -> Path:
    """A new run folder's path, numbered after the latest (as YOLO's runs/train/exp, exp2, ...)."""
    latest = latest_run_dir(parent, prefix)
    number = run_number(latest, prefix) + 1 if latest is not None else 1
    return parent / (prefix if number == 1 else f"{prefix}{number}")
