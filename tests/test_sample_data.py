"""sample_data: a synthetic webcam session with true face boxes, deterministic and never overwriting."""

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import save_with_labelme

from facetracker.annotations import load_samples
from facetracker.config import FRAME_HEIGHT, FRAME_WIDTH, Paths
from facetracker.errors import FaceTrackerError
from facetracker.prelabel import best_face, haar_detector, haar_faces
from facetracker.sample_data import (
    FACE_BOX,
    load_portrait,
    make_sample_data,
    random_background,
    render,
    write_sample_video,
)


def iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_session_has_frames_labels_and_negatives(sample_paths: Paths) -> None:
    images = sorted(sample_paths.images.glob("*.jpg"))
    labels = sorted(sample_paths.labels.glob("*.json"))
    assert (len(images), len(labels)) == (20, 17)
    for image in images:
        uuid.UUID(image.stem)  # names are uuids, as in the tutorial
        assert cv2.imread(str(image)).shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
    samples = load_samples(sample_paths.images, sample_paths.labels)
    assert sum(s.box is None for s in samples) == 3
    assert all(not s.warnings for s in samples)
    for s in samples:
        if s.box is not None:
            x1, y1, x2, y2 = s.box
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_labels_are_labelme_6_files(sample_paths: Paths) -> None:
    from labelme import LabelFile  # labelme's own reader opens the image and checks its size

    label = sorted(sample_paths.labels.glob("*.json"))[0]
    data = json.loads(label.read_text())
    assert set(data) == {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
    assert data["version"] == "6.3.1" and data["imageData"] is None
    assert LabelFile(str(label)).shapes[0]["label"] == "face"


def test_corners_come_in_several_click_orders(sample_paths: Paths) -> None:
    orders = set()
    for label in sample_paths.labels.glob("*.json"):
        (ax, ay), (bx, by) = json.loads(label.read_text())["shapes"][0]["points"]
        orders.add((ax < bx, ay < by))
    assert len(orders) >= 2


def test_boxes_agree_with_an_independent_face_detector(sample_paths: Paths) -> None:
    detector = haar_detector()
    samples = [s for s in load_samples(sample_paths.images, sample_paths.labels) if s.box is not None][:8]
    scores = []
    for s in samples:
        found = best_face(haar_faces(detector, cv2.imread(str(s.image))))
        found = found and found[0]
        if found is not None:
            scores.append(iou(s.box, (found[0] / 640, found[1] / 480, found[2] / 640, found[3] / 480)))
    assert sum(score > 0.6 for score in scores) >= 5


def test_render_box_is_the_face_box() -> None:
    source = load_portrait()
    background = np.zeros((FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    face_w, face_h = FACE_BOX[2] - FACE_BOX[0], FACE_BOX[3] - FACE_BOX[1]
    _, box, visible = render(background, source, (320, 240, face_w, 0, 1, 0))
    expected = (320 - face_w / 2, 240 - face_h / 2, 320 + face_w / 2, 240 + face_h / 2)
    assert np.allclose(box, expected, atol=1.5) and visible == pytest.approx(1, abs=0.02)
    _, box, visible = render(background, source, (0, 240, face_w / 2, 10, 1, 0))  # cut by the left edge
    assert box[0] == 0 and box[2] == pytest.approx(face_w / 4, abs=3) and 0.4 < visible < 0.6


def test_same_seed_same_bytes_other_seed_other_files(tmp_path: Path, file_hashes) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_sample_data(Paths(tmp_path / name), count=4, seed=seed)
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    assert not set(file_hashes(tmp_path / "a")) & set(file_hashes(tmp_path / "c"))


def test_rerun_adds_nothing_and_never_overwrites(sample_paths: Paths, file_hashes) -> None:
    victim = sorted(sample_paths.images.glob("*.jpg"))[0]
    victim.write_bytes(b"edited by the user")
    before = file_hashes(sample_paths.data)
    summary = make_sample_data(sample_paths, count=20, seed=0)
    assert (summary.images_written, summary.labels_written, summary.skipped) == (0, 0, 37)
    assert file_hashes(sample_paths.data) == before


def test_more_frames_extend_the_session(sample_paths: Paths, file_hashes) -> None:
    before = file_hashes(sample_paths.data)
    summary = make_sample_data(sample_paths, count=24, seed=0)
    after = file_hashes(sample_paths.data)
    assert summary.images_written == 4 and summary.skipped == 37
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 4 + summary.labels_written
    assert "4 images written" in summary.format() == str(summary)


def test_negatives_only_and_bad_arguments(tmp_path: Path) -> None:
    summary = make_sample_data(Paths(tmp_path), count=3, negatives=1.0)
    assert (summary.positives, summary.negatives, summary.labels_written) == (0, 3, 0)
    assert not list(Paths(tmp_path).labels.iterdir())
    with pytest.raises(FaceTrackerError, match="negatives"):
        make_sample_data(Paths(tmp_path), negatives=1.5)


def test_backgrounds_vary() -> None:
    a = random_background(np.random.default_rng(1))
    b = random_background(np.random.default_rng(2))
    assert a.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3) and np.abs(a.astype(int) - b).mean() > 10


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_round_trips_through_videocapture(tmp_path: Path, suffix: str) -> None:
    path = write_sample_video(tmp_path / f"cam{suffix}", frames=12, fps=15, seed=0)
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 12 and frames[0].shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
    assert np.abs(frames[0].astype(int) - frames[6]).mean() > 1  # the face moves


def test_labels_are_byte_for_byte_what_labelme_writes(tmp_path: Path) -> None:
    """Re-saving each label with labelme's own writer (same points, same order) changes no byte."""
    paths = Paths(tmp_path)
    make_sample_data(paths, count=4, negatives=0.25, seed=3)
    labels = sorted(paths.labels.glob("*.json"))
    assert len(labels) == 3
    for label in labels:
        ours = label.read_bytes()
        points = json.loads(ours)["shapes"][0]["points"]
        resaved = paths.data / "resaved"  # beside data/labels: the same relative imagePath
        resaved.mkdir(exist_ok=True)
        theirs = save_with_labelme(resaved / label.name, paths.images / f"{label.stem}.jpg", points)
        assert theirs.read_bytes() == ours, label.name
