"""Real-time detection (tutorial section 11): camera, video file or URL in, boxes out.

The tutorial crops `frame[50:500, 50:500]`, calls `model.predict` on every frame and scales the
box by 450. Here the model's contract lives in `facetracker.inference`: `Detector` turns any frame
into the model's input (the centre square of the frame, as in training), runs the model (Keras,
SavedModel, or a `.tflite` file through LiteRT) and maps its box back into frame pixels, whatever the
frame size. This module keeps the loop: read a frame, detect, draw, write, show.

A `.tflite` run loads neither TensorFlow (when `ai_edge_litert` is installed), Albumentations nor
matplotlib. `--source` may also be a folder or a glob of images (`detect_images`): annotated copies
and one `predictions.jsonl` go into an output folder.
"""

import glob
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from facetracker.capture import (
    VIDEO_FOURCC,
    is_live,
    is_url,
    open_source,
    open_video_writer,
    parse_source,
    source_fps,
    want_preview,
)
from facetracker.config import CLASS_NAME, IMAGE_EXTENSIONS, MODEL_FILE, SCORE_THRESHOLD, Paths, next_run_dir
from facetracker.display import FrameWindow
from facetracker.errors import FaceTrackerError
from facetracker.fileio import atomic_write, read_image, write_image
from facetracker.geometry import shows_object
from facetracker.inference import Detection, Detector, frame_to_input  # noqa: F401 - frame_to_input: public name

BOX_COLOR = (255, 0, 0)  # BGR blue, as in the tutorial
TEXT_COLOR = (255, 255, 255)
FPS_SMOOTHING = 0.1  # weight of the newest frame in the FPS overlay's moving average (about the last 10 frames)
PREDICTIONS_FILE = "predictions.jsonl"
LIVE_RECORDING_FPS = 30.0  # the most frames per second a recording of a live source holds


@dataclass(frozen=True)
class DetectSummary:
    """What a `detect` run on a camera, video or URL did."""

    frames: int
    mean_ms: float  # model time per frame (preprocessing + forward pass)
    fps: float  # frames per second of the whole loop (reading, model, drawing, writing, display)
    seconds: float = 0.0  # wall time of the loop
    output: Path | None = None

    def format(self) -> str:
        """One line for the CLI."""
        text = f"{self.frames} frames, model {self.mean_ms:.1f} ms/frame, {self.fps:.1f} frames/s overall"
        return text + (f", annotated video: {self.output}" if self.output else "")


def draw_detection(frame: np.ndarray, detection: Detection, class_name: str, threshold: float) -> None:
    """Draw the box with its class name and score (when the score reaches `threshold`), in place."""
    if not shows_object(detection.score, threshold):
        return
    height, width = frame.shape[:2]
    # Kept inside the frame, so a box that reaches the frame's edge still shows that side.
    x1, y1, x2, y2 = (min(max(v, 0), limit - 1) for v, limit in zip(detection.box_px, (width, height) * 2, strict=True))
    cv2.rectangle(frame, (x1, y1), (x2, y2), BOX_COLOR, 2)
    text = f"{class_name} {detection.score:.2f}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    top = max(y1 - th - base - 4, 0)
    cv2.rectangle(frame, (x1, top), (x1 + tw + 4, top + th + base + 4), BOX_COLOR, -1)
    cv2.putText(frame, text, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, TEXT_COLOR, 1, cv2.LINE_AA)


def draw_fps(frame: np.ndarray, fps: float) -> None:
    """Write the frame rate in the top-left corner, in place."""
    cv2.putText(frame, f"{fps:.1f} FPS", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2, cv2.LINE_AA)


class FrameRate:
    """The current frame rate: an exponential moving average of the time between frames."""

    def __init__(self, start: float, smoothing: float = FPS_SMOOTHING):
        self.last = start
        self.smoothing = smoothing  # weight of the newest interval
        self.interval: float | None = None

    def tick(self, now: float) -> float:
        """Record a frame finished at `now` (seconds); returns the current frames per second."""
        step, self.last = max(now - self.last, 1e-9), now
        self.interval = step if self.interval is None else (1 - self.smoothing) * self.interval + self.smoothing * step
        return 1.0 / self.interval


