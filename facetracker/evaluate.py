"""Evaluate the detector (tutorial section 10, measured properly), next to OpenCV's Haar cascade.

The video looks at a grid of a few test images. Here the model is scored on every test frame
and every augmented test sample, next to OpenCV's Haar face cascade on the same frames, with:

- face / no-face: accuracy, precision, recall and F1 at a score threshold (`score >= threshold`
  is a positive). A 0/0 ratio is 0 (precision with no predicted positive, recall with no actual
  positive; F1 when precision + recall = 0), as scikit-learn's `zero_division=0`.
- boxes: the mean IoU over true positives (a face and `score >= threshold`), and COCO-style
  average precision treating each image's output as one scored detection: AP@0.5 and
  AP@[.5:.95], 101-point interpolated, the same numbers pycocotools' COCOeval gives (tested).
  Averages over nothing (no faces, no true positive) are NaN, written as null in JSON.
- 95% percentile-bootstrap intervals (images drawn with replacement) for the mean IoU and both APs:
  a dozen test frames cannot tell two detectors apart, and the intervals say so.

IoU uses continuous coordinates: area = (x2 - x1) * (y2 - y1), no "+1 pixel" (pycocotools'
bbox IoU does the same).

Natural frames are judged in the model's view: the frame's centre square (`frame_to_input`), with
the labelled box converted to that square by `geometry.box_in_square`, augmentation's visibility
and size rule (a face mostly outside the square, or too small, counts as "no face"). The Haar
cascade runs on the full frame and its detections are converted by the same rule. The cascade has no calibrated
score: its best face scores n / (n + 1), n = the number of merged raw detections (its usual
confidence), which ranks its detections for AP; for accuracy, precision, recall, F1 and mean IoU
any detection is a positive, whatever `threshold` the model is judged at.
"""

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from facetracker.annotations import labelled_frames
from facetracker.config import CLASS_NAME, SCORE_THRESHOLD, Paths, current_run_dir
from facetracker.fileio import atomic_write, load_labels, read_image
from facetracker.geometry import NO_BOX, Box, box_area, box_in_square, iou, normalise, shows_object
from facetracker.inference import Detector, frame_to_input
from facetracker.plots import plot_samples, save_figure
from facetracker.prelabel import best_face, haar_detector, haar_faces

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# COCO's thresholds, as pycocotools builds them.
IOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
BATCH = 32
REPORT_FILE = "evaluation.json"
GRID_FILE = "predictions.png"
RESAMPLES = 1000  # bootstrap draws for the intervals
CONFIDENCE = 0.95
HAAR_THRESHOLD = 0.5  # Haar scores are n / (n + 1) >= 0.5 for any detection: "found a face" is its positive


# ----------------------------------------------------------------------------- metrics (pure numpy)


class ClassificationMetrics(NamedTuple):
    """Face / no-face figures at one threshold."""

    accuracy: float
    precision: float
    recall: float
    f1: float


def _ratio(num: float, den: float) -> float:
    """num / den, and 0 for 0/0."""
    return float(num / den) if den else 0.0


def classification_metrics(y_true: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray,
                           threshold: float = SCORE_THRESHOLD) -> ClassificationMetrics:
    """Accuracy, precision, recall and F1 of `scores >= threshold` against y_true (1: object, 0: none).

    0/0 is 0: precision with no predicted positive, recall with no actual positive, F1 when both are 0.
    """
    truth = np.asarray(y_true, dtype=np.float64).reshape(-1) > 0.5
    predicted = shows_object(np.asarray(scores, dtype=np.float64).reshape(-1), threshold)
    if truth.size == 0 or truth.size != predicted.size:
        raise ValueError(f"need as many labels as scores, at least one: got {truth.size} and {predicted.size}")
    tp = float(np.sum(truth & predicted))
    precision = _ratio(tp, float(np.sum(predicted)))
    recall = _ratio(tp, float(np.sum(truth)))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ClassificationMetrics(float(np.mean(truth == predicted)), precision, recall, f1)


def _ground_truth(gt_boxes: Sequence[Box | None]) -> tuple[np.ndarray, np.ndarray]:
    """(has_object [N] bool, boxes [N, 4]) from boxes with None for images without the object."""
    has = np.array([b is not None for b in gt_boxes], dtype=bool)
    boxes = np.array([NO_BOX if b is None else b for b in gt_boxes], dtype=np.float64).reshape(-1, 4)
    return has, boxes


