"""Tests for facetracker.realtime: the Detector and `detect` on real video files, with the real small model."""

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from trained_model import trained_model_file

from facetracker.capture import want_preview
from facetracker.errors import FaceTrackerError
from facetracker.inference import Detector, box_to_frame, frame_to_input
from facetracker.model import build_model
from facetracker.realtime import BOX_COLOR, FrameRate, detect, read_frame


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, sample_template) -> Path:
    return trained_model_file(tmp_path_factory, sample_template, tmp_path_factory.mktemp("model"))


def read_all(path: Path) -> list[np.ndarray]:
    """Every frame a real cv2.VideoCapture decodes from a video file, read to its end."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def box_color_share(frame: np.ndarray, box_px: tuple[int, int, int, int]) -> float:
    """Share of the pixels along the left, right and bottom edges of a box that are BOX_COLOR (after JPEG)."""
    x1, y1, x2, y2 = box_px
    height, width = frame.shape[:2]
    edges = [frame[y1:y2, min(x1, width - 1)], frame[y1:y2, min(x2, width - 1)], frame[min(y2, height - 1), x1:x2]]
    pixels = np.concatenate(edges).astype(int)
    return float(np.mean(np.all(np.abs(pixels - np.array(BOX_COLOR)) < 70, axis=1)))


# ----------------------------------------------------------------------------- input and Detector


def test_frame_to_input_crops_the_centre_and_converts_to_rgb():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :80] = (0, 0, 255)  # red left margin (BGR): cut away by the crop
    frame[0:120, 80:200] = (255, 0, 0)  # blue square in the crop's top-left corner
    x, geo = frame_to_input(frame, 120)
    assert x.shape == (120, 120, 3) and x.dtype == np.float32 and (geo.x0, geo.side) == (80, 480)
    np.testing.assert_allclose(x[5, 5], (0.0, 0.0, 1.0))  # RGB blue
    assert x[:, :, 0].max() == 0.0  # no red anywhere
    np.testing.assert_allclose(x[100, 100], (0.0, 0.0, 0.0))


def test_frame_to_input_rejects_gray():
    with pytest.raises(ValueError):
        frame_to_input(np.zeros((48, 64), np.uint8))


def test_detector_matches_a_direct_model_call(model_file, sample_video):
    detector = Detector.load(model_file)
    model = keras.saving.load_model(model_file)
    frame = read_all(sample_video)[0]
    detection = detector(frame)
    x, geo = frame_to_input(frame)
    score, box = (np.asarray(v) for v in model(x[None], training=False))
    assert detection.score == pytest.approx(float(score[0, 0]), abs=1e-5)
    np.testing.assert_allclose(detection.box, box[0], atol=1e-5)
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


def test_frame_rate_is_the_current_rate_not_the_average_since_start():
    rate = FrameRate(start=0.0)
    now = 0.0
    for _ in range(50):  # 10 frames/s for 5 s ...
        now += 0.1
        fps = rate.tick(now)
    assert fps == pytest.approx(10.0)
    for _ in range(60):  # ... then 50 frames/s for 1.2 s: the average since start would be about 18
        now += 0.02
        fps = rate.tick(now)
    assert fps == pytest.approx(50.0, rel=0.1)


# ----------------------------------------------------------------------------- detect on real videos


def test_detect_annotates_every_frame_of_a_video(tmp_path, model_file, sample_video):
    output = tmp_path / "out" / "annotated.avi"
    summary = detect(source=sample_video, model=model_file, threshold=0.0, output=output, display=False)
    source_frames, written = read_all(sample_video), read_all(output)
    assert summary.frames == len(source_frames) == len(written) == 30
    assert written[0].shape == source_frames[0].shape
    # Model time is part of the loop's time, and the overall rate is frames over that time.
    assert 0 < summary.mean_ms * summary.frames / 1000 <= summary.seconds
    assert summary.fps == pytest.approx(summary.frames / summary.seconds)
    # The box is drawn where the detector put it: BOX_COLOR along its edges, which the input lacks there.
    detector = Detector.load(model_file)
    for index in (0, 15, 29):
        box_px = detector(source_frames[index]).box_px
        assert box_color_share(written[index], box_px) > 0.8
        assert box_color_share(source_frames[index], box_px) < 0.2
    assert "30 frames" in summary.format()


def test_detect_mp4_stops_at_max_frames(tmp_path, model_file, sample_video):
    output = tmp_path / "out.mp4"
    summary = detect(source=str(sample_video), model=model_file, output=output, display=False, max_frames=5)
    assert summary.frames == 5 and len(read_all(output)) == 5


def test_detect_missing_or_bad_source_is_a_clear_error(tmp_path, model_file):
    with pytest.raises(FaceTrackerError, match="nothere.mp4"):
        detect(source=tmp_path / "nothere.mp4", model=model_file, display=False)
    (tmp_path / "notvideo.avi").write_text("not a video")
    with pytest.raises(FaceTrackerError, match="notvideo.avi"):
        detect(source=tmp_path / "notvideo.avi", model=model_file, display=False)
    with pytest.raises(FaceTrackerError, match="camera|source"):
        detect(source="97", model=model_file, display=False)


def test_detect_rejects_unknown_output_type(tmp_path, model_file, sample_video):
    with pytest.raises(FaceTrackerError, match="out.gif"):
        detect(source=sample_video, model=model_file, output=tmp_path / "out.gif", display=False)


@pytest.mark.slow
def test_live_recording_lasts_as_long_as_the_run(tmp_path):
    """A file:// URL opens as a live source: a 240 fps stream and a slower model (the small one at 480 px).

    Writing each frame once at the stream's rate would give a clip of 30/240 s, far shorter than the run.
    """
    from facetracker.sample_data import write_sample_video

    source = write_sample_video(tmp_path / "stream.mp4", frames=30, fps=240)
    model = tmp_path / "slow.keras"
    build_model("small", 480, "none", 16).save(model)
    output = tmp_path / "live.avi"
    summary = detect(source=source.resolve().as_uri(), model=model, output=output, display=False)
    capture = cv2.VideoCapture(str(output))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    duration = len(read_all(output)) / fps
    assert summary.frames == 30 and fps == pytest.approx(240.0)
    assert summary.seconds > 2 * summary.frames / fps  # the model is slower than the stream, or this proves nothing
    assert duration == pytest.approx(summary.seconds, rel=0.1)


def test_no_display_without_a_screen(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert want_preview(None) is False
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert want_preview(None) is False


def test_camera_that_stops_is_an_error_but_a_file_ending_is_not(sample_video):
    capture = cv2.VideoCapture(str(sample_video))
    frames = 0
    while read_frame(capture, str(sample_video), frames) is not None:  # a real capture, read to its end
        frames += 1
    assert frames == 30
    assert read_frame(capture, str(sample_video), frames) is None
    with pytest.raises(FaceTrackerError, match="camera 0 stopped delivering frames after 30"):
        read_frame(capture, 0, frames)
    with pytest.raises(FaceTrackerError, match="gave no frame"):
        read_frame(capture, str(sample_video), 0)
    capture.release()
