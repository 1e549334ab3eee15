"""Shared fixtures: a small synthetic dataset on disk, a stand-in camera video, file hashing."""

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from facetracker.config import Paths
from facetracker.sample_data import make_sample_data, write_sample_video

SAMPLE_COUNT = 20  # frames in `sample_root`: 17 with a face, 3 without (seed 0)


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
    """A dataset made once per test session; copy it (see `sample_root`) before changing anything."""
    root = tmp_path_factory.mktemp("sample-template")
    make_sample_data(Paths(root), count=SAMPLE_COUNT, seed=0)
    return root


@pytest.fixture
def sample_root(sample_template: Path, tmp_path: Path) -> Path:
    """A fresh project root of this test: data/images (20 JPEG frames) and data/labels (17 labelme files)."""
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
