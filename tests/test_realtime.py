"""Tests for facetracker.realtime: frame geometry, the Detector and headless `detect` on real video files."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_model import tiny_model

from facetracker.capture import want_preview
from facetracker.errors import FaceTrackerError
from facetracker.realtime import (
    Detector,
    box_to_frame,
    detect,
    frame_box_to_input,
    frame_geometry,
    frame_to_input,
    read_frame,
)

SIZES = [(640, 480), (480, 640), (1280, 720), (300, 300), (101, 77)]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model().save(path)
    return path


def write_video(path: Path, frames: int = 20, size: tuple[int, int] = (320, 240), fps: float = 15.0) -> Path:
    """A short synthetic video: a bright square moving over a dark, noisy background."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        cv2.rectangle(frame, (10 + 5 * i, 40), (90 + 5 * i, 140), (200, 180, 160), -1)
        writer.write(frame)
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Frames actually decodable from a video file, and its (width, height)."""
    capture = cv2.VideoCapture(str(path))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, size


# ----------------------------------------------------------------------------- geometry


def test_geometry_of_a_webcam_frame():
    crop, box = frame_geometry(640, 480, "crop"), frame_geometry(640, 480, "letterbox")
    assert (crop.x0, crop.y0, crop.side) == (80, 0, 480)
    assert (box.x0, box.y0, box.side) == (0, -80, 640)
    assert box_to_frame((0.0, 0.0, 1.0, 1.0), crop) == (80, 0, 560, 480)
    assert box_to_frame((0.25, 0.5, 0.75, 1.0), crop) == (200, 240, 440, 480)


@pytest.mark.parametrize("mode", ["crop", "letterbox"])
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_box_round_trip(width, height, mode):
    geo = frame_geometry(width, height, mode)
    rng = np.random.default_rng(width * height)
    for _ in range(20):
        # A box inside the frame, in frame pixels, then into the input square and back.
        x1, x2 = sorted(rng.uniform(0, width, 2))
        y1, y2 = sorted(rng.uniform(0, height, 2))
        if mode == "crop":  # keep it inside the centre square
            x1, x2 = (geo.x0 + v * geo.side / width for v in (x1, x2))
            y1, y2 = (geo.y0 + v * geo.side / height for v in (y1, y2))
        square = frame_box_to_input((x1, y1, x2, y2), geo)
        assert all(0.0 <= v <= 1.0 for v in square)
        np.testing.assert_allclose(box_to_frame(square, geo, rounded=False), (x1, y1, x2, y2), atol=1e-9)
        assert np.max(np.abs(np.subtract(box_to_frame(square, geo), (x1, y1, x2, y2)))) <= 0.5 + 1e-9


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_box_to_frame_clips_and_orders(width, height):
    for mode in ("crop", "letterbox"):
        x1, y1, x2, y2 = box_to_frame((1.2, 1.0, -0.3, 0.0), frame_geometry(width, height, mode))
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def test_frame_to_input_crops_the_centre_and_converts_to_rgb():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :80] = (0, 0, 255)  # red left margin (BGR): cut away by the crop
    frame[0:120, 80:200] = (255, 0, 0)  # blue square in the crop's top-left corner
    x, geo = frame_to_input(frame, 120, "crop")
    assert x.shape == (120, 120, 3) and x.dtype == np.float32 and (geo.x0, geo.side) == (80, 480)
    np.testing.assert_allclose(x[5, 5], (0.0, 0.0, 1.0))  # RGB blue
    assert x[:, :, 0].max() == 0.0  # no red anywhere
    np.testing.assert_allclose(x[100, 100], (0.0, 0.0, 0.0))


def test_frame_to_input_letterbox_pads_with_black():
    frame = np.full((480, 640, 3), 255, np.uint8)
    x, geo = frame_to_input(frame, 120, "letterbox")
    assert (geo.x0, geo.y0, geo.side) == (0, -80, 640)
    np.testing.assert_allclose(x[5, 60], 0.0)  # padding above the frame
    np.testing.assert_allclose(x[60, 60], 1.0)  # the frame itself


def test_frame_to_input_rejects_gray_and_unknown_mode():
    with pytest.raises(ValueError):
        frame_to_input(np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError):
        frame_to_input(np.zeros((48, 64, 3), np.uint8), mode="stretch")


# ----------------------------------------------------------------------------- Detector


def test_detector_matches_a_direct_model_call():
    model = tiny_model()
    detector = Detector.from_keras(model)
    frame = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    detection = detector(frame)
    x, geo = frame_to_input(frame)
    score, box = (np.asarray(v) for v in model(x[None], training=False))
    assert detection.score == pytest.approx(float(score[0, 0]), abs=1e-6)
    np.testing.assert_allclose(detection.box, box[0], atol=1e-6)
    assert detection.box_px == box_to_frame(tuple(box[0]), geo)


def test_detector_load_errors(tmp_path):
    with pytest.raises(FaceTrackerError, match="nothere.keras"):
        Detector.load(tmp_path / "nothere.keras")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(FaceTrackerError, match="unknown kind"):
        Detector.load(tmp_path / "model.h5")
    for name in ("broken.keras", "broken.tflite"):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(FaceTrackerError, match=f"{name} cannot be loaded"):
            Detector.load(tmp_path / name)


# ----------------------------------------------------------------------------- detect


def test_detect_writes_every_frame_of_a_video(tmp_path, model_file):
    source = write_video(tmp_path / "in.avi", frames=20)
    output = tmp_path / "out" / "annotated.avi"
    summary = detect(source=source, model=model_file, threshold=0.0, output=output, display=False)
    assert summary.frames == 20 and summary.mean_ms > 0 and summary.fps > 0
    assert count_frames(output) == (20, (320, 240))
    first_in, first_out = cv2.VideoCapture(str(source)).read()[1], cv2.VideoCapture(str(output)).read()[1]
    assert np.abs(first_in.astype(int) - first_out.astype(int)).mean() > 1.0  # the box and text were drawn
    assert "20 frames" in summary.format()


def test_detect_mp4_stops_at_max_frames(tmp_path, model_file):
    source = write_video(tmp_path / "in.mp4", frames=12)
    output = tmp_path / "out.mp4"
    summary = detect(source=str(source), model=model_file, output=output, display=False, max_frames=5)
    assert summary.frames == 5
    assert count_frames(output)[0] == 5


def test_detect_missing_or_bad_source_is_a_clear_error(tmp_path, model_file):
    with pytest.raises(FaceTrackerError, match="nothere.mp4"):
        detect(source=tmp_path / "nothere.mp4", model=model_file, display=False)
    (tmp_path / "notvideo.avi").write_text("not a video")
    with pytest.raises(FaceTrackerError, match="notvideo.avi"):
        detect(source=tmp_path / "notvideo.avi", model=model_file, display=False)
    with pytest.raises(FaceTrackerError, match="camera|source"):
        detect(source="97", model=model_file, display=False)


def test_detect_rejects_unknown_output_type(tmp_path, model_file):
    source = write_video(tmp_path / "in.avi", frames=3)
    with pytest.raises(FaceTrackerError, match="out.gif"):
        detect(source=source, model=model_file, output=tmp_path / "out.gif", display=False)


def test_no_display_without_a_screen(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert want_preview(None) is False
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert want_preview(None) is False


class StubCapture:
    """A capture that has run out of frames."""

    def read(self):
        return False, None


def test_camera_that_stops_is_an_error_but_a_file_ending_is_not():
    with pytest.raises(FaceTrackerError, match="camera 0 stopped delivering frames after 7"):
        read_frame(StubCapture(), 0, 7)
    assert read_frame(StubCapture(), "clip.mp4", 7) is None
    with pytest.raises(FaceTrackerError, match="gave no frame"):
        read_frame(StubCapture(), "clip.mp4", 0)