def mean_iou_true_positives(gt_boxes: Sequence[Box | None], pred_boxes: np.ndarray, pred_scores: np.ndarray,
                            threshold: float = SCORE_THRESHOLD) -> float:
    """Mean IoU over images with an object and `score >= threshold`; NaN when there are none."""
    has, truth = _ground_truth(gt_boxes)
    hits = has & shows_object(np.asarray(pred_scores, dtype=np.float64).reshape(-1), threshold)
    if not hits.any():
        return math.nan
    return float(np.mean(iou(truth[hits], np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)[hits])))


def _interpolated_ap(matched: np.ndarray, positives: int) -> float:
    """101-point interpolated AP of detections in score order (True: true positive), as COCOeval computes it."""
    tp = np.cumsum(matched, dtype=np.float64)
    fp = np.cumsum(~matched, dtype=np.float64)
    recall = tp / positives
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # precision envelope
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    padded = np.append(precision, 0.0)  # recall points never reached count 0
    return float(np.mean(padded[np.minimum(index, len(precision))]))


def average_precision(gt_boxes: Sequence[Box | None], pred_boxes: np.ndarray, pred_scores: np.ndarray,
                      iou_thresholds: Sequence[float] = (0.5,)) -> float:
    """COCO-style AP with one scored detection per image, averaged over the IoU thresholds.

    Args:
        gt_boxes: per image, the object's box or None (no object).
        pred_boxes: [N, 4] the detection of each image (same coordinates as gt_boxes).
        pred_scores: [N] its score. An image without a detection can pass score 0 and an empty box.
        iou_thresholds: (0.5,) for AP@0.5; IOU_THRESHOLDS for AP@[.5:.95].
    Returns:
        AP in [0, 1]; NaN when no image has the object (COCOeval's -1).
    """
    has, truth = _ground_truth(gt_boxes)
    if not has.any():
        return math.nan
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64).reshape(-1), kind="mergesort")
    overlap = iou(truth, np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4))
    aps = [_interpolated_ap((has & (overlap >= min(t, 1 - 1e-10)))[order], int(has.sum())) for t in iou_thresholds]
    return float(np.mean(aps))


# ----------------------------------------------------------------------------- report


