"""Real-time detection (tutorial section 11): camera, video file or URL in, boxes out.

The tutorial crops `frame[50:500, 50:500]`, calls `model.predict` on every frame and scales the
box by 450. Here one function turns any frame into the model's input (`frame_to_input`: the centre
square of the frame, as in training, or the whole frame padded to a square) and one turns the
model's box back into frame pixels (`box_to_frame`), whatever the frame size. The model runs
through a `tf.function` traced once (`predict()` is built for batches and is 2-3x slower per
frame), or through the LiteRT interpreter for an exported `.tflite` file (float or int8).

A `.tflite` run loads neither TensorFlow (when `ai_edge_litert` is installed), Albumentations nor
matplotlib: frame geometry lives in `facetracker.geometry` (numpy only), and TensorFlow is imported
inside the functions that need it. `--source` may also be a folder or a glob of images
(`detect_images`): annotated copies and one `predictions.jsonl` go into an output folder.
"""

import contextlib
import glob
import json
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from facetracker.capture import is_live, is_url, open_source, parse_source, want_preview
from facetracker.config import CLASS_NAME, IMAGE_EXTENSIONS, IMAGE_SIZE
from facetracker.display import FrameWindow
from facetracker.errors import FaceTrackerError
from facetracker.geometry import Box, FrameGeometry, PixelBox, box_to_frame, frame_geometry

MODEL_SUFFIXES = (".keras", ".tflite", "SavedModel folder")
VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 30.0
BOX_COLOR = (255, 0, 0)  # BGR blue, as in the tutorial
TEXT_COLOR = (255, 255, 255)
FPS_SMOOTHING = 0.1  # weight of the newest frame in the FPS overlay's moving average (about the last 10 frames)
PREDICTIONS_FILE = "predictions.jsonl"

# Model runner: inputs [N, size, size, 3] float32 in [0, 1] -> scores [N], boxes [N, 4].
PredictFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def frame_to_input(frame_bgr: np.ndarray, size: int = IMAGE_SIZE) -> tuple[np.ndarray, FrameGeometry]:
    """A BGR frame as the model's input: float32 [size, size, 3] RGB in [0, 1], and where it came from."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected a BGR frame of shape (height, width, 3), got {frame_bgr.shape}")
    height, width = frame_bgr.shape[:2]
    geo = frame_geometry(width, height)
    square = frame_bgr[geo.y0:geo.y0 + geo.side, geo.x0:geo.x0 + geo.side]
    # Area averaging, as the training pipeline resizes (`dataset.to_network_input`).
    resized = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0, geo


@dataclass(frozen=True)
class Detection:
    """The model's answer for one frame: its score and its box in frame pixels."""

    score: float
    box_px: PixelBox
    box: Box  # in [0, 1] of the input square


def split_outputs(outputs: object) -> tuple[np.ndarray, np.ndarray]:
    """(scores [N], boxes [N, 4]) from a model's two outputs, told apart by their last dimension (1 and 4)."""
    values = _as_list(outputs)
    arrays = {int(np.shape(v)[-1]): np.asarray(v, dtype=np.float32) for v in values}
    if set(arrays) != {1, 4}:
        raise FaceTrackerError(f"the model's outputs have shapes {[np.shape(v) for v in values]}; expected a score "
                               "(N, 1) and a box (N, 4): use a model saved by `facetracker train`.")
    return arrays[1][:, 0], arrays[4]


def keras_predict_fn(model: object) -> PredictFn:
    """Run a Keras model through `model.predict_fn` (one traced `tf.function`, any batch size), never `predict()`."""
    import tensorflow as tf

    from facetracker.model import predict_fn

    forward = predict_fn(model)
    return lambda x: split_outputs([t.numpy() for t in _as_list(forward(tf.constant(x, tf.float32)))])


def _as_list(outputs: object) -> list:
    """A model's outputs as a list, whether it returns a list, tuple or dict."""
    return list(outputs.values()) if isinstance(outputs, dict) else list(outputs)