class Recorder:
    """Writes annotated frames to a video that plays at the speed of the run.

    From a video file every frame is written once, at the file's frame rate: an annotated copy.
    From a live source (camera, URL) the video has a constant rate, `fps` up to LIVE_RECORDING_FPS, and
    each frame is repeated until the next one arrives (or left out when the next one arrives first), so the
    clip lasts as long as the run, however slow or fast the model is.
    """

    def __init__(self, path: Path, fps: float, live: bool, start: float):
        # Repeating frames at a fast stream's rate could never keep up: each write costs milliseconds.
        self.fps = min(fps, LIVE_RECORDING_FPS) if live else fps
        self.path, self.live, self.start = path, live, start
        self.writer: cv2.VideoWriter | None = None
        self.written = 0

    def write(self, frame: np.ndarray, now: float) -> None:
        """Add `frame`, shown from now on (live) or as the next frame (file)."""
        if self.writer is None:
            try:
                self.writer = open_video_writer(self.path, self.fps, frame.shape[1], frame.shape[0])
            except FaceTrackerError as error:
                raise FaceTrackerError(f"--output {error}") from error
        # Live: the clip's frames due by now; a frame that arrives before the next is due is left out, so a
        # model faster than the clip's rate does not stretch the clip past the run.
        due = int(np.ceil((now - self.start) * self.fps)) if self.live else self.written + 1
        for _ in range(due - self.written):
            self.writer.write(frame)
        self.written = max(due, self.written)

    def close(self) -> None:
        """Finish the file."""
        if self.writer is not None:
            self.writer.release()


def read_frame(capture: cv2.VideoCapture, source: int | str, frames: int) -> np.ndarray | None:
    """The next frame; None at the end of a file or stream; an error when a camera stops delivering."""
    ok, frame = capture.read()
    if ok and frame is not None:
        return frame
    if isinstance(source, int):
        raise FaceTrackerError(f"camera {source} stopped delivering frames after {frames}; check that no other "
                               "program uses it, or try another index (--source 1).")
    if frames == 0:
        raise FaceTrackerError(f"video source {source!r} opened but gave no frame; check that it is a video.")
    return None


def check_options(threshold: float, max_frames: int | None = None) -> None:
    """Refuse a threshold outside [0, 1] and a frame limit below 1."""
    if max_frames is not None and max_frames < 1:
        raise FaceTrackerError(f"--max-frames {max_frames}: give a number of frames >= 1, or leave it out.")
    if not 0.0 <= threshold <= 1.0:
        raise FaceTrackerError(f"--threshold {threshold}: give a score between 0 and 1, e.g. 0.5.")


def detect(source: int | str | Path = 0, model: Path | str = Path(MODEL_FILE), threshold: float = SCORE_THRESHOLD,
           output: Path | str | None = None, display: bool | None = None, class_name: str = CLASS_NAME,
           max_frames: int | None = None, root: Path | str = Path(".")) -> "DetectSummary | ImagesSummary":
    """Run the detector on a camera, video file or URL (or a folder of images), drawing box, score and frame rate.

    Args:
        source: camera index, video file, URL, or a folder / glob of images (see `detect_images`).
        model: a .keras or .tflite model (or an exported SavedModel folder).
        threshold: smallest score for which a box is drawn.
        output: write the annotated video here (.mp4 or .avi); for images, the output folder.
        display: show a window ('q' quits); None shows one only when a display and an OpenCV GUI exist.
        max_frames: stop after this many frames (None: until the source ends or 'q').
        root: the project folder; images without `output` go to a new <root>/runs/detect/predict<N>.
    Returns:
        the number of frames, the model's mean time per frame and the overall frame rate.
    """
    check_options(threshold, max_frames)
    source = parse_source(source)
    images = image_files(source)
    if images is not None:
        output = Path(output) if output else next_run_dir(Paths(Path(root)).detect_runs, "predict")
        return detect_images(images, model, output, threshold, class_name)
    detector = Detector.load(model).warm_up()
    show = want_preview(display)
    capture = open_source(source)
    start = time.perf_counter()
    rate, recorder = FrameRate(start), None
    if output is not None:
        recorder = Recorder(Path(output), source_fps(capture), is_live(source), start)
    frames, model_s, window = 0, 0.0, None
    try:
        while max_frames is None or frames < max_frames:
            frame = read_frame(capture, source, frames)
            if frame is None:
                break
            tick = time.perf_counter()
            detection = detector(frame)
            model_s += time.perf_counter() - tick
            frames += 1
            draw_detection(frame, detection, class_name, threshold)
            now = time.perf_counter()
            draw_fps(frame, rate.tick(now))
            if recorder is not None:
                recorder.write(frame, now)
            if show:
                window = window or FrameWindow(f"FaceTracker ({class_name}) - q quits")
                if not window.show(frame):
                    break
    finally:
        capture.release()
        if recorder is not None:
            recorder.close()
        if window is not None:
            window.close()
    elapsed = time.perf_counter() - start
    return DetectSummary(frames, 1000 * model_s / max(frames, 1), frames / max(elapsed, 1e-9), elapsed,
                         Path(output) if output is not None else None)


