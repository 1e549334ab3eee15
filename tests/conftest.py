"""Shared fixtures: a small synthetic dataset on disk, a stand-in camera video, a real small model, file hashing."""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest

from facetracker.config import Paths
from facetracker.sample_data import make_sample_data, write_sample_video

SAMPLE_COUNT = 20  # frames in `sample_root`: 17 with a face, 3 without (seed 0)
SMALL_MODEL = ("small", 120, "none", 16)  # build_model arguments of the real detector the tests use (0.3 s)


def save_with_labelme(label_path: Path, image_path: Path, points: list, label: str = "face") -> Path:
    """Write a label with labelme's own writer, as its GUI saves one rectangle (points in click order).

    The shape dict is the one labelme's `_shape_to_dict` builds; imagePath is relative to the label's
    folder and imageData is None, labelme 6's defaults.
    """
    from labelme import LabelFile

    height, width = cv2.imread(str(image_path)).shape[:2]
    shape = {
        "label": label,
        "points": [(float(x), float(y)) for x, y in points],
        "group_id": None,
        "description": "",
        "shape_type": "rectangle",
        "flags": {},
        "mask": None,
    }
    LabelFile().save(str(label_path), [shape], os.path.relpath(image_path, label_path.parent), height, width)
    return label_path


def hash_tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below `folder`."""
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset made once per test session; copy it (see `sample_root`) before changing anything.

    Every other label is re-saved by labelme itself (same points, same click order), so the readers
    are tested on labelme's own output as well as on ours.
    """
    root = tmp_path_factory.mktemp("sample-template")
    paths = Paths(root)
    make_sample_data(paths, count=SAMPLE_COUNT, seed=0)
    for label_path in sorted(paths.labels.glob("*.json"))[::2]:
        points = json.loads(label_path.read_text())["shapes"][0]["points"]
        save_with_labelme(label_path, paths.images / f"{label_path.stem}.jpg", points)
    return root


@pytest.fixture
def sample_root(sample_template: Path, tmp_path: Path) -> Path:
    """A fresh project root of this test: data/images (20 JPEG frames) and data/labels (17 labelme files,
    9 of them written by labelme itself)."""
    root = tmp_path / "project"
    shutil.copytree(sample_template, root)
    return root


@pytest.fixture
def sample_paths(sample_root: Path) -> Paths:
    """`Paths` of `sample_root`."""
    return Paths(sample_root)


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-frame, 15 fps .mp4 of the moving face: a stand-in camera (read-only, shared)."""
    return write_sample_video(tmp_path_factory.mktemp("video") / "camera.mp4", frames=30, fps=15, seed=0)


@pytest.fixture
def file_hashes() -> Callable[[Path], dict[str, str]]:
    """A function: folder -> {relative path: SHA-256} of every file below it."""
    return hash_tree


@pytest.fixture(scope="session")
def small_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real small detector (untrained, seed 0) saved as .keras (read-only, shared)."""
    import keras

    from facetracker.model import build_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.keras"
    build_model(*SMALL_MODEL).save(path)
    return path
