"""The command line's wiring, through `facetracker.cli.main` as the entry point calls it: each flag reaches its
step and its result is what the user gets (the steps themselves are tested in their own files)."""

import json
import os
import re
import signal
import socket
import sys
import threading
import urllib.request
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from conftest import CONSTANT_FRAME_BOX

from facetracker.cli import main
from facetracker.config import Paths

PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def session(root: Path) -> Paths:
    """data/images: the portrait pasted at (160, 40) into a grey 640x480 frame, an empty frame, and a frame
    labelled by hand already."""
    paths = Paths(root)
    paths.images.mkdir(parents=True)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[40:392, 160:460] = cv2.resize(cv2.imread(str(PORTRAIT)), (300, 352))
    cv2.imwrite(str(paths.images / "face.jpg"), frame)
    cv2.imwrite(str(paths.images / "empty.jpg"), np.full((480, 640, 3), 90, np.uint8))
    cv2.imwrite(str(paths.images / "done.jpg"), frame)
    paths.labels.mkdir(parents=True)
    (paths.labels / "done.json").write_text('{"hand": "made"}')
    return paths


def points(label: Path) -> list[list[float]]:
    data = json.loads(label.read_text())
    assert [shape["label"] for shape in data["shapes"]] == ["face"]
    return data["shapes"][0]["points"]


