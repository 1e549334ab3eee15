"""Export the trained model for serving or for small devices (beyond the video, which saves an .h5).

- SavedModel: Keras 3's `model.export(path, format="tf_saved_model")`, a standalone folder with
  a `serve` endpoint (TF Serving, `tf.saved_model.load`).
- TFLite: `tf.lite.TFLiteConverter.from_keras_model`, float32 (no quantisation), one `.tflite`
  file that `facetracker detect --model model.tflite` runs with the TFLite interpreter.

`check_export` runs the exported model and the Keras model on the same inputs and reports the
largest difference. Measured on small conv models: SavedModel ~1e-7, TFLite (XNNPACK) ~1e-6;
the tolerances below leave room for a deep VGG16.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetracker.errors import FaceTrackerError
from facetracker.realtime import Detector, load_keras_model

FORMATS = ("savedmodel", "tflite")
TOLERANCE = {"savedmodel": 1e-5, "tflite": 1e-4}  # largest |difference| of score and box outputs


def load_keras(model_path: Path):
    """The Keras model at `model_path` (safe mode); a clear error when it is missing."""
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise FaceTrackerError(f"model {model_path} not found (or not a .keras file); train one first "
                               "(facetracker train) or pass --model PATH.")
    return load_keras_model(model_path)


def export_path(model_path: Path, fmt: str, out_dir: Path) -> Path:
    """Where `export_model` writes: <out_dir>/<model stem>.tflite or <out_dir>/<model stem>_savedmodel/."""
    if fmt not in FORMATS:
        raise FaceTrackerError(f"export format {fmt!r} unknown; use one of {', '.join(FORMATS)}.")
    return out_dir / (f"{model_path.stem}.tflite" if fmt == "tflite" else f"{model_path.stem}_savedmodel")


def export_model(model_path: Path | str, fmt: str = "savedmodel", out_dir: Path | str = Path("export")) -> Path:
    """Export a .keras model as a SavedModel folder or a float32 .tflite file; returns its path."""
    import tensorflow as tf

    model_path, out_dir = Path(model_path), Path(out_dir)
    target = export_path(model_path, fmt, out_dir)
    model = load_keras(model_path)
    if out_dir.exists() and not out_dir.is_dir():
        raise FaceTrackerError(f"--out {out_dir} is a file; give a folder for the exported model.")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        model.export(str(target), format="tf_saved_model", verbose=False)
    else:
        target.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return target


@dataclass(frozen=True)
class ExportCheck:
    """How far an exported model's outputs are from the Keras model's."""

    exported: Path
    max_score_diff: float
    max_box_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return max(self.max_score_diff, self.max_box_diff) <= self.tolerance

    def format(self) -> str:
        """One line for the CLI."""
        verdict = "OK" if self.ok else "TOO FAR"
        return (f"{self.exported}: max |diff| score {self.max_score_diff:.2e}, box {self.max_box_diff:.2e} "
                f"(tolerance {self.tolerance:.0e}): {verdict}")


def check_export(model_path: Path | str, exported: Path | str, samples: int = 8, tolerance: float | None = None,
                 seed: int = 0, inputs: np.ndarray | None = None) -> ExportCheck:
    """Compare an exported model with the Keras model on the same inputs.

    Args:
        model_path: the .keras model.
        exported: the SavedModel folder or .tflite file made from it.
        samples, seed: how many random inputs in [0, 1] to use when `inputs` is None.
        tolerance: largest accepted |difference| (default: TOLERANCE of the exported format).
        inputs: model inputs [N, S, S, 3] in [0, 1], e.g. real frames through `frame_to_input`.
    """
    keras_detector, other = Detector.load(model_path), Detector.load(exported)
    size = keras_detector.size
    x = np.random.default_rng(seed).random((samples, size, size, 3), dtype=np.float32) if inputs is None else inputs
    (s1, b1), (s2, b2) = keras_detector.predict(x), other.predict(x)
    fmt = "tflite" if Path(exported).suffix == ".tflite" else "savedmodel"
    limit = TOLERANCE[fmt] if tolerance is None else tolerance
    return ExportCheck(Path(exported), float(np.max(np.abs(s1 - s2))), float(np.max(np.abs(b1 - b2))), limit)