# ----------------------------------------------------------------------------- folders of images


@dataclass(frozen=True)
class ImagesSummary:
    """What a `detect` run on a folder or glob of images did."""

    images: int  # images read and annotated
    skipped: tuple[Path, ...]  # files that could not be read as images
    mean_ms: float  # model time per image
    output: Path  # folder of annotated images and predictions.jsonl

    def format(self) -> str:
        """One line for the CLI."""
        skipped = f" ({len(self.skipped)} unreadable, skipped)" if self.skipped else ""
        return (f"{self.images} images{skipped}, model {self.mean_ms:.1f} ms/image; annotated images and "
                f"{PREDICTIONS_FILE} in {self.output}")


def image_files(source: int | str) -> list[Path] | None:
    """The files a folder (images by extension) or a glob names, sorted; None for a camera, video or URL."""
    if isinstance(source, int) or is_url(source):
        return None
    if Path(source).is_dir():
        files = sorted(p for p in Path(source).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    elif any(char in source for char in "*?["):
        files = sorted(p for p in map(Path, glob.glob(source)) if p.is_file())
    else:
        return None
    if not files:
        raise FaceTrackerError(f"--source {source}: no image files found ({', '.join(IMAGE_EXTENSIONS)}); "
                               "give a folder of images, a glob such as 'photos/*.jpg', a video or a camera index.")
    return files


def prediction_record(path: Path, frame: np.ndarray, detection: Detection) -> dict:
    """One line of predictions.jsonl: the file, the score and the box in pixels of the image."""
    return {"file": str(path), "score": round(detection.score, 6), "box": list(detection.box_px),
            "width": int(frame.shape[1]), "height": int(frame.shape[0])}


def detect_images(files: list[Path], model: Path | str, output: Path, threshold: float = SCORE_THRESHOLD,
                  class_name: str = CLASS_NAME) -> ImagesSummary:
    """Run the detector on image files: annotated copies and one predictions.jsonl in `output`.

    Args:
        files: the images (see `image_files`); an unreadable file gets a one-line warning and is skipped.
        model: a .keras or .tflite model (or an exported SavedModel folder).
        output: folder for the annotated images (same names) and predictions.jsonl.
        threshold: smallest score for which a box is drawn (every prediction is written to the file).
    Returns:
        how many images were annotated, which were skipped, and the model's time per image.
    """
    check_options(threshold)
    if output.suffix.lower() in VIDEO_FOURCC or (output.exists() and not output.is_dir()):
        raise FaceTrackerError(f"--output {output}: for a folder of images give an output folder, not a file.")
    detector = Detector.load(model).warm_up()
    output.mkdir(parents=True, exist_ok=True)
    skipped, model_s, lines = [], 0.0, []
    for path in tqdm(files, desc="detect", unit="image"):
        try:
            frame = read_image(path)
        except FaceTrackerError:
            tqdm.write(f"warning: skipped {path}: not a readable image", file=sys.stderr)
            skipped.append(path)
            continue
        tick = time.perf_counter()
        detection = detector(frame)
        model_s += time.perf_counter() - tick
        lines.append(json.dumps(prediction_record(path, frame, detection)) + "\n")
        draw_detection(frame, detection, class_name, threshold)
        write_image(output / path.name, frame)
    atomic_write(output / PREDICTIONS_FILE, "".join(lines).encode())
    done = len(files) - len(skipped)
    return ImagesSummary(done, tuple(skipped), 1000 * model_s / max(done, 1), output)
