"""Shared fixtures: a small synthetic dataset on disk, a stand-in camera video, a real small model, file hashing."""

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetracker.config import Paths
from facetracker.sample_data import make_sample_data, write_sample_video

SAMPLE_COUNT = 20  # frames in `sample_root`: 17 with a face, 3 without (seed 0)
SMALL_MODEL = ("small", 120, "none", 16)  # build_model arguments of the real detector the tests use (0.3 s)

# The constant model (`constant_model`): score 0.8 and this box for every image. In the model's input square
# (the 480 px centre square of a 640x480 frame, x0 = 80) it is 150 x 122.4 px at (155, 100); in frame pixels
# (x + 80) it is (235, 100, 385, 222.4), drawn and written as (235, 100, 385, 222) once rounded.
CONSTANT_SCORE = 0.8
CONSTANT_BOX_PX = (155.0, 100.0, 305.0, 222.4)
CONSTANT_BOX = tuple(v / 480 for v in CONSTANT_BOX_PX)
CONSTANT_FRAME_BOX = (235, 100, 385, 222)  # in a 640x480 frame, by hand: x + 80, y unchanged, rounded


# The files that take longest (pytest --durations on 2 cores), heaviest first. pytest-xdist hands whole files
# to its two processes in collection order (dev.py turns off its own reordering, which goes by test count):
# a heavy file handed out last keeps one process busy while the other sits idle.
HEAVIEST_FILES = ("test_train.py", "test_multiworker.py", "test_export.py", "test_notebook.py", "test_evaluate.py",
                  "test_train_options.py", "test_cli_models.py", "test_interruption.py", "test_webpage.py",
                  "test_gui.py", "test_detect_cli.py", "test_notebook_code.py", "test_demo.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the heaviest files first; the rest keep their order, and tests keep theirs within a file."""
    rank = {name: i for i, name in enumerate(HEAVIEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def fast_tests_train_nothing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked slow that calls `Model.fit` fails, naming the marker: the fast set trains no model.

    It is set up before the test's own function-scoped fixtures, so those are checked too; a module- or
    session-scoped fixture is built earlier, and is not.
    """
    keras = sys.modules.get("keras")
    if keras is None or request.node.get_closest_marker("slow"):
        return

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("this test trains a model (Model.fit): mark it @pytest.mark.slow (tests/README.md)")

    monkeypatch.setattr(keras.Model, "fit", refuse)


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


def box_color_share(frame: np.ndarray, box_px: tuple[int, int, int, int]) -> float:
    """Share of the pixels along the left, right and bottom edges of a box that are the drawn box's blue
    (BGR (255, 0, 0), after JPEG or video coding)."""
    x1, y1, x2, y2 = box_px
    height, width = frame.shape[:2]
    edges = [frame[y1:y2, min(x1, width - 1)], frame[y1:y2, min(x2, width - 1)], frame[min(y2, height - 1), x1:x2]]
    pixels = np.concatenate(edges).astype(int)
    return float(np.mean(np.all(np.abs(pixels - np.array((255, 0, 0))) < 70, axis=1)))


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


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@pytest.fixture(scope="session")
def constant_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real detector with zero last-layer kernels and set biases: the same output for any image (no training).

    MobileNetV2 keeps the tutorial's dense box head, whose bias alone sets the box (the small CNN's grid
    head averages its cells' proposals, so a bias alone can only centre the box).
    """
    from facetracker.model import build_model

    model = build_model("mobilenetv2", SMALL_MODEL[1], "none", SMALL_MODEL[3])
    for name, values in (("score", [CONSTANT_SCORE]), ("box", CONSTANT_BOX)):
        kernel, _ = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([np.zeros_like(kernel), np.array([logit(v) for v in values], np.float32)])
    path = tmp_path_factory.mktemp("constant") / "constant.keras"
    model.save(path)
    return path
