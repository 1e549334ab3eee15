"""Tests for facetracker.realtime: the Detector and `detect` on real video files, with the real small model."""

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from conftest import CONSTANT_BOX, CONSTANT_FRAME_BOX, CONSTANT_SCORE, box_color_share

from facetracker.capture import want_preview
from facetracker.errors import FaceTrackerError
from facetracker.inference import Detection, Detector, dequantize_output, frame_to_input, quantize_input
from facetracker.model import build_model
from facetracker.realtime import BOX_COLOR, FrameRate, Recorder, detect, draw_detection, read_frame


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


def test_detector_matches_a_direct_model_call(small_model_file, sample_video):
    detector = Detector.load(small_model_file)
    model = keras.saving.load_model(small_model_file)
    frame = read_all(sample_video)[0]
    detection = detector(frame)
    x, _ = frame_to_input(frame)
    score, box = (np.asarray(v) for v in model(x[None], training=False))
    assert detection.score == pytest.approx(float(score[0, 0]), abs=1e-5)
    np.testing.assert_allclose(detection.box, box[0], atol=1e-5)


@pytest.mark.slow  # over 3 s on 2 cores
def test_detector_box_in_frame_pixels_by_hand(constant_model):
    """The constant model's box (155, 100, 305, 222.4) px of the 480 px input square, placed by hand: a
    640x480 frame's square starts at x = 80, a 480x640 one's at y = 80, an 800x600 one is 1.25 times larger."""
    detector = Detector.load(constant_model)
    for (height, width), expected in (((480, 640), CONSTANT_FRAME_BOX), ((640, 480), (155, 180, 305, 302)),
                                      ((600, 800), (294, 125, 481, 278))):
        detection = detector(np.full((height, width, 3), 90, np.uint8))
        assert detection.score == pytest.approx(CONSTANT_SCORE, abs=1e-6)
        np.testing.assert_allclose(detection.box, CONSTANT_BOX, atol=1e-6)
        assert detection.box_px == expected, (height, width)


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


def green_share(frame: np.ndarray) -> float:
    """Share of the FPS overlay's corner (x 8..90, y 8..26) that is its green text (BGR (0, 255, 0))."""
    corner = frame[8:26, 8:90].astype(int)
    return float(np.mean((corner[..., 1] > 150) & (corner[..., 0] < 100) & (corner[..., 2] < 100)))


@pytest.mark.slow  # over 3 s on 2 cores
def test_detect_draws_the_box_and_the_frame_rate_where_computed_by_hand(tmp_path, constant_model, sample_video):
    output = tmp_path / "out" / "annotated.avi"
    summary = detect(source=sample_video, model=constant_model, threshold=0.5, output=output, display=False)
    source_frames, written = read_all(sample_video), read_all(output)
    assert summary.frames == len(source_frames) == len(written) == 30
    assert written[0].shape == source_frames[0].shape == (480, 640, 3)
    # Model time is part of the loop's time, and the overall rate is frames over that time.
    assert 0 < summary.mean_ms * summary.frames / 1000 <= summary.seconds
    assert summary.fps == pytest.approx(summary.frames / summary.seconds)
    for index in (0, 15, 29):  # the constant box, in BOX_COLOR, where the input lacks it; the FPS in green
        assert box_color_share(written[index], CONSTANT_FRAME_BOX) > 0.8
        assert box_color_share(source_frames[index], CONSTANT_FRAME_BOX) < 0.2
        assert green_share(written[index]) > 0.05 and green_share(source_frames[index]) == 0.0
    assert "30 frames" in summary.format()


def test_a_box_at_the_image_edge_is_drawn_inside_the_image():
    """A box past the right and bottom edges keeps those sides, on the last column and row."""
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_detection(frame, Detection(0.9, (600, 300, 700, 520), (0.0, 0.0, 1.0, 1.0)), "face", 0.5)
    blue = np.all(frame == BOX_COLOR, axis=2)
    assert blue[320:478, 639].all() and blue[479, 602:638].all()
    assert blue[320:478, 600].all()  # the left side, where it was
    untouched = np.zeros((480, 640, 3), np.uint8)
    draw_detection(untouched, Detection(0.4, (600, 300, 700, 520), (0.0, 0.0, 1.0, 1.0)), "face", 0.5)
    assert not untouched.any()  # under the threshold nothing is drawn


