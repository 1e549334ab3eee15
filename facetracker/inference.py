"""The model's contract: a frame becomes the input, a model runs, a box comes back into the frame.

Every user of a trained model goes through this module: `detect` (`realtime`), `evaluate`, `export`'s
check, `prelabel` and the benchmarks.

- frame -> input: `frame_to_input`, the frame's centre square (what augmentation's square crops showed
  the model in training), resized by area averaging, RGB in [0, 1];
- loading any model format: `Detector.load` takes a `.keras` file (safe mode), a `.tflite` file (float or
  int8, through LiteRT's interpreter, or TensorFlow's when LiteRT is not installed) or a SavedModel folder;
- running it: `Detector.predict` (inputs [N, S, S, 3] -> scores [N], boxes [N, 4]); a Keras model runs
  through one traced `tf.function` (`model.predict_fn`), never `predict()`, which is built for batches;
  int8 inputs and outputs go through `quantize_input` / `dequantize_output`;
- box -> frame: `box_to_frame` maps the model's box back to frame pixels.

TensorFlow is imported only inside the functions that need it, and a missing file is refused before,
so a `.tflite` model runs without TensorFlow where `ai_edge_litert` is installed.
"""

import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facetracker.config import IMAGE_SIZE
from facetracker.errors import FaceTrackerError
from facetracker.geometry import Box, PixelBox, center_square, ordered
from facetracker.quiet import native_stderr_silenced

MODEL_SUFFIXES = (".keras", ".tflite", "SavedModel folder")


@dataclass(frozen=True)
class FrameGeometry:
    """Where the model's input square lies in a frame, in frame pixels.

    The square's top-left corner is (x0, y0) and its side is `side` pixels.
    """

    x0: int
    y0: int
    side: int
    width: int
    height: int


def frame_geometry(width: int, height: int) -> FrameGeometry:
    """The input square of a width x height frame: its centre square."""
    return FrameGeometry(*center_square(width, height), width, height)


def box_to_frame(box: Box, geometry: FrameGeometry, rounded: bool = True) -> PixelBox | Box:
    """A model box ((x1, y1, x2, y2) in [0, 1] of the input square) in frame pixels, clipped to the frame."""
    x1, y1, x2, y2 = ordered(np.clip(np.asarray(box, dtype=np.float64), 0.0, 1.0))
    xs = np.clip(geometry.x0 + np.array([x1, x2]) * geometry.side, 0, geometry.width)
    ys = np.clip(geometry.y0 + np.array([y1, y2]) * geometry.side, 0, geometry.height)
    out = (xs[0], ys[0], xs[1], ys[1])
    return tuple(int(round(v)) for v in out) if rounded else tuple(float(v) for v in out)


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
    threads = os.cpu_count() or 1  # the interpreter's default is one thread; a frame is small work for each core
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

    import facetracker.model  # registers the layers of our models (GridBox) for safe mode

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
    # A model saved straight from mixed-precision training (yours, or an older facetracker's) computes in float32
    # here: LiteRT cannot convert bfloat16 ops, and a CPU without such units would emulate them.
    model = facetracker.model.float32_copy(model)
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


def load_keras(model_path: Path) -> object:
    """The Keras model at `model_path` (safe mode); a clear error when it is missing."""
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise FaceTrackerError(
            f"model {model_path} not found (or not a .keras file); train one first "
            "(facetracker train) or pass --model PATH."
        )
    return load_keras_model(model_path)