def test_annotate_prelabel_haar_writes_the_cascades_box(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Pinned: the cascade finds the portrait at (242, 96, 386, 240) px after JPEG; the empty frame gets no file
    and the hand-made label is left alone."""
    paths = session(tmp_path)
    assert main(["--root", str(tmp_path), "annotate", "--prelabel", "haar", "--no-gui"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 1 Haar proposals to {paths.labels}"
    assert sorted(p.name for p in paths.labels.iterdir()) == ["done.json", "face.json"]
    assert points(paths.labels / "face.json") == [[242.0, 96.0], [386.0, 240.0]]
    assert (paths.labels / "done.json").read_text() == '{"hand": "made"}'


@pytest.mark.slow  # over 3 s on 2 cores
@pytest.mark.wiring  # mutmut runs it: the only test of the --prelabel model branch in this process
def test_annotate_prelabel_model_writes_the_models_box_above_the_threshold(
        tmp_path: Path, constant_model: Path, capsys: pytest.CaptureFixture) -> None:
    """The constant model scores 0.8 with the box (235, 100, 385, 222) px on every 640x480 frame: nothing
    above --threshold 0.81, both unlabelled frames above the default 0.5, labelled with --class."""
    paths = session(tmp_path)
    argv = ["--root", str(tmp_path), "annotate", "--prelabel", "model", "--model", str(constant_model), "--no-gui"]
    assert main([*argv, "--threshold", "0.81"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 0 model proposals to {paths.labels}"
    assert main([*argv, "--class", "cat"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 2 model proposals to {paths.labels}"
    x1, y1, x2, y2 = CONSTANT_FRAME_BOX
    for name in ("empty.json", "face.json"):
        shape = json.loads((paths.labels / name).read_text())["shapes"][0]
        assert (shape["label"], shape["points"]) == ("cat", [[x1, y1], [x2, y2]])
    assert (paths.labels / "done.json").read_text() == '{"hand": "made"}'


def test_annotate_opens_labelme_for_the_class_after_the_proposals(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --no-gui, labelme starts (a script noting its arguments stands in for the Python that runs it)
    with the class given, after the Haar proposals were written."""
    paths = session(tmp_path)
    recorder = tmp_path / "labelme-args.sh"
    recorder.write_text(f'#!/bin/sh\nls {paths.labels} > {tmp_path / "labels.txt"}\n'
                        f'echo "$@" > {tmp_path / "args.txt"}\n')
    recorder.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(recorder))
    monkeypatch.setenv("DISPLAY", ":987")
    assert main(["--root", str(tmp_path), "annotate", "--prelabel", "haar", "--class", "cat"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 1 Haar proposals to {paths.labels}"
    assert " --labels cat " in (tmp_path / "args.txt").read_text()
    assert (tmp_path / "labels.txt").read_text().split() == ["done.json", "face.json"]


def run(capsys: pytest.CaptureFixture, root: Path, *argv: str) -> tuple[int, str]:
    """`facetracker --root ROOT ARGV...` in this process: its exit code and what it printed."""
    status = main(["--root", str(root), *argv])
    return status, capsys.readouterr().out


def label_names(labels: Path) -> set[str]:
    return {shape["label"] for label in labels.glob("*.json") for shape in json.loads(label.read_text())["shapes"]}


def make_sample_frames(root: Path, count: int, class_name: str = "face") -> Paths:
    from facetracker.sample_data import make_sample_data

    paths = Paths(root)
    make_sample_data(paths, count=count, negatives=0.0, seed=0, class_name=class_name)
    return paths


def test_sample_data_flags_reach_the_session(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """4 frames, a quarter without the object, labelled 'cat'; --seed picks the frames (another seed, other bytes)."""
    status, out = run(capsys, tmp_path / "a", "sample-data", "--count", "4", "--negatives", "0.25", "--seed", "3",
                      "--class", "cat")
    paths = Paths(tmp_path / "a")
    assert status == 0 and out.splitlines()[-1] == "This session: 3 frames with a face, 1 without."
    assert out.startswith(f"4 images written to {paths.images}, 3 labels to {paths.labels}")
    assert label_names(paths.labels) == {"cat"}
    run(capsys, tmp_path / "b", "sample-data", "--count", "4", "--negatives", "0.25", "--seed", "4")
    first = {p.name: p.read_bytes() for p in paths.images.iterdir()}
    other = {p.name: p.read_bytes() for p in Paths(tmp_path / "b").images.iterdir()}
    assert first != other


def test_collect_flags_reach_the_capture(tmp_path: Path, sample_video: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With a display named, --no-preview must still open no window (this one could not open: no X server)."""
    monkeypatch.setenv("DISPLAY", ":987")
    status, out = run(capsys, tmp_path, "collect", "--source", str(sample_video), "--count", "3", "--interval", "0",
                      "--no-preview")
    paths = Paths(tmp_path)
    assert status == 0 and out.strip() == f"saved 3 frames to {paths.images}"
    assert len(list(paths.images.glob("*.jpg"))) == 3


def test_annotate_haar_and_check_use_the_class_given(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = session(tmp_path)
    (paths.labels / "done.json").unlink()
    assert run(capsys, tmp_path, "annotate", "--prelabel", "haar", "--no-gui", "--class", "cat")[0] == 0
    assert label_names(paths.labels) == {"cat"}
    status, out = run(capsys, tmp_path, "check", "--class", "cat")
    assert status == 0 and out.splitlines()[:2] == [
        f"{paths.images}: 3 images, 2 with a box, 1 without (labels from {paths.labels}).", "0 errors, 0 warnings."]
    status, out = run(capsys, tmp_path, "check")  # labels of another class: ignored, with a warning each
    assert out.splitlines()[:2] == [
        f"{paths.images}: 3 images, 0 with a box, 3 without (labels from {paths.labels}).", "0 errors, 2 warnings."]


def test_split_seed_reaches_the_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """12 frames at 70/15/15: which frames land in test depends on --seed."""
    chosen = []
    for seed in ("1", "2"):
        root = tmp_path / seed
        make_sample_frames(root, 12)
        status, out = run(capsys, root, "split", "--seed", seed)
        assert status == 0 and out.strip() == "train: 8  test: 2  val: 2"
        chosen.append(sorted(p.name for p in Paths(root).split_images("test").iterdir()))
    assert chosen[0] != chosen[1]


def test_augment_flags_reach_the_crops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--class, --seed, --fresh, --prune and --workers, each seen in the crops or in the lines printed."""
    crops = {}
    for seed in ("5", "6"):
        paths = make_sample_frames(tmp_path / seed, 4, class_name="cat")
        run(capsys, paths.root, "split", "--ratios", "1", "0", "0")
        status, out = run(capsys, paths.root, "augment", "--splits", "train", "--per-image", "2", "--workers", "1",
                          "--seed", seed, "--class", "cat")
        assert status == 0 and out.splitlines() == [
            "train: 8 written (0 replacing outdated crops), 0 up to date, 0 failed",
            "processes: 1 (--workers), 1 of them wrote samples"]
        crops[seed] = {p.name: p.read_text() for p in paths.aug_labels("train").iterdir()}
        assert all(json.loads(text)["class"] == 1 for text in crops[seed].values())  # every cat box kept
    assert crops["5"].keys() == crops["6"].keys() and crops["5"] != crops["6"]

    status, out = run(capsys, paths.root, "augment", "--splits", "train", "--per-image", "2", "--seed", "6",
                      "--class", "cat", "--fresh")
    lines = out.splitlines()
    assert lines[0] == "train: 8 written (0 replacing outdated crops), 0 up to date, 0 failed"
    assert re.fullmatch(r"processes: \d+ \(automatic\), [12] of them wrote samples", lines[1]), lines[1]

    gone = next(paths.split_images("train").iterdir())
    gone.unlink()
    (paths.split_labels("train") / f"{gone.stem}.json").unlink()
    status, out = run(capsys, paths.root, "augment", "--splits", "train", "--per-image", "2", "--workers", "1",
                      "--seed", "6", "--class", "cat", "--prune")
    assert status == 0
    assert out.splitlines()[0] == "train: 0 written (0 replacing outdated crops), 6 up to date, 0 failed"
    left = list(paths.aug_images("train").iterdir())
    assert len(left) == 6 and not [crop for crop in left if crop.name.startswith(gone.stem)]


def test_serve_flags_reach_the_server(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--host and --port: the page answers there; Ctrl+C (SIGINT to this process) stops it with status 0."""
    folder = tmp_path / "page"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>page</title>")
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    answers = []

    def ask_then_stop() -> None:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.2:{port}/", timeout=1) as response:
                    answers.append(response.read())
                break
            except OSError:
                threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ask_then_stop, daemon=True).start()
    status, out = run(capsys, tmp_path, "serve", str(folder), "--host", "127.0.0.2", "--port", str(port))
    assert status == 0 and answers == [b"<!doctype html><title>page</title>"]
    assert out.splitlines() == [f"serving {folder} at http://127.0.0.2:{port}/ (Ctrl+C stops)", "stopped"]


def test_an_empty_class_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--root", str(tmp_path), "check", "--class", ""]) == 2
    assert capsys.readouterr().err == ("facetracker check: error: --class is empty; give the labelme label of the "
                                       "object, e.g. --class face.\n")


def test_main_lets_ctrl_c_stop_a_step_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A parent that ignores SIGINT (a Jupyter kernel, nohup) passes that on; main restores Python's handler."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["--root", str(tmp_path), "check"]) == 2  # no images yet: any quick step will do
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_a_step_says_how_to_finish_and_exits_130(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """SIGINT to this process once sample-data has written its first frame (of 3,000): one line, status 130."""
    images = Paths(tmp_path).images

    def interrupt_once_started() -> None:
        for _ in range(600):
            if images.is_dir() and any(images.iterdir()):
                break
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    assert main(["--root", str(tmp_path), "sample-data", "--count", "3000"]) == 130
    assert capsys.readouterr().err.strip() == "facetracker sample-data: interrupted; run it again to finish"
    assert 0 < len(list(images.iterdir())) < 3000


def test_evaluate_frames_without_images_says_what_it_expects(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused before any model loads: the folder given, and what such a folder holds."""
    (tmp_path / "elsewhere" / "labels").mkdir(parents=True)
    assert main(["--root", str(tmp_path), "evaluate", "--frames", str(tmp_path / "elsewhere")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"facetracker evaluate: error: --frames {tmp_path / 'elsewhere'}: expected a folder holding images/ and "
        "labels/ (as data/ does), e.g. another session's data/")


def test_train_workers_flags_reach_the_cluster_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--workers, --worker-index and --join-timeout reach `train_on_workers`: each mistake is refused in one
    line before any training (the two-process runs are test_multiworker's, in fresh interpreters)."""
    workers = "127.0.0.1:1,127.0.0.1:2"
    assert main(["--root", str(tmp_path), "train", "--workers", workers, "--worker-index", "2"]) == 2
    assert capsys.readouterr().err == ("facetracker train: error: --worker-index 2: give this machine's place in "
                                       "--workers, 0 to 1 (0 is the chief).\n")
    assert main(["--root", str(tmp_path), "train", "--workers", workers, "--worker-index", "1",
                 "--join-timeout", "0"]) == 2
    assert capsys.readouterr().err == ("facetracker train: error: --join-timeout 0.0: give the seconds to wait for "
                                       "the other workers.\n")