def test_quantize_and_dequantize_integer_tensors_by_hand():
    """An int8 input with scale 1/255 and zero point -128 maps [0, 1] onto -128..127; uint8 (zero 0) onto 0..255."""
    int8 = {"dtype": np.int8, "quantization": (1 / 255, -128)}
    x = np.array([0.0, 0.2, 1.0, 1.5, -0.5], np.float32)
    q = quantize_input(x, int8)
    assert q.dtype == np.int8 and q.tolist() == [-128, -77, 127, 127, -128]  # 0.2 * 255 = 51; clipped ends
    uint8 = {"dtype": np.uint8, "quantization": (1 / 255, 0)}
    assert quantize_input(x, uint8).tolist() == [0, 51, 255, 255, 0]
    float32 = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize_input(x.astype(np.float64), float32).dtype == np.float32
    out = dequantize_output(np.array([-128, -77, 127], np.int8), {"quantization": (1 / 256, -128)})
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 51 / 256, 255 / 256])
    np.testing.assert_array_equal(dequantize_output(np.array([0.25]), {"quantization": (0.0, 0)}), [0.25])


def test_detect_mp4_stops_at_max_frames(tmp_path, small_model_file, sample_video):
    output = tmp_path / "out.mp4"
    summary = detect(source=str(sample_video), model=small_model_file, output=output, display=False, max_frames=5)
    assert summary.frames == 5 and len(read_all(output)) == 5


def test_detect_missing_or_bad_source_is_a_clear_error(tmp_path, small_model_file):
    with pytest.raises(FaceTrackerError, match="nothere.mp4"):
        detect(source=tmp_path / "nothere.mp4", model=small_model_file, display=False)
    (tmp_path / "notvideo.avi").write_text("not a video")
    with pytest.raises(FaceTrackerError, match="notvideo.avi"):
        detect(source=tmp_path / "notvideo.avi", model=small_model_file, display=False)
    with pytest.raises(FaceTrackerError, match="camera|source"):
        detect(source="97", model=small_model_file, display=False)


def test_detect_rejects_unknown_output_type(tmp_path, small_model_file, sample_video):
    with pytest.raises(FaceTrackerError, match="out.gif"):
        detect(source=sample_video, model=small_model_file, output=tmp_path / "out.gif", display=False)


@pytest.mark.slow
def test_live_recording_lasts_as_long_as_the_run(tmp_path):
    """A file:// URL opens as a live source: a 240 fps stream and a slower model (the small one at 480 px).

    Writing each frame once at the stream's rate would give a clip of 30/240 s, far shorter than the run.
    The clip repeats frames at 30 fps: at the stream's 240 the writes could never keep up with the clock.
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
    assert summary.frames == 30 and fps == pytest.approx(30.0)
    assert summary.seconds > 2 * summary.frames / 240  # the model is slower than the stream, or this proves nothing
    assert duration == pytest.approx(summary.seconds, rel=0.1)


def test_a_live_clip_is_as_long_as_the_run_when_frames_come_faster_than_its_rate(tmp_path):
    """100 frames in one second of a live 240 fps stream: the 30 fps clip holds 30 frames, one second."""
    recorder = Recorder(tmp_path / "live.avi", fps=240, live=True, start=0.0)
    frame = np.zeros((48, 64, 3), np.uint8)
    for i in range(1, 101):
        recorder.write(frame, now=i / 100)
    recorder.close()
    assert recorder.fps == 30 and len(read_all(tmp_path / "live.avi")) == 30


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


def test_boxes_past_the_input_square_are_clipped_to_it():
    """The grid head's box may reach past an edge: the Detector's boxes (which evaluate scores) stay in [0, 1]."""
    from facetracker.inference import boxes_in_image

    def predict(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(inputs), 0.9), np.tile([-0.2, 0.1, 1.3, 0.5], (len(inputs), 1))

    scores, boxes = boxes_in_image(predict)(np.zeros((2, 8, 8, 3), np.float32))
    np.testing.assert_array_equal(scores, [0.9, 0.9])
    np.testing.assert_array_equal(boxes, [[0.0, 0.1, 1.0, 0.5]] * 2)
    detection = Detector(predict, size=8)(np.zeros((480, 640, 3), np.uint8))
    assert detection.box == (0.0, 0.1, 1.0, 0.5) and detection.box_px == (80, 48, 560, 240)
