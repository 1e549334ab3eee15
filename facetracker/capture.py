"""Collect frames from a camera or a video file (tutorial section 1).

The tutorial grabs 30 frames, 0.5 s apart, from `cv2.VideoCapture(index)` and saves each as
`data/images/<uuid1>.jpg`. Here every `cap.read()` is checked (a wrong camera index otherwise
ends in "NoneType is not subscriptable"), the capture is always released, and a video file
works as a stand-in camera.

Pacing: a live source (camera index or stream URL) waits `interval` seconds between frames in
real time. A video file is not played in real time: we take the frames at video times
0, interval, 2*interval, ... (by frame number, from the file's fps), skipping the rest with
`grab()`, so collecting from a file is as fast as decoding it.
"""

import re
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from facetracker.config import Paths
from facetracker.display import FrameWindow, display_available, gui_available
from facetracker.errors import FaceTrackerError
from facetracker.fileio import write_image

PREVIEW_WINDOW = "FaceTracker collect (q: stop)"
DEFAULT_FPS = 30.0  # assumed when a video source does not say, or says something implausible
VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}  # the codec OpenCV's wheels can write for each container


def parse_source(source: int | str | Path) -> int | str:
    """A camera index (int, or a string of digits) or a video path / stream URL as text."""
    if isinstance(source, bool):
        raise FaceTrackerError(f"--source {source!r}: give a camera index (0, 1, ...), a video file or a URL.")
    if isinstance(source, int):
        return source
    text = str(source).strip()
    return int(text) if text.isdigit() else text


def is_url(source: int | str) -> bool:
    """Whether a source is a stream URL such as rtsp://... or http://..."""
    return isinstance(source, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source) is not None


def is_live(source: int | str) -> bool:
    """A camera or a stream (paced in real time) rather than a video file."""
    return isinstance(source, int) or is_url(source)


def open_source(source: int | str | Path) -> cv2.VideoCapture:
    """Open a camera index, a video file or a stream URL; FaceTrackerError if it does not open."""
    parsed = parse_source(source)
    if isinstance(parsed, str) and not is_url(parsed) and not Path(parsed).is_file():
        raise FaceTrackerError(
            f"--source {parsed}: no such video file; give an existing file or a camera index (0, 1)."
        )
    cap = cv2.VideoCapture(parsed)
    if cap.isOpened():
        return cap
    cap.release()
    if isinstance(parsed, int):
        other = 1 if parsed == 0 else 0
        raise FaceTrackerError(
            f"cannot open camera {parsed}: try --source {other}, or a video file; "
            "check that no other program is using the camera."
        )
    what = "stream" if is_url(parsed) else "video file"
    raise FaceTrackerError(f"cannot open {what} {parsed}: check the path or URL, or convert the video to .mp4.")


def can_open(source: int | str | Path) -> bool:
    """Whether a camera, video file or URL opens (the notebook falls back to a sample video when not)."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)  # a missing camera is an answer here, not a warning
    try:
        open_source(source).release()
    except FaceTrackerError:
        return False
    finally:
        log.setLogLevel(level)
    return True


def want_preview(preview: bool | None) -> bool:
    """Resolve `preview`: None means 'when a display and an OpenCV GUI exist'; True insists."""
    possible = display_available() and gui_available()
    if preview and not possible:
        raise FaceTrackerError(
            "--preview needs a display and PyQt5 (`pip install PyQt5`, labelme installs it); run without --preview."
        )
    return possible if preview is None else bool(preview)


def save_frame(frame: np.ndarray, images_dir: Path) -> Path:
    """Save a frame as <uuid1>.jpg, as the tutorial names them."""
    path = images_dir / f"{uuid.uuid1()}.jpg"
    write_image(path, frame)
    return path


def source_fps(capture: cv2.VideoCapture) -> float:
    """The source's frame rate when it reports a plausible one, else DEFAULT_FPS."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if np.isfinite(fps) and 1.0 <= fps <= 240.0 else DEFAULT_FPS


def open_video_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """A video writer for `path` (.mp4 or .avi); a clear error when it cannot be created."""
    fourcc = VIDEO_FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise FaceTrackerError(f"{path}: unsupported video type; use one of {', '.join(VIDEO_FOURCC)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise FaceTrackerError(f"{path}: OpenCV cannot write this video file; try an .avi name.")
    return writer


def frame_step(cap: cv2.VideoCapture, interval: float) -> int:
    """For a video file: how many frames lie `interval` seconds apart (at least 1)."""
    return max(1, round(interval * source_fps(cap)))


def skip_frames(cap: cv2.VideoCapture, count: int) -> bool:
    """Grab and drop `count` frames; False if the source ended."""
    return all(cap.grab() for _ in range(count))


def collect(
    paths_or_images_dir: Paths | Path | str,
    source: int | str | Path = 0,
    count: int = 30,
    interval: float = 0.5,
    preview: bool | None = None,
) -> list[Path]:
    """Grab `count` frames `interval` seconds apart and save them as data/images/<uuid1>.jpg.

    Args:
        paths_or_images_dir: a `Paths` (frames go to its data/images) or the folder itself.
        source: camera index (0, 1, "0"), video file or stream URL.
        count: frames to save (the tutorial: 30 per run).
        interval: seconds between frames (video time for a file, real time for a camera).
        preview: show a window (q stops early); None: only when a display exists.

    Returns:
        The saved files, in order. Raises FaceTrackerError when the source does not open or stops
        delivering frames (the frames saved so far are kept and counted in the message).
    """
    if count < 0 or interval < 0:
        raise FaceTrackerError(f"count={count}, interval={interval}: both must be >= 0.")
    images_dir = paths_or_images_dir.images if isinstance(paths_or_images_dir, Paths) else Path(paths_or_images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    parsed = parse_source(source)
    show_window = want_preview(preview)
    live = is_live(parsed)
    cap = open_source(parsed)
    saved: list[Path] = []
    window = None
    try:
        window = FrameWindow(PREVIEW_WINDOW) if show_window else None
        skip = 0 if live else frame_step(cap, interval) - 1
        for index in tqdm(range(count), desc=f"collect from {parsed}", unit="frame"):
            if index and live:
                time.sleep(interval)
            if index and not live and not skip_frames(cap, skip):
                raise stopped(parsed, saved, count, images_dir)
            ok, frame = cap.read()
            if not ok or frame is None:
                raise stopped(parsed, saved, count, images_dir)
            saved.append(save_frame(frame, images_dir))
            if window is not None and not window.show(frame):
                break
    finally:
        cap.release()
        if window is not None:
            window.close()
    return saved


def stopped(source: int | str, saved: list[Path], count: int, images_dir: Path) -> FaceTrackerError:
    """The error for a source that stopped delivering frames (saying how many were saved)."""
    done = f"stopped delivering frames after {len(saved)} of {count}; {len(saved)} saved in {images_dir}."
    if is_live(source):
        kind = "camera" if isinstance(source, int) else "stream"
        return FaceTrackerError(f"{kind} {source} {done} Check the connection and that no other program uses it.")
    return FaceTrackerError(f"video {source} {done} The video is too short: lower --count or --interval.")
