"""Export the trained model for serving or for small devices (beyond the video, which saves an .h5).

- SavedModel: Keras 3's `model.export(path, format="tf_saved_model")`, a standalone folder with
  a `serve` endpoint (TF Serving, `tf.saved_model.load`).
- TFLite (LiteRT): Keras 3's `model.export(path, format="litert", ...)`, one `.tflite` file that
  `facetracker detect --model model.tflite` runs with the LiteRT interpreter. Its input has a fixed
  batch of one frame, [1, S, S, 3]: LiteRT.js (the web page, `facetracker.webpage`) refuses an open
  batch, and the Python runner feeds one frame at a time anyway. Keras passes the
  quantization settings on to TensorFlow's TFLite converter, which is deprecated in TF 2.21 but is
  still the only converter for a Keras 3 model that offers quantization:
  - `none`: float32;
  - `float16`: float16 weights (half the file), float32 arithmetic;
  - `dynamic`: int8 weights, activations quantized on the fly;
  - `int8`: full-integer weights and activations, calibrated on a representative set of training
    images (`calibration_images`); the file keeps float32 inputs and outputs. A few layers stay float32
    (`int8_keeping_float`):
    - the layers that give the outputs, the score's and the box's last Dense and sigmoid: an int8
      sigmoid's largest value is 255/256, so every score above 0.996 would tie, and a confident false
      box would rank level with the true faces;
    - the small backbone's grid box head (its last convolution and `model.GridBox`, which merges the
      cells' proposals): in int8 each of the merge's chained element-wise ops rounds to its own scale,
      and the boxes drift.

`check_export` runs the exported model and the Keras model on the same inputs (real images when
there are any). Float exports are judged by their largest output difference; `dynamic` and `int8`
change the numbers by design, so they are judged by what the user sees: whether the score decision
at the threshold agrees, and how well the boxes overlap (mean IoU).
"""

import contextlib
import csv
import io
import itertools
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetracker.config import CLASS_NAME, IMAGE_EXTENSIONS, SCORE_THRESHOLD, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import read_image
from facetracker.geometry import iou, ordered, shows_object
from facetracker.inference import Detector, frame_to_input, load_keras
from facetracker.webpage import WebExport

