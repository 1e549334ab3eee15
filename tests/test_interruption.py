"""kill -9 in the middle of `facetracker augment` and `facetracker train`, then run again.

Each test runs the real command in a subprocess, kills it with SIGKILL once some output exists, and
checks that running the same command again finishes the job as if nothing had happened. `augment`
is killed while its process pool works, the parent alone: its workers must end by themselves.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import hash_tree

from facetracker.augment import augment_dataset
from facetracker.config import Paths
from facetracker.sample_data import make_sample_data
from facetracker.split import split_dataset

pytestmark = pytest.mark.slow

FRAMES = 40
AUG_PER_IMAGE = 40  # 28 train frames x 40: long enough to be killed while the pool works
TRAIN_PER_IMAGE = 3
TRAIN_EPOCHS = 3
TIMEOUT_S = 120


def facetracker(root: Path, *args: str) -> list[str]:
    """The command line of the real CLI on project `root`."""
    return [sys.executable, "-m", "facetracker.cli", "--root", str(root), *args]


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run one step to the end; fail the test with its output if it fails."""
    done = subprocess.run(facetracker(root, *args), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    return done


def kill_when(root: Path, args: tuple[str, ...], ready: Callable[[], bool]) -> None:
    """Start a step, wait until `ready()`, then SIGKILL it and all its processes."""
    process = subprocess.Popen(
        facetracker(root, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready():
            assert process.poll() is None, f"{args} finished (exit {process.returncode}) before it could be killed"
            assert time.monotonic() < deadline, f"{args}: nothing to interrupt after {TIMEOUT_S} s"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"{args} was not killed (exit {process.returncode})"


def split_project(root: Path) -> Paths:
    """A sample session of FRAMES frames, split."""
    paths = Paths(root)
    make_sample_data(paths, count=FRAMES, seed=0)
    split_dataset(paths)
    return paths


def count_files(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.rglob(pattern)) if folder.is_dir() else 0


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def is_running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def pool_workers(pid: int) -> list[int]:
    """The worker processes of the augment pool that process `pid` started."""
    workers = []
    for child in child_pids(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue
    return workers


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads worker processes from Linux /proc")
def test_augment_pool_killed_then_rerun_matches_an_uninterrupted_run(tmp_path):
    paths = split_project(tmp_path / "killed")
    clean = tmp_path / "clean"
    shutil.copytree(paths.data, clean / "data")
    args = ("augment", "--per-image", str(AUG_PER_IMAGE), "--seed", "3", "--splits", "train", "--workers", "2")

    # SIGKILL to the parent alone, once its worker process has started and samples are being written.
    process = subprocess.Popen(
        facetracker(paths.root, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (workers := pool_workers(process.pid)) or count_files(paths.aug_data, "*.json") < 100:
            assert process.poll() is None, f"augment finished (exit {process.returncode}) before it could be killed"
            assert time.monotonic() < deadline, f"augment: nothing to interrupt after {TIMEOUT_S} s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while any(map(is_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        lingering = [pid for pid in workers if is_running(pid)]
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group, so nothing outlives the test
    assert not lingering, f"pool worker(s) {lingering} kept running after their parent was killed"
    written_before_rerun = count_files(paths.aug_data, "*.json")
    expected = len(list(paths.split_images("train").iterdir())) * AUG_PER_IMAGE
    assert written_before_rerun < expected, "the kill came too late to test anything"

    rerun = run(paths.root, *args)
    run(clean, *args)

    assert " 0 failed" in rerun.stdout and "processes: 2 (--workers)" in rerun.stdout
    assert count_files(paths.aug_data, "*.tmp") == 0
    assert count_files(paths.aug_data, ".*") == 0  # no hidden temp files either
    images = {p.stem for p in paths.aug_images("train").iterdir()}
    labels = {p.stem for p in paths.aug_labels("train").iterdir()}
    assert images == labels, f"unpaired {sorted(images ^ labels)[:5]}"
    assert len(images) == expected
    assert sorted(p.name for p in paths.aug_data.iterdir()) == ["train"]
    assert hash_tree(paths.aug_data) == hash_tree(clean / "aug_data")


RUN = ("logs", "train", "exp")  # the first run's folder


def history_rows(paths: Paths) -> list[dict]:
    from facetracker.errors import FaceTrackerError
    from facetracker.train import read_history_rows

    try:
        return read_history_rows(paths.root.joinpath(*RUN, "history.csv"))
    except FaceTrackerError:  # a row being written
        return []


def test_train_killed_after_first_epoch_resumes(tmp_path):
    paths = split_project(tmp_path / "project")
    augment_dataset(paths, splits=("train", "val"), per_image=TRAIN_PER_IMAGE, workers=1, progress=False)
    args = ("train", "--preset", "quick", "--epochs", str(TRAIN_EPOCHS))
    backup = paths.root.joinpath(*RUN, "backup", "training_metadata.json")

    # Killed once epoch 1's backup (and its history row) exist, while epoch 2 runs.
    kill_when(paths.root, args, lambda: backup.is_file() and len(history_rows(paths)) >= 1)
    first = history_rows(paths)
    assert len(first) < TRAIN_EPOCHS, "the kill came too late to test anything"

    rerun = run(paths.root, *args)
    assert "Epoch 1/" not in rerun.stdout, "the second run started again from epoch 1 instead of resuming"
    assert f"Epoch {TRAIN_EPOCHS}/{TRAIN_EPOCHS}" in rerun.stdout
    rows = history_rows(paths)
    assert [row["epoch"] for row in rows] == list(range(TRAIN_EPOCHS))
    assert rows[0] == first[0], "epoch 1 was trained again"
    assert f"for {TRAIN_EPOCHS} epoch(s)" in rerun.stdout

    import keras

    model = keras.saving.load_model(paths.model, compile=False, safe_mode=True)
    assert model.input_shape == (None, 120, 120, 3)
    assert not backup.parent.exists(), "a finished run leaves no backup behind"
    assert not paths.root.joinpath("logs", "train", "exp2").exists(), "the rerun resumed in a new folder"
