"""Paths and hyperparameters in one place.

Every step takes a `Paths` built from one root folder (default: the current directory),
so the notebook, the CLI and the tests all agree on where things live.
"""

from dataclasses import dataclass
from pathlib import Path

CLASS_NAME = "face"
SPLITS = ("train", "test", "val")
SPLIT_RATIOS = (0.7, 0.15, 0.15)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# The tutorial's camera frame and network input.
FRAME_WIDTH, FRAME_HEIGHT = 640, 480
IMAGE_SIZE = 120

# Augmentation (tutorial section 5).
CROP_SIZE = 450
AUG_PER_IMAGE = 60

# Training (tutorial sections 7-10).
BATCH_SIZE = 8
EPOCHS = 10
LEARNING_RATE = 1e-4
MODEL_FILE = "facetracker.keras"


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
    def model(self) -> Path:
        return self.root / MODEL_FILE

    def split_images(self, split: str) -> Path:
        return self.data / split / "images"

    def split_labels(self, split: str) -> Path:
        return self.data / split / "labels"

    def aug_images(self, split: str) -> Path:
        return self.aug_data / split / "images"

    def aug_labels(self, split: str) -> Path:
        return self.aug_data / split / "labels"