def bootstrap_interval(statistic: Callable[[np.ndarray], float], count: int, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of `statistic` over `count` images.

    Args:
        statistic: takes an index array (images drawn with replacement) and returns the figure on them.
        count: images in the set.
        resamples: bootstrap draws.
        seed: the same seed gives the same interval.
    Returns:
        (low, high); (NaN, NaN) when no draw gives a finite figure.
    """
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, count, count)) for _ in range(resamples)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class SetMetrics:
    """One detector's figures on one set of images, with 95% bootstrap intervals for the box figures."""

    detector: str
    images_from: str
    images: int
    faces: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    mean_iou: float
    ap50: float
    ap50_95: float
    ms_per_image: float
    mean_iou_ci: tuple[float, float] = (math.nan, math.nan)
    ap50_ci: tuple[float, float] = (math.nan, math.nan)
    ap50_95_ci: tuple[float, float] = (math.nan, math.nan)


def score_set(detector: str, images_from: str, gt_boxes: Sequence[Box | None], scores: np.ndarray,
              boxes: np.ndarray, threshold: float, seconds: float, resamples: int = RESAMPLES) -> SetMetrics:
    """All figures of one detector's outputs on one set; `resamples=0` skips the intervals."""
    truth = list(gt_boxes)
    scores, boxes = np.asarray(scores, np.float64).reshape(-1), np.asarray(boxes, np.float64).reshape(-1, 4)
    box_figures = {
        "mean_iou": lambda i: mean_iou_true_positives([truth[k] for k in i], boxes[i], scores[i], threshold),
        "ap50": lambda i: average_precision([truth[k] for k in i], boxes[i], scores[i]),
        "ap50_95": lambda i: average_precision([truth[k] for k in i], boxes[i], scores[i], IOU_THRESHOLDS),
    }
    every = np.arange(len(truth))
    values = {name: figure(every) for name, figure in box_figures.items()}
    intervals = {f"{name}_ci": bootstrap_interval(figure, len(truth), resamples) if resamples else (math.nan,) * 2
                 for name, figure in box_figures.items()}
    cls = classification_metrics([b is not None for b in truth], scores, threshold)
    return SetMetrics(detector, images_from, len(truth), sum(b is not None for b in truth), *cls,
                      ms_per_image=1000 * seconds / max(len(truth), 1), **values, **intervals)


ROWS = (("images", "images", "d"), ("faces", "faces", "d"), ("accuracy", "accuracy", ".3f"),
        ("precision", "precision", ".3f"), ("recall", "recall", ".3f"), ("f1", "F1", ".3f"),
        ("mean_iou", "mean IoU (TP)", ".3f"), ("ap50", "AP@0.5", ".3f"), ("ap50_95", "AP@[.5:.95]", ".3f"),
        ("ms_per_image", "ms / image", ".1f"))
COLUMN = 20


def _cell(result: SetMetrics, key: str, spec: str) -> str:
    """A table cell, with its 95% interval when it has one; NaN shows as '-'."""
    value = getattr(result, key)
    if isinstance(value, float) and math.isnan(value):
        return "-"
    low, high = getattr(result, f"{key}_ci", (math.nan, math.nan))
    interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    return format(value, spec) + interval


@dataclass(frozen=True)
class EvalReport:
    """The model's and the Haar cascade's figures, side by side."""

    model: str
    split: str
    threshold: float
    results: tuple[SetMetrics, ...]
    notes: tuple[str, ...] = field(default=())

    def format(self) -> str:
        """A side-by-side table, one column per detector and image set."""
        heads = [(r.detector, r.images_from) for r in self.results]
        lines = [f"{self.model} on {self.split}, threshold {self.threshold} (95% bootstrap intervals in brackets)"]
        lines.append(f"{'':16}" + "".join(f"{d:>{COLUMN}}" for d, _ in heads))
        lines.append(f"{'':16}" + "".join(f"{s:>{COLUMN}}" for _, s in heads))
        for key, label, spec in ROWS:
            lines.append(f"{label:16}" + "".join(f"{_cell(r, key, spec):>{COLUMN}}" for r in self.results))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        clean = [{k: _json_value(v) for k, v in asdict(r).items()} for r in self.results]
        return {"model": self.model, "split": self.split, "threshold": self.threshold, "results": clean,
                "notes": list(self.notes)}

    def save(self, path: Path) -> Path:
        """Write the report as JSON."""
        atomic_write(path, json.dumps(self.to_dict(), indent=2).encode())
        return path


def _json_value(value: object) -> object:
    """NaN (alone or in an interval) as None, for JSON."""
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# ----------------------------------------------------------------------------- running the detectors


def predict_images(detector: Detector, images: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, float]:
    """Model (scores [N], boxes [N, 4] in the input square) for image files, and the seconds spent.

    The time covers preprocessing and the model (batches of BATCH), not reading the files.
    """
    detector.warm_up()
    scores, boxes, seconds = [], [], 0.0
    for start in range(0, len(images), BATCH):
        frames = [read_image(p) for p in images[start:start + BATCH]]
        tick = time.perf_counter()
        x = np.stack([frame_to_input(f, detector.size)[0] for f in frames])
        s, b = detector.predict(x)
        seconds += time.perf_counter() - tick
        scores.append(s)
        boxes.append(b)
    return np.concatenate(scores), np.concatenate(boxes).reshape(-1, 4), seconds


def haar_detection(cascade: cv2.CascadeClassifier, frame_bgr: np.ndarray) -> tuple[float, Box]:
    """The cascade's best face in the frame's centre square: (score, box in the square), or (0, NO_BOX).

    The cascade runs on the full frame; faces the visibility rule drops from the square are left out,
    and `prelabel.best_face` picks among the others. score = n / (n + 1), n its neighbours, so any
    detection scores above 0.5 and more support ranks higher for AP.
    """
    height, width = frame_bgr.shape[:2]
    in_square = []
    for (x1, y1, x2, y2), neighbours in haar_faces(cascade, frame_bgr):
        square = box_in_square(normalise((x1, y1, x2, y2), width, height), width, height)
        if square is not None:
            in_square.append((square, neighbours))
    best = best_face(in_square)
    if best is None:
        return 0.0, NO_BOX
    return best[1] / (best[1] + 1.0), best[0]


def haar_predictions(images: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, float]:
    """Haar (scores [N], boxes [N, 4] in the centre square) for image files, and the seconds spent detecting."""
    cascade = haar_detector()
    scores, boxes, seconds = [], [], 0.0
    for path in images:
        frame = read_image(path)
        tick = time.perf_counter()
        score, box = haar_detection(cascade, frame)
        seconds += time.perf_counter() - tick
        scores.append(score)
        boxes.append(box)
    return np.array(scores), np.array(boxes, dtype=np.float64).reshape(-1, 4), seconds


def augmented_set(paths: Paths, split: str) -> tuple[list[Path], list[Box | None]] | None:
    """The split's augmented samples (images, boxes or None), or None when there are none.

    A face cut to a sliver (class 1 without a box) is left out: the frames' rule calls it "no face", training
    calls it a face, so neither answer is wrong.
    """
    images_dir, labels_dir = paths.aug_images(split), paths.aug_labels(split)
    if not images_dir.is_dir() or not any(images_dir.iterdir()):
        return None
    files, classes, boxes = load_labels(labels_dir, images_dir)
    samples = [(Path(f), tuple(map(float, b)) if c[0] > 0.5 else None) for f, c, b in zip(files, classes, boxes,
                                                                                           strict=True)]
    kept = [(f, b) for f, b in samples if b is None or box_area(b) > 0]
    return [f for f, _ in kept], [b for _, b in kept]


def evaluate(paths: Paths, model_path: Path | str, split: str = "test", threshold: float = SCORE_THRESHOLD,
             class_name: str = CLASS_NAME, output: Path | None = None, detector: Detector | None = None,
             frames: Path | None = None) -> EvalReport:
    """Score the model on data/<split> and aug_data/<split>, and the Haar cascade on data/<split>.

    Args:
        paths: project folders.
        model_path: .keras, .tflite or SavedModel folder.
        split: which split's frames to use.
        threshold: score from which an image counts as showing the object.
        class_name: the labelme label; the Haar baseline runs only for "face".
        output: where to write the JSON report (default: the run folder the current model came from,
            else logs/evaluation.json).
        detector: the loaded model, to load and trace it once for several calls.
        frames: a folder holding images/ and labels/ (another session's data/) to score instead of the split.
    Returns:
        The report (also saved as JSON).
    """
    detector = detector or Detector.load(model_path)
    images_dir, labels_dir = (frames / "images", frames / "labels") if frames else (
        paths.split_images(split), paths.split_labels(split))
    samples, truth = labelled_frames(images_dir, labels_dir, class_name)
    images = [s.image for s in samples]
    scores, boxes, seconds = predict_images(detector, images)
    results = [score_set("model", "frames", truth, scores, boxes, threshold, seconds)]
    if class_name == "face":
        scores, boxes, seconds = haar_predictions(images)
        results.append(score_set("haar", "frames", truth, scores, boxes, HAAR_THRESHOLD, seconds))
    augmented = None if frames else augmented_set(paths, split)
    if augmented is not None:
        scores, boxes, seconds = predict_images(detector, augmented[0])
        results.append(score_set("model", "augmented", augmented[1], scores, boxes, threshold, seconds))
    cut = sum(1 for s, t in zip(samples, truth, strict=True) if s.box is not None and t is None)
    notes = (f"{cut} labelled face(s) lie mostly outside the centre square or are too small, and count as "
             "'no face'",) if cut else ()
    report = EvalReport(str(model_path), str(frames) if frames else split, threshold, tuple(results), notes)
    report.save(output or report_path(paths, model_path, REPORT_FILE, "frames" if frames else split))
    return report


def report_path(paths: Paths, model_path: Path | str, name: str, split: str = "test") -> Path:
    """Where a report on `model_path` goes: its training run's folder when known, else logs/.

    The test split's reports keep `name` (evaluation.json); another split's get a suffix (evaluation_val.json),
    so scoring the validation split never overwrites the test figures.
    """
    model_path = Path(model_path)
    if split != "test":
        name = f"{Path(name).stem}_{split}{Path(name).suffix}"
    if model_path.parent.parent == paths.train_runs:
        return model_path.parent / name  # a run's best.keras
    run = current_run_dir(paths)
    if run is not None and model_path.resolve() == paths.model.resolve():
        return run / name
    return paths.logs / name


def prediction_grid(paths: Paths, model_path: Path | str, split: str = "test", n: int = 12,
                    threshold: float = SCORE_THRESHOLD,
                    class_name: str = CLASS_NAME, ncols: int = 4, detector: Detector | None = None) -> "Figure":
    """A grid of the first `n` frames of a split as the model sees them: its box and score over the truth.

    Saved as a PNG next to the evaluation report (`report_path`); boxes scored under `threshold` are not drawn.
    """
    detector = detector or Detector.load(model_path)
    samples, truth = labelled_frames(paths.split_images(split), paths.split_labels(split), class_name)
    samples, truth = samples[:n], truth[:n]
    inputs = np.stack([frame_to_input(read_image(s.image), detector.size)[0] for s in samples])
    scores, boxes = detector.predict(inputs)
    gt = (np.array([[t is not None] for t in truth], np.float32), np.array([t or NO_BOX for t in truth], np.float32))
    figure = plot_samples(inputs, boxes, scores, ncols=ncols, truth=gt, threshold=threshold, class_name=class_name)
    save_figure(figure, report_path(paths, model_path, GRID_FILE, split))
    return figure