FORMATS = ("savedmodel", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# Largest accepted |difference| of score and box outputs, for exports judged by difference.
TOLERANCE = {"savedmodel": 1e-5, "none": 1e-4, "float16": 1e-2}
# Exports judged by decisions: least share of agreeing score decisions and least mean IoU of the boxes.
MIN_AGREEMENT = 0.9
MIN_MEAN_IOU = 0.8
CALIBRATION_IMAGES = 200  # representative images for int8 (TF's guide suggests about 100-500)
CHECK_IMAGES = 64  # real images compared in `check_export`
RANDOM_INPUTS = 8  # compared in `check_export` when there are no real images


def export_path(model_path: Path, fmt: str, out_dir: Path, quantize: str = "none") -> Path:
    """Where `export_model` writes: <out_dir>/<stem>[_<quantize>].tflite or <out_dir>/<stem>_savedmodel/."""
    if fmt not in FORMATS:
        raise FaceTrackerError(f"export format {fmt!r} unknown; use one of {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise FaceTrackerError(f"--quantize {quantize!r} unknown; use one of {', '.join(QUANTIZATIONS)}.")
    if fmt == "savedmodel":
        if quantize != "none":
            raise FaceTrackerError(f"--quantize {quantize} needs --format tflite; a SavedModel stays float32.")
        return out_dir / f"{model_path.stem}_savedmodel"
    return out_dir / (f"{model_path.stem}.tflite" if quantize == "none" else f"{model_path.stem}_{quantize}.tflite")


def load_images(folder: Path, size: int, count: int, seed: int = 0) -> np.ndarray:
    """Up to `count` images of a folder (a seeded random pick), resized as the model expects: [N, S, S, 3] in [0, 1].

    The augmented images are square crops, so `frame_to_input`'s centre square is the whole image: they
    reach the model as they did in training. Unreadable files are left out.
    """
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []
    picked = np.random.default_rng(seed).permutation(len(files))[:count]
    images = []
    for index in sorted(picked):
        try:
            images.append(frame_to_input(read_image(files[index]), size)[0])
        except FaceTrackerError:
            continue
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.float32)


def calibration_images(folder: Path, size: int, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """The representative set for int8: images of `folder` (aug_data/train/images); an error when there are none."""
    images = load_images(folder, size, count)
    if not len(images):
        raise FaceTrackerError(
            f"--quantize int8 calibrates on real images, and {folder} has none; run `facetracker augment` "
            "first or pass --calibration FOLDER of training images."
        )
    return images


def converter_options(quantize: str, representative: np.ndarray | None = None) -> dict:
    """Settings for `model.export(format="litert")`, passed on to the TFLite converter."""
    import tensorflow as tf

    # Builtin ops only: a file that needs TF ops ("Flex") would not run on LiteRT alone.
    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "none":
        return options
    options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    elif quantize == "int8":
        options["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

        def samples() -> Iterator[list[np.ndarray]]:
            for image in representative:
                yield [image[None].astype(np.float32)]

        options["representative_dataset"] = samples
    return options


def export_model(
    model_path: Path | str,
    fmt: str = "tflite",
    out_dir: Path | str | None = None,
    quantize: str = "none",
    representative: np.ndarray | Path | None = None,
) -> Path:
    """Export a .keras model as a SavedModel folder or a .tflite file; returns its path.

    Args:
        model_path: the trained .keras model.
        fmt: "savedmodel" or "tflite".
        out_dir: folder to write into (default: export/ below the working folder, `Paths().export`).
        quantize: one of QUANTIZATIONS (TFLite only).
        representative: int8 only: images [N, S, S, 3] in [0, 1] to calibrate on, or a folder of them
            (aug_data/train/images), of which `calibration_images` reads up to CALIBRATION_IMAGES.
    Returns:
        the exported file or folder.
    """
    model_path, out_dir = Path(model_path), Path(out_dir) if out_dir is not None else Paths().export
    target = export_path(model_path, fmt, out_dir, quantize)
    if quantize == "int8" and representative is None:
        raise FaceTrackerError("--quantize int8 needs representative images; pass --calibration FOLDER.")
    model = load_keras(model_path)
    if quantize == "int8" and isinstance(representative, Path):
        representative = calibration_images(representative, int(model.input_shape[1]))
    if out_dir.exists() and not out_dir.is_dir():
        raise FaceTrackerError(f"--out {out_dir} is a file; give a folder for the exported model.")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tensorflow_info_hidden():
        if fmt == "savedmodel":
            model.export(str(target), format="tf_saved_model", verbose=False)
        else:
            if quantize == "int8":
                int8_keeping_float(model, target, representative)
            else:
                model.export(str(target), format="litert", verbose=False, input_signature=[one_frame_spec(model)],
                             **converter_options(quantize, representative))
    return target


def one_frame_spec(model) -> object:
    """The input of a TFLite export: one float32 frame, [1, S, S, 3] (no open batch dimension)."""
    import keras

    return keras.InputSpec(shape=(1, *model.input_shape[1:]), dtype="float32")


def float_layers(model) -> list[str]:
    """The names of the layers an int8 export keeps in float32: the output layers, and each GridBox's input."""
    from facetracker.model import GridBox

    outputs = [tensor._keras_history.operation for tensor in model.outputs]
    # A GridBox's softmax magnifies the rounding of the cells' logits that its input convolution gives it.
    grid_inputs = [layer.input._keras_history.operation for layer in outputs if isinstance(layer, GridBox)]
    return [layer.name for layer in (*outputs, *grid_inputs)]


def int8_keeping_float(model, target: Path, representative: np.ndarray) -> None:
    """Write an int8 .tflite of `model` whose `float_layers` stay float32.

    TensorFlow's quantization debugger is the converter's way to leave chosen nodes unquantized: a first
    pass lists the nodes (their names carry the layer's), a second converts without those.
    """
    import tensorflow as tf

    # A node is named after its layer's scope, but for the model's outputs: those are named after the
    # serving call's outputs ("StatefulPartitionedCall_1:0"), with no scope.
    inside = re.compile("|".join([*(rf"(^|/){re.escape(name)}(_\d+)?/" for name in float_layers(model)),
                                  r"^[^/]+:\d+$"]))
    samples = converter_options("int8", representative)["representative_dataset"]
    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False, input_signature=[one_frame_spec(model)])

        def converter() -> tf.lite.TFLiteConverter:
            convert = tf.lite.TFLiteConverter.from_saved_model(folder)
            convert.optimizations = [tf.lite.Optimize.DEFAULT]
            convert.representative_dataset = samples
            # Builtin float kernels for the nodes left unquantized, int8 kernels for the rest.
            convert.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            return convert

        probe = tf.lite.experimental.QuantizationDebugger(
            converter=converter(), debug_dataset=lambda: itertools.islice(samples(), 1))
        probe.run()
        table = io.StringIO()
        probe.layer_statistics_dump(table)
        keep = [row["tensor_name"] for row in csv.DictReader(io.StringIO(table.getvalue()))
                if inside.search(row["tensor_name"])]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter(), debug_dataset=samples,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep))
        target.write_bytes(debugger.get_nondebug_quantized_model())