def tflite_interpreter(path: Path) -> object:
    """A TFLite interpreter: LiteRT's (`ai_edge_litert`) when installed, else TensorFlow's (deprecated there)."""
    threads = os.cpu_count() or 1  # the default is one thread; BENCHMARKS.md compares them
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    else:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
    with native_stderr_silenced():
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence C++ writes to stderr: the runtime prints an INFO line for its CPU delegate that no setting hides."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float input as the tensor's type: unchanged for float, scaled and rounded for an int8/uint8 input."""
    if np.issubdtype(detail["dtype"], np.floating):
        return x.astype(detail["dtype"])
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32 (integer outputs scaled back with their quantization parameters)."""
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def tflite_predict_fn(path: Path) -> tuple[PredictFn, int]:
    """Run a .tflite model (float or quantized) one frame at a time; also returns its input size."""
    interpreter = tflite_interpreter(path)
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()

    def predict(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        for row in np.asarray(x, np.float32):
            interpreter.set_tensor(inp["index"], quantize_input(row[None], inp))
            interpreter.invoke()
            rows.append(split_outputs([dequantize_output(interpreter.get_tensor(o["index"]), o) for o in outs]))
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])

    return predict, int(inp["shape"][1])


def savedmodel_predict_fn(path: Path) -> tuple[PredictFn, int]:
    """Run an exported SavedModel through its `serve` endpoint; also returns its input size."""
    import tensorflow as tf

    artifact = tf.saved_model.load(str(path))
    spec = next(iter(artifact.signatures["serving_default"].structured_input_signature[1].values()))
    size = int(spec.shape[1])
    return lambda x: split_outputs([t.numpy() for t in _as_list(artifact.serve(tf.constant(x, tf.float32)))]), size


def load_keras_model(path: Path) -> object:
    """A `.keras` model loaded in safe mode (no Python code runs), checked to take [N, S, S, 3] images.

    Raises FaceTrackerError naming the file for a file that is not a .keras archive, a model that
    safe mode refuses (a Lambda layer), or a model with another input shape.
    """
    import keras

    import facetracker.model  # noqa: F401 - registers the layers of our models (GridBox) for safe mode

    if not zipfile.is_zipfile(path):
        raise FaceTrackerError(f"model {path} cannot be loaded: not a .keras file (not a zip archive); "
                               "train one (facetracker train) or pass --model PATH.")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError... for a bad archive
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "Lambda" in reason:
            reason = "it contains a Lambda layer (Python code), which safe mode refuses to load"
        raise FaceTrackerError(f"model {path} cannot be loaded ({reason}); retrain it with facetracker train "
                               "or re-save it without custom Python code.") from error
    shape = tuple(getattr(model, "input_shape", ()) or ())
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise FaceTrackerError(f"model {path} takes inputs of shape {shape}; a detector takes square RGB images "
                               "(None, S, S, 3): use a model saved by facetracker train.")
    return model


def check_tflite_file(path: Path) -> None:
    """Refuse a file that is not a TFLite flatbuffer (its bytes 4-8 are the identifier TFL3)."""
    with path.open("rb") as file:
        header = file.read(8)
    if header[4:8] != b"TFL3":
        raise FaceTrackerError(f"model {path} cannot be loaded: not a TFLite model (no TFL3 identifier); "
                               "export one with facetracker export --format tflite.")


def boxes_in_image(predict: PredictFn) -> PredictFn:
    """`predict` with its boxes clipped to the input square: the grid head's may reach past an edge."""

    def clipped(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, boxes = predict(inputs)
        return scores, np.clip(boxes, 0.0, 1.0)

    return clipped


class Detector:
    """A trained model (Keras, SavedModel or TFLite) as a function from a BGR frame to a `Detection`."""

    def __init__(self, predict: PredictFn, size: int = IMAGE_SIZE, name: str = "model"):
        self.predict = boxes_in_image(predict)  # inputs [N, size, size, 3] -> (scores [N], boxes [N, 4])
        self.size = size
        self.name = name

    @classmethod
    def from_keras(cls, model: object) -> "Detector":
        """Wrap an in-memory Keras model."""
        return cls(keras_predict_fn(model), int(model.input_shape[1]), model.name)

    @classmethod
    def load(cls, path: Path | str) -> "Detector":
        """Load a `.keras` model (safe mode), a `.tflite` file or an exported SavedModel folder."""
        path = Path(path)
        if not path.exists():
            raise FaceTrackerError(f"model {path} not found; train one (facetracker train) or pass --model PATH.")
        if path.suffix == ".keras":
            return cls.from_keras(load_keras_model(path))
        try:
            if path.suffix == ".tflite":
                check_tflite_file(path)
                return cls(*tflite_predict_fn(path), path.name)
            if path.is_dir() and (path / "saved_model.pb").exists():
                return cls(*savedmodel_predict_fn(path), path.name)
        except (ValueError, OSError, TypeError, RuntimeError) as error:
            raise FaceTrackerError(f"model {path} cannot be loaded ({error}); re-export or retrain it.") from error
        raise FaceTrackerError(f"model {path}: unknown kind; pass one of {', '.join(MODEL_SUFFIXES)}.")

    def warm_up(self) -> "Detector":
        """Run once on a blank input, so that tracing is not counted in timings."""
        self.predict(np.zeros((1, self.size, self.size, 3), np.float32))
        return self

    def __call__(self, frame_bgr: np.ndarray) -> Detection:
        """Detect the object in one BGR frame."""
        x, geo = frame_to_input(frame_bgr, self.size)
        scores, boxes = self.predict(x[None])
        box = tuple(float(v) for v in boxes[0])
        return Detection(float(scores[0]), box_to_frame(box, geo), box)


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
    if detection.score < threshold:
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


def open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """A video writer for `path` (.mp4 or .avi); a clear error when it cannot be created."""
    fourcc = VIDEO_FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise FaceTrackerError(f"--output {path}: unsupported video type; use one of {', '.join(VIDEO_FOURCC)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise FaceTrackerError(f"--output {path}: OpenCV cannot write this file; try an .avi name.")
    return writer


class Recorder:
    """Writes annotated frames to a video that plays at the speed of the run.

    From a video file every frame is written once, at the file's frame rate: an annotated copy.
    From a live source (camera, URL) the video has a constant rate `fps`, and each frame is repeated
    until the next one arrives, so the clip lasts as long as the run, however slow the model is.
    """

    def __init__(self, path: Path, fps: float, live: bool, start: float):
        self.path, self.fps, self.live, self.start = path, fps, live, start
        self.writer: cv2.VideoWriter | None = None
        self.written = 0

    def write(self, frame: np.ndarray, now: float) -> None:
        """Add `frame`, shown from now on (live) or as the next frame (file)."""
        if self.writer is None:
            self.writer = open_writer(self.path, self.fps, frame.shape[1], frame.shape[0])
        due = max(int(np.ceil((now - self.start) * self.fps)), self.written + 1) if self.live else self.written + 1
        for _ in range(due - self.written):
            self.writer.write(frame)
        self.written = due

    def close(self) -> None:
        """Finish the file."""
        if self.writer is not None:
            self.writer.release()


def source_fps(capture: cv2.VideoCapture) -> float:
    """The source's frame rate when it reports a plausible one, else 30."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if np.isfinite(fps) and 1.0 <= fps <= 240.0 else DEFAULT_FPS


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


def detect(source: int | str | Path = 0, model: Path | str = Path("facetracker.keras"), threshold: float = 0.5,
           output: Path | str | None = None, display: bool | None = None, class_name: str = CLASS_NAME,
           max_frames: int | None = None) -> "DetectSummary | ImagesSummary":
    """Run the detector on a camera, video file or URL (or a folder of images), drawing box, score and frame rate.

    Args:
        source: camera index, video file, URL, or a folder / glob of images (see `detect_images`).
        model: a .keras or .tflite model (or an exported SavedModel folder).
        threshold: smallest score for which a box is drawn.
        output: write the annotated video here (.mp4 or .avi); for images, the output folder.
        display: show a window ('q' quits); None shows one only when a display and an OpenCV GUI exist.
        max_frames: stop after this many frames (None: until the source ends or 'q').
    Returns:
        the number of frames, the model's mean time per frame and the overall frame rate.
    """
    check_options(threshold, max_frames)
    source = parse_source(source)
    images = image_files(source)
    if images is not None:
        return detect_images(images, model, Path(output) if output else Path("runs") / "detect", threshold,
                             class_name)
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


def detect_images(files: list[Path], model: Path | str, output: Path, threshold: float = 0.5,
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
    skipped, model_s = [], 0.0
    with (output / PREDICTIONS_FILE).open("w") as lines:
        for path in tqdm(files, desc="detect", unit="image"):
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                tqdm.write(f"warning: skipped {path}: not a readable image", file=sys.stderr)
                skipped.append(path)
                continue
            tick = time.perf_counter()
            detection = detector(frame)
            model_s += time.perf_counter() - tick
            lines.write(json.dumps(prediction_record(path, frame, detection)) + "\n")
            draw_detection(frame, detection, class_name, threshold)
            cv2.imwrite(str(output / path.name), frame)
    done = len(files) - len(skipped)
    return ImagesSummary(done, tuple(skipped), 1000 * model_s / max(done, 1), output)
