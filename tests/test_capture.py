"""capture: frames from a real cv2.VideoCapture on a generated video file."""

import re
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetracker.capture import can_open, collect, open_source, parse_source, want_preview
from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.sample_data import write_sample_video


def video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (read := cap.read())[0]:
        frames.append(read[1])
    cap.release()
    return frames


def test_collect_takes_frames_interval_apart_in_video_time(tmp_path: Path, sample_video: Path) -> None:
    saved = collect(Paths(tmp_path), source=str(sample_video), count=5, interval=0.2, preview=False)
    assert [p.parent for p in saved] == [Paths(tmp_path).images] * 5
    assert all(uuid.UUID(p.stem).version == 1 and p.suffix == ".jpg" for p in saved)
    frames = video_frames(sample_video)  # 15 fps: 0.2 s apart is every 3rd frame
    for k, path in enumerate(saved):
        image = cv2.imread(str(path)).astype(int)
        errors = [np.abs(image - frame).mean() for frame in frames[:15]]
        assert int(np.argmin(errors)) == 3 * k


def test_collect_accepts_a_folder_and_a_path_source(tmp_path: Path, sample_video: Path) -> None:
    saved = collect(tmp_path / "frames", source=sample_video, count=3, interval=0, preview=False)
    assert len(saved) == 3 == len(list((tmp_path / "frames").glob("*.jpg")))


def test_source_that_ends_early_keeps_and_counts_frames(tmp_path: Path, sample_video: Path) -> None:
    with pytest.raises(FaceTrackerError, match=r"after 4 of 10; 4 saved in .*frames"):
        collect(tmp_path / "frames", source=sample_video, count=10, interval=0.5, preview=False)
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 4  # 30 frames, one every 8: 0, 8, 16, 24


def test_missing_file_and_camera_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FaceTrackerError, match=f"--source {re.escape(str(missing))}: no such video file"):
        collect(tmp_path / "frames", source=missing, count=1, preview=False)
    assert not any((tmp_path / "frames").iterdir())  # nothing saved
    with pytest.raises(FaceTrackerError, match=r"cannot open camera 99: try --source 0, or a video file"):
        open_source("99")


def test_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(FaceTrackerError, match="cannot open video file .*notes.mp4"):
        collect(tmp_path, source=fake, count=1, preview=False)


def test_open_source_returns_an_open_capture(sample_video: Path) -> None:
    cap = open_source(str(sample_video))
    try:
        ok, frame = cap.read()
        assert ok and frame.shape == (480, 640, 3)
    finally:
        cap.release()


@pytest.mark.parametrize(
    ("given", "expected"), [(0, 0), ("0", 0), (" 1 ", 1), ("video.mp4", "video.mp4"), ("rtsp://cam/1", "rtsp://cam/1")]
)
def test_parse_source(given: object, expected: object) -> None:
    assert parse_source(given) == expected


def test_preview_needs_a_display(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample_video: Path) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert want_preview(None) is False
    with pytest.raises(FaceTrackerError, match="--preview needs a display"):
        collect(tmp_path, source=sample_video, count=1, preview=True)
    assert not list(tmp_path.rglob("*.jpg"))


def test_bad_count_and_zero_count(tmp_path: Path, sample_video: Path) -> None:
    with pytest.raises(FaceTrackerError, match="count=-1"):
        collect(tmp_path, source=sample_video, count=-1)
    assert collect(tmp_path, source=sample_video, count=0, preview=False) == []


def test_short_avi_video(tmp_path: Path) -> None:
    video = write_sample_video(tmp_path / "cam.avi", frames=5, fps=10)
    assert len(collect(tmp_path / "out", source=video, count=5, interval=0.1, preview=False)) == 5


def test_can_open_tells_a_working_source_from_a_missing_one(tmp_path: Path, sample_video: Path) -> None:
    assert can_open(sample_video)
    assert not can_open(tmp_path / "missing.mp4")
    assert not can_open(99)


def nearest_frames(saved: list[Path], frames: list[np.ndarray]) -> list[int]:
    """For each saved image, the index of the video frame it is closest to."""
    return [int(np.argmin([np.abs(cv2.imread(str(p)).astype(int) - f).mean() for f in frames])) for p in saved]


def test_a_file_url_is_a_live_stream_paced_in_real_time(tmp_path: Path, sample_video: Path) -> None:
    """file:// opens through the stream branch: frames come in order, one per read, `interval` s of wall time apart."""
    url = sample_video.resolve().as_uri()
    assert url.startswith("file://")
    saved = collect(tmp_path / "frames", source=url, count=3, interval=0.3, preview=False)
    # A stream cannot skip ahead by video time: consecutive frames, where the file path takes every 4th (0.3 s).
    assert nearest_frames(saved, video_frames(sample_video)[:12]) == [0, 1, 2]
    file_saved = collect(tmp_path / "file", source=sample_video, count=3, interval=0.3, preview=False)
    assert nearest_frames(file_saved, video_frames(sample_video)[:12]) == [0, 4, 8]
    written = [p.stat().st_mtime_ns / 1e9 for p in saved]
    assert all(b - a >= 0.25 for a, b in zip(written, written[1:], strict=False)), written  # waits at least ~0.3 s


def test_a_stream_that_ends_keeps_its_frames_and_says_stream(tmp_path: Path, sample_video: Path) -> None:
    url = sample_video.resolve().as_uri()
    with pytest.raises(FaceTrackerError, match=r"stream file://.*camera.mp4 stopped delivering frames after 30 of 32"):
        collect(tmp_path / "frames", source=url, count=32, interval=0, preview=False)
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 30
    with pytest.raises(FaceTrackerError, match=r"cannot open stream file://.*missing.mp4: check the path or URL"):
        collect(tmp_path / "frames", source=(tmp_path / "missing.mp4").as_uri(), count=1, preview=False)


def test_urls_and_live_sources() -> None:
    from facetracker.capture import is_live, is_url

    assert is_url("RTSP://cam/1") and is_url("http://host:8080/video") and is_url("file:///tmp/v.mp4")
    assert not is_url("video.mp4") and not is_url("C:/videos/v.mp4") and not is_url(0) and not is_url("1://x")
    assert is_live(0) and is_live("Http://cam") and not is_live("video.mp4")


def test_a_boolean_source_is_refused_with_the_fix() -> None:
    from facetracker.capture import parse_source

    with pytest.raises(FaceTrackerError) as error:
        parse_source(True)
    assert str(error.value) == "--source True: give a camera index (0, 1, ...), a video file or a URL."