@contextlib.contextmanager
def tensorflow_info_hidden() -> Iterator[None]:
    """Hide TensorFlow's INFO log lines (the converter's "Assets written to ...") while exporting."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class ExportCheck:
    """How an exported model's outputs compare with the Keras model's on the same inputs."""

    exported: Path
    inputs: str  # what the inputs were ("64 images of aug_data/val/images", "8 random inputs")
    max_score_diff: float
    max_box_diff: float
    agreement: float  # share of inputs where both models decide the same at `threshold`
    mean_iou: float  # mean IoU between the two models' boxes, on the images both call a face
    tolerance: float | None  # largest accepted difference; None: judged by agreement and IoU
    threshold: float = SCORE_THRESHOLD

    @property
    def ok(self) -> bool:
        if self.tolerance is not None:
            return max(self.max_score_diff, self.max_box_diff) <= self.tolerance
        return self.agreement >= MIN_AGREEMENT and self.mean_iou >= MIN_MEAN_IOU

    def format(self) -> str:
        """One line for the CLI."""
        verdict = "OK" if self.ok else "TOO FAR"
        diff = f"max |diff| score {self.max_score_diff:.2e}, box {self.max_box_diff:.2e}"
        decisions = f"decisions agree on {self.agreement:.1%} at {self.threshold}, box mean IoU {self.mean_iou:.3f}"
        if self.tolerance is not None:
            rule = f"{diff} (tolerance {self.tolerance:.0e}); {decisions}"
        else:
            rule = f"{decisions} (need >= {MIN_AGREEMENT:.0%} and >= {MIN_MEAN_IOU}); {diff}"
        return f"{self.exported} on {self.inputs}: {rule}: {verdict}"


def quantization_of(exported: Path) -> str:
    """The export kind named by `export_path`: savedmodel, or the quantization of a .tflite file."""
    if exported.suffix != ".tflite":
        return "savedmodel"
    return next((q for q in QUANTIZATIONS[1:] if exported.stem.endswith(f"_{q}")), "none")


def box_agreement(boxes: np.ndarray, others: np.ndarray, faces: np.ndarray) -> float:
    """Mean IoU of two models' boxes on the images both call a face (on all, when there are none).

    A box for "no face" carries no meaning (the quick preset's box loss ignores those images), and tiny
    meaningless boxes would make the IoU swing on rounding alone.
    """
    keep = faces if faces.any() else np.ones_like(faces)
    return float(np.mean(iou(ordered(boxes[keep]), ordered(others[keep]))))


def check_export(
    model_path: Path | str,
    exported: Path | str,
    inputs: np.ndarray | None = None,
    images: Path | None = None,
) -> ExportCheck:
    """Compare an exported model with the Keras model on the same inputs, judged by the export kind's rule.

    Args:
        model_path: the .keras model.
        exported: the SavedModel folder or .tflite file made from it (its name tells the kind: `quantization_of`).
        inputs: model inputs [N, S, S, 3] in [0, 1], e.g. real images through `load_images`.
        images: a folder of real images (e.g. aug_data/val/images) to compare on, up to CHECK_IMAGES of them;
            used when `inputs` is None and the folder has images. Without either: RANDOM_INPUTS random inputs.
    """
    exported = Path(exported)
    keras_detector, other = Detector.load(model_path), Detector.load(exported)
    size = keras_detector.size
    if inputs is None and images is not None:
        inputs = load_images(images, size, CHECK_IMAGES)
        inputs = inputs if len(inputs) else None
        described = f"images of {images}"
    else:
        described = "images"
    if inputs is None:
        x = np.random.default_rng(0).random((RANDOM_INPUTS, size, size, 3), dtype=np.float32)
        described = "random inputs"
    else:
        x = inputs
    (s1, b1), (s2, b2) = keras_detector.predict(x), other.predict(x)
    face1, face2 = shows_object(s1), shows_object(s2)
    return ExportCheck(
        exported,
        f"{len(x)} {described}",
        float(np.max(np.abs(s1 - s2))),
        float(np.max(np.abs(b1 - b2))),
        float(np.mean(face1 == face2)),
        box_agreement(b1, b2, face1 & face2),
        TOLERANCE.get(quantization_of(exported)),
    )


def export_project(paths: Paths, model: Path | None = None, fmt: str = "tflite", out_dir: Path | None = None,
                   quantize: str = "none", calibration: Path | None = None,
                   class_name: str = CLASS_NAME) -> tuple[Path | WebExport, ExportCheck]:
    """The `export` step: export the current model (or `model`) into export/ and check it.

    `fmt="web"` writes the web page into export/web/ instead (`webpage.export_web`) and returns what it
    wrote. int8 calibrates on `calibration` (default: aug_data/train/images); the check compares the
    exported model with the Keras model on aug_data/val/images (random inputs when there are none).
    """
    model = model or paths.model
    representative = (calibration or paths.aug_images("train")) if quantize == "int8" else None
    if fmt == "web":
        from facetracker.webpage import export_web

        page = export_web(model, out_dir or paths.web, quantize=quantize, representative=representative,
                          class_name=class_name)
        return page, check_export(model, page.model, images=paths.aug_images("val"))
    out = export_model(model, fmt=fmt, out_dir=out_dir or paths.export, quantize=quantize,
                       representative=representative)
    return out, check_export(model, out, images=paths.aug_images("val"))
