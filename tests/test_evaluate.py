"""Tests for facetracker.evaluate: metrics (checked against pycocotools), the report, prelabelling."""

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from conftest import CONSTANT_BOX, save_with_labelme
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.evaluate import (
    COLUMN,
    IOU_THRESHOLDS,
    average_precision,
    bootstrap_interval,
    classification_metrics,
    evaluate,
    haar_detection,
    iou,
    mean_iou_true_positives,
    prediction_grid,
    score_set,
)
from facetracker.geometry import MIN_SIDE, box_in_square
from facetracker.prelabel import haar_detector, prelabel_with_model

PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


# ----------------------------------------------------------------------------- helpers


def xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_ap(gt_boxes, pred_boxes, pred_scores) -> tuple[float, float]:
    """(AP@0.5, AP@[.5:.95]) from pycocotools' COCOeval, one detection per image; NaN for its -1."""
    images = [{"id": i + 1, "width": 1000, "height": 1000} for i in range(len(gt_boxes))]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": xywh(b), "iscrowd": 0,
             "area": xywh(b)[2] * xywh(b)[3]} for i, b in enumerate(gt_boxes) if b is not None]
    dets = [{"image_id": i + 1, "category_id": 1, "bbox": xywh(b), "score": float(s)}
            for i, (b, s) in enumerate(zip(pred_boxes, pred_scores, strict=True))]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50 = evaluator.stats[0], evaluator.stats[1]
    return (math.nan if ap50 < 0 else ap50), (math.nan if ap < 0 else ap)


def ours(gt_boxes, pred_boxes, pred_scores) -> tuple[float, float]:
    return (average_precision(gt_boxes, pred_boxes, pred_scores),
            average_precision(gt_boxes, pred_boxes, pred_scores, IOU_THRESHOLDS))


def assert_same(a: tuple[float, float], b: tuple[float, float]) -> None:
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=1e-12, equal_nan=True)


def random_case(seed: int, n: int = 40, negatives: float = 0.3):
    """Ground truth (some None) and noisy predictions whose IoUs spread over all COCO thresholds."""
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for _ in range(n):
        x1, y1 = rng.uniform(0, 500, 2)
        w, h = rng.uniform(20, 300, 2)
        box = np.array([x1, y1, x1 + w, y1 + h])
        noise = rng.normal(0, rng.uniform(0.01, 0.4), 4) * np.array([w, h, w, h])
        p = box + noise
        pred.append([min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]), max(p[1], p[3])])
        gt.append(None if rng.random() < negatives else tuple(box))
    return gt, np.array(pred), rng.random(n)


# ----------------------------------------------------------------------------- IoU


def test_iou_known_values():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no area
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    np.testing.assert_allclose(iou(np.array([[0, 0, 10, 10], [0, 0, 4, 4]]), np.array([0, 0, 10, 10])), [1.0, 0.16])


def test_iou_matches_pycocotools_without_plus_one():
    a, b = (10.0, 20.0, 50.0, 80.0), (30.0, 10.0, 90.0, 60.0)
    expected = mask_utils.iou([xywh(a)], [xywh(b)], [0])[0, 0]
    assert iou(a, b) == pytest.approx(expected, abs=1e-12)
    # With the "+1 pixel" convention the value would differ noticeably.
    plus_one = (21 * 41) / (41 * 61 + 61 * 51 - 21 * 41)
    assert abs(iou(a, b) - plus_one) > 1e-3


# ----------------------------------------------------------------------------- classification


def test_classification_metrics_counts():
    # tp=2 (0.9, 0.6), fp=1 (0.7), fn=1 (0.2), tn=2
    metrics = classification_metrics([1, 1, 1, 0, 0, 0], [0.9, 0.6, 0.2, 0.7, 0.1, 0.4], threshold=0.5)
    assert metrics.accuracy == pytest.approx(4 / 6)
    assert metrics.precision == pytest.approx(2 / 3)
    assert metrics.recall == pytest.approx(2 / 3)
    assert metrics.f1 == pytest.approx(2 / 3)


def test_classification_threshold_is_inclusive():
    assert classification_metrics([1], [0.5], threshold=0.5).recall == 1.0
    assert classification_metrics([1], [0.4999], threshold=0.5).recall == 0.0


def test_classification_no_predicted_positive_gives_zero_precision():
    metrics = classification_metrics([1, 0, 1], [0.1, 0.2, 0.3], threshold=0.5)
    assert (metrics.precision, metrics.recall, metrics.f1) == (0.0, 0.0, 0.0)
    assert metrics.accuracy == pytest.approx(1 / 3)


def test_classification_all_negatives_gives_zero_recall():
    metrics = classification_metrics([0, 0, 0, 0], [0.1, 0.9, 0.2, 0.3], threshold=0.5)
    assert metrics.recall == 0.0 and metrics.precision == 0.0 and metrics.f1 == 0.0
    assert metrics.accuracy == pytest.approx(3 / 4)
    assert classification_metrics([0, 0], [0.1, 0.2]).accuracy == 1.0


def test_classification_rejects_empty_or_mismatched():
    with pytest.raises(ValueError):
        classification_metrics([], [])
    with pytest.raises(ValueError):
        classification_metrics([1, 0], [0.5])


def test_mean_iou_true_positives():
    gt = [(0, 0, 10, 10), (0, 0, 10, 10), None, (0, 0, 10, 10)]
    pred = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 5, 5], [0, 0, 10, 10]])
    scores = np.array([0.9, 0.8, 0.9, 0.1])  # last one is a miss, third a false positive: both ignored
    assert mean_iou_true_positives(gt, pred, scores, 0.5) == pytest.approx((1 + 1 / 3) / 2)
    assert math.isnan(mean_iou_true_positives(gt, pred, np.zeros(4), 0.5))


# ----------------------------------------------------------------------------- average precision


def test_ap_hand_computed():
    # Ranked: TP, FP, TP with 2 faces -> precision 1 up to recall 0.5, 2/3 up to recall 1.
    gt = [(0, 0, 10, 10), None, (0, 0, 10, 10)]
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert average_precision(gt, pred, np.array([0.9, 0.8, 0.7])) == pytest.approx(expected)


def test_ap_no_positives_is_nan_like_cocoeval():
    gt = [None, None, None]
    pred, scores = np.array([[0, 0, 10, 10]] * 3), np.array([0.9, 0.5, 0.1])
    assert all(math.isnan(v) for v in ours(gt, pred, scores))
    assert_same(ours(gt, pred, scores), coco_ap(gt, pred, scores))


def test_ap_perfect_boxes_is_one():
    gt = [(10, 10, 50, 60), (0, 0, 30, 30), None]
    pred, scores = np.array([[10, 10, 50, 60], [0, 0, 30, 30], [5, 5, 9, 9]]), np.array([0.9, 0.8, 0.1])
    assert ours(gt, pred, scores) == (1.0, 1.0)
    assert_same(ours(gt, pred, scores), coco_ap(gt, pred, scores))


def test_ap_disjoint_boxes_is_zero():
    gt = [(0, 0, 10, 10), (0, 0, 10, 10)]
    pred, scores = np.array([[20, 20, 30, 30], [50, 50, 60, 60]]), np.array([0.9, 0.8])
    assert ours(gt, pred, scores) == (0.0, 0.0)
    assert_same(ours(gt, pred, scores), coco_ap(gt, pred, scores))


def test_ap_negatives_ranked_first_lower_precision():
    gt = [None, (0, 0, 10, 10)]
    pred, scores = np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.1])
    assert ours(gt, pred, scores)[0] == pytest.approx(0.5)
    assert_same(ours(gt, pred, scores), coco_ap(gt, pred, scores))


@pytest.mark.parametrize("seed", range(6))
def test_ap_matches_pycocotools_on_random_cases(seed):
    gt, pred, scores = random_case(seed)
    result = ours(gt, pred, scores)
    assert 0.0 < result[1] < result[0] < 1.0  # a real spread, not a trivial case
    assert_same(result, coco_ap(gt, pred, scores))


def test_ap_matches_pycocotools_with_tied_and_zero_scores():
    gt, pred, _ = random_case(7, n=30)
    scores = np.round(np.random.default_rng(7).random(30), 1)  # many ties
    pred[::5] = 0.0  # "no detection": empty box, score 0
    scores[::5] = 0.0
    assert_same(ours(gt, pred, scores), coco_ap(gt, pred, scores))


# ----------------------------------------------------------------------------- Haar, report, grid, prelabel


def portrait_frame(x: int = 160, y: int = 40, width: int = 640, height: int = 480) -> tuple[np.ndarray, tuple]:
    """A frame with the matplotlib portrait (resized to 300x352) pasted at (x, y); its face box in pixels."""
    frame = np.full((height, width, 3), 90, np.uint8)
    face = cv2.resize(cv2.imread(str(PORTRAIT)), (300, 352))
    frame[y:y + 352, x:x + 300] = face[: height - y, : width - x]
    return frame, (x + 75, y + 60, x + 225, y + 230)


def test_haar_finds_the_portrait_face():
    """Pinned: OpenCV 4's cascade finds the portrait's face at (242, 95, 388, 241) px of the frame with 22
    neighbours; its score is 22 / 23 and its box is that box in the centre square (x - 80, / 480)."""
    frame, _ = portrait_frame()
    score, box = haar_detection(haar_detector(), frame)
    assert score == pytest.approx(22 / 23)
    np.testing.assert_allclose(box, ((242 - 80) / 480, 95 / 480, (388 - 80) / 480, 241 / 480), atol=1e-9)
    assert haar_detection(haar_detector(), np.full((480, 640, 3), 90, np.uint8)) == (0.0, (0.0, 0.0, 0.0, 0.0))


FACES = [(160, 40), (200, 100), (120, 60)]  # where portrait_frame pastes the portrait in frame0..2


def make_project(root: Path, model: Path, class_name: str = "face") -> Paths:
    """data/test with 3 frames showing a `class_name` (labels saved by labelme) and 1 empty one, aug_data/test
    with 3 samples.

    The model is copied to root/model.keras.
    """
    paths = Paths(root)
    paths.split_images("test").mkdir(parents=True)
    paths.split_labels("test").mkdir(parents=True)
    for i, (x, y) in enumerate(FACES):
        frame, (x1, y1, x2, y2) = portrait_frame(x, y)
        image = paths.split_images("test") / f"frame{i}.jpg"
        cv2.imwrite(str(image), frame)
        save_with_labelme(paths.split_labels("test") / f"frame{i}.json", image, [(x2, y2), (x1, y1)], class_name)
    cv2.imwrite(str(paths.split_images("test") / "empty.jpg"), np.full((480, 640, 3), 90, np.uint8))
    paths.aug_images("test").mkdir(parents=True)
    paths.aug_labels("test").mkdir(parents=True)
    for k, (cls, bbox) in enumerate(AUGMENTED):
        cv2.imwrite(str(paths.aug_images("test") / f"frame0.{k}.jpg"), np.full((450, 450, 3), 40 * k, np.uint8))
        label = {"image": "frame0.jpg", "bbox": bbox, "class": cls}
        (paths.aug_labels("test") / f"frame0.{k}.json").write_text(json.dumps(label))
    (root / "model.keras").write_bytes(model.read_bytes())
    return paths


# The last crop is a face cut to a sliver (class 1, no box): left out of the augmented scores.
AUGMENTED = [(1, [0.2, 0.2, 0.6, 0.7]), (0, [0, 0, 0, 0]), (1, [0.1, 0.3, 0.5, 0.9]), (1, [0, 0, 0, 0])]


@pytest.mark.slow
def test_evaluate_reports_model_haar_and_augmented(tmp_path, constant_model):
    paths = make_project(tmp_path, constant_model)
    report = evaluate(paths, tmp_path / "model.keras", threshold=0.5)
    assert [(r.detector, r.images_from, r.images, r.faces) for r in report.results] == [
        ("model", "frames", 4, 3), ("haar", "frames", 4, 3), ("model", "augmented", 3, 2)]
    haar = report.results[1]
    assert haar.recall == 1.0 and haar.accuracy == 1.0 and haar.mean_iou > 0.3  # the cascade finds the portraits
    saved = json.loads((paths.logs / "evaluation.json").read_text())
    assert saved["results"][2]["images"] == 3 and saved["threshold"] == 0.5
    table = report.format()
    assert "AP@[.5:.95]" in table and "haar" in table and "augmented" in table


@pytest.mark.slow
def test_scoring_another_split_keeps_the_test_report(tmp_path, constant_model):
    """`evaluate --split val` writes evaluation_val.json and predictions_val.png beside the test split's files."""
    import shutil

    paths = make_project(tmp_path, constant_model)
    shutil.copytree(paths.data / "test", paths.data / "val")
    shutil.copytree(paths.aug_data / "test", paths.aug_data / "val")
    model = tmp_path / "model.keras"
    evaluate(paths, model, threshold=0.5)
    prediction_grid(paths, model, n=2)
    test_report = (paths.logs / "evaluation.json").read_bytes()
    test_grid = (paths.logs / "predictions.png").read_bytes()
    evaluate(paths, model, split="val", threshold=0.9)
    prediction_grid(paths, model, split="val", n=3, threshold=0.9)
    assert (paths.logs / "evaluation.json").read_bytes() == test_report
    assert (paths.logs / "predictions.png").read_bytes() == test_grid
    saved = json.loads((paths.logs / "evaluation_val.json").read_text())
    assert (saved["split"], saved["threshold"]) == ("val", 0.9)
    assert cv2.imread(str(paths.logs / "predictions_val.png")) is not None


@pytest.mark.slow
def test_model_rows_match_hand_computed_metrics(tmp_path, constant_model):
    """Every figure of both model rows, worked out by hand for the constant model."""
    paths = make_project(tmp_path, constant_model)
    frames, _, augmented = evaluate(paths, tmp_path / "model.keras", threshold=0.5).results
    # Frames, in file order (ties keep it, as in pycocotools): empty, frame0, frame1, frame2. All four score
    # 0.8 >= 0.5: 3 true positives, 1 false positive (empty), no miss.
    assert (frames.accuracy, frames.precision, frames.recall) == pytest.approx((3 / 4, 3 / 4, 1.0))
    assert frames.f1 == pytest.approx(2 * 0.75 / 1.75)
    box_area, face_area = 150 * 122.4, 150 * 170
    iou0 = box_area / face_area  # 0.72: the box lies inside frame0's face
    iou1 = 110 * 62.4 / (box_area + face_area - 110 * 62.4)  # overlap x 195..305, y 160..222.4: 0.186
    iou2 = 110 * 102.4 / (box_area + face_area - 110 * 102.4)  # overlap x 155..265, y 120..222.4: 0.346
    assert frames.mean_iou == pytest.approx((iou0 + iou1 + iou2) / 3, abs=1e-5)
    # AP@t: ranked empty (FP), frame0 (TP while t <= 0.72), frame1, frame2 (FP): precision 1/2 at recall 1/3,
    # so 34 of the 101 recall points (0, 0.01, ..., 0.33) get 1/2, the rest 0. At t >= 0.75 nothing matches.
    assert frames.ap50 == pytest.approx(34 * 0.5 / 101)
    assert frames.ap50_95 == pytest.approx(5 / 10 * 34 * 0.5 / 101)  # t = 0.5 .. 0.7 of 0.5 .. 0.95
    # Augmented: the same box in [0, 1] of the crop; A = (0.2, 0.2, 0.6, 0.7), B = (0.1, 0.3, 0.5, 0.9).
    assert (augmented.accuracy, augmented.precision, augmented.recall) == pytest.approx((2 / 3, 2 / 3, 1.0))
    x1, y1, x2, y2 = CONSTANT_BOX
    area = (x2 - x1) * (y2 - y1)
    inter_a = (0.6 - x1) * (y2 - y1)  # the box is inside A vertically
    inter_b = (0.5 - x1) * (y2 - 0.3)
    iou_a = inter_a / (area + 0.4 * 0.5 - inter_a)  # 0.338
    iou_b = inter_b / (area + 0.4 * 0.6 - inter_b)  # 0.099
    assert augmented.mean_iou == pytest.approx((iou_a + iou_b) / 2, abs=1e-5)
    assert augmented.ap50 == 0.0 and augmented.ap50_95 == 0.0  # no IoU reaches 0.5


@pytest.mark.slow
def test_evaluate_threshold_moves_the_face_figures(tmp_path, constant_model):
    """At a threshold above the constant score no image is a positive: recall 0, mean IoU undefined."""
    paths = make_project(tmp_path, constant_model)
    frames = evaluate(paths, tmp_path / "model.keras", threshold=0.9).results[0]
    assert (frames.accuracy, frames.precision, frames.recall, frames.f1) == (1 / 4, 0.0, 0.0, 0.0)
    assert math.isnan(frames.mean_iou)
    assert frames.ap50 == pytest.approx(34 * 0.5 / 101)  # AP ranks by score: no threshold


@pytest.mark.slow
def test_evaluate_errors_name_the_problem(tmp_path, constant_model):
    paths = make_project(tmp_path, constant_model)
    with pytest.raises(FaceTrackerError, match="missing.keras"):
        evaluate(paths, tmp_path / "missing.keras")
    with pytest.raises(FaceTrackerError, match="split"):
        evaluate(paths, tmp_path / "model.keras", split="val")


@pytest.mark.slow
def test_prediction_grid_writes_png(tmp_path, constant_model):
    paths = make_project(tmp_path, constant_model)
    figure = prediction_grid(paths, tmp_path / "model.keras", n=3, threshold=0.0, ncols=3)
    png = paths.logs / "predictions.png"
    assert png.stat().st_size > 1000 and cv2.imread(str(png)) is not None
    assert len(figure.axes) == 3


@pytest.mark.slow
def test_prelabel_never_overwrites_and_writes_boxes(tmp_path, constant_model):
    paths = make_project(tmp_path, constant_model)
    paths.images.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(paths.images / f"img{i}.jpg"), portrait_frame(100 + 40 * i)[0])
    existing = paths.labels / "img1.json"
    existing.parent.mkdir(parents=True)
    existing.write_text('{"hand": "made"}')
    written = prelabel_with_model(paths, tmp_path / "model.keras", threshold=0.5)
    assert sorted(p.name for p in written) == ["img0.json", "img2.json"]
    assert existing.read_text() == '{"hand": "made"}'
    label = json.loads(written[0].read_text())
    assert label["shapes"][0]["label"] == "face"
    # The constant box in frame pixels: the centre square starts at x = 80; 222.4 rounds to 222.
    assert label["shapes"][0]["points"] == [[235.0, 100.0], [385.0, 222.0]]
    assert prelabel_with_model(paths, tmp_path / "model.keras", threshold=0.5) == []  # nothing left to propose


@pytest.mark.slow
def test_prelabel_below_threshold_writes_nothing(tmp_path, constant_model):
    paths = make_project(tmp_path, constant_model)
    paths.images.mkdir(parents=True)
    cv2.imwrite(str(paths.images / "img.jpg"), portrait_frame()[0])
    assert prelabel_with_model(paths, tmp_path / "model.keras", threshold=0.81) == []  # scored 0.8
    assert not paths.labels.exists()
    assert [p.name for p in prelabel_with_model(paths, tmp_path / "model.keras", threshold=0.79)] == ["img.json"]


# Haar's boxes on make_project's frames (pinned: OpenCV 4's cascade, after JPEG) and the faces, in pixels of
# the 480 px centre square (x - 80); frame0 and frame2 score 24 / 25 (24 neighbours), frame1 20 / 21.
HAAR_BOXES_PX = [(162, 96, 306, 240), (208, 160, 343, 295), (129, 120, 262, 253)]
FACES_PX = [(155, 100, 305, 270), (195, 160, 345, 330), (115, 120, 265, 290)]


def iou_by_hand(a: tuple, b: tuple) -> float:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.slow
def test_evaluate_command_prints_and_saves_hand_computed_figures(tmp_path, constant_model):
    """`facetracker evaluate --frames DIR --output FILE` through the installed entry point: every figure of the
    model's column is worked out by hand for the constant model (see test_model_rows_match_hand_computed_metrics),
    Haar's from its pinned boxes."""
    paths = make_project(tmp_path / "project", constant_model)
    session = tmp_path / "other-session"  # another session's data/: images/ and labels/
    shutil.copytree(paths.split_images("test").parent, session)
    shutil.rmtree(paths.split_images("test").parent)
    output = tmp_path / "reports" / "session.json"
    command = Path(sys.executable).with_name("facetracker")
    argv = [str(command)] if command.is_file() else [sys.executable, "-m", "facetracker.cli"]
    done = subprocess.run([*argv, "--root", str(paths.root), "evaluate", "--model", str(paths.root / "model.keras"),
                           "--frames", str(session), "--output", str(output)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (paths.logs / "evaluation.json").exists() and not (paths.logs / "predictions.png").exists()
    saved = json.loads(output.read_text())
    assert saved["split"] == str(session) and [r["detector"] for r in saved["results"]] == ["model", "haar"]
    model, haar = saved["results"]  # no augmented column: --frames has no crops
    iou0 = 150 * 122.4 / (150 * 170)
    iou1 = 110 * 62.4 / (150 * 122.4 + 150 * 170 - 110 * 62.4)
    iou2 = 110 * 102.4 / (150 * 122.4 + 150 * 170 - 110 * 102.4)
    expected_model = {"images": 4, "faces": 3, "accuracy": 0.75, "precision": 0.75, "recall": 1.0, "f1": 6 / 7,
                      "mean_iou": (iou0 + iou1 + iou2) / 3, "ap50": 34 * 0.5 / 101, "ap50_95": 5 / 10 * 34 * 0.5 / 101}
    haar_ious = [iou_by_hand(h, f) for h, f in zip(HAAR_BOXES_PX, FACES_PX, strict=True)]  # 0.764, 0.715, 0.694
    # Haar finds the three faces (scores above 0.5) and nothing on the empty frame. Ranked frame0, frame2 (tied,
    # file order), frame1: AP is 1 for t = 0.5 .. 0.65; at 0.7 frame2 misses (precision 1 up to recall 1/3, 2/3
    # up to 2/3: (34 + 33 * 2/3) / 101); at 0.75 only frame0 matches (34 / 101); from 0.8 nothing does.
    expected_haar = {"images": 4, "faces": 3, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                     "mean_iou": sum(haar_ious) / 3, "ap50": 1.0, "ap50_95": (4 + 56 / 101 + 34 / 101) / 10}
    for got, want in ((model, expected_model), (haar, expected_haar)):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-5), (got["detector"], key)
    rows = {line[:16].strip(): [line[i:i + COLUMN].split()[0] for i in range(16, len(line), COLUMN)]
            for line in done.stdout.splitlines()[1:]}  # one column per detector, each value then its interval
    assert rows["images"] == ["4", "4"] and rows["faces"] == ["3", "3"]
    assert rows["accuracy"] == ["0.750", "1.000"] and rows["recall"] == ["1.000", "1.000"]
    assert rows["AP@0.5"] == [f"{34 * 0.5 / 101:.3f}", "1.000"]


@pytest.mark.slow
def test_scoring_a_tflite_model_imports_no_tensorflow(sample_root, small_model_file, tmp_path):
    """`facetracker evaluate --model x.tflite` reads augmented labels and runs LiteRT: TensorFlow stays unloaded."""
    from facetracker.export import export_model
    from facetracker.split import split_dataset

    litert = subprocess.run([sys.executable, "-c", "import ai_edge_litert.interpreter"], capture_output=True)
    if litert.returncode != 0:
        pytest.skip("ai_edge_litert is not installed: the TFLite run falls back on tf.lite (TensorFlow loaded)")
    paths = Paths(sample_root)
    split_dataset(paths)
    tflite = export_model(small_model_file, fmt="tflite", out_dir=tmp_path)
    code = (
        "import json, sys\n"
        "from facetracker.cli import main\n"
        f"status = main(['--root', {str(sample_root)!r}, 'evaluate', '--model', {str(tflite)!r}, '--grid', '2'])\n"
        "print(json.dumps([status, [m for m in ('tensorflow', 'keras', 'albumentations') if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    status, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert (status, loaded) == (0, []), done.stderr[-2000:]
    saved = json.loads((paths.logs / "evaluation.json").read_text())
    test_frames = len(list(paths.split_images("test").iterdir()))
    assert saved["model"] == str(tflite) and saved["results"][0]["images"] == test_frames


def test_metrics_take_column_arrays_and_their_own_threshold() -> None:
    """As evaluate passes them: [N, 1] labels and scores from the model, a threshold other than 0.5."""
    labels, scores = np.array([[1.0], [1.0], [0.0], [0.0]]), np.array([[0.95], [0.8], [0.92], [0.1]])
    # At 0.9 the detector says yes to images 1 and 3: one right of two said, one found of two there.
    assert classification_metrics(labels, scores, threshold=0.9) == (0.5, 0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="need as many labels as scores, at least one: got 4 and 3"):
        classification_metrics(labels, scores[:3])

    truth = [(0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0), None]
    boxes = np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    # Only image 1 scores 0.9 or more and has a face; its box covers half of it: IoU 0.5.
    assert mean_iou_true_positives(truth, boxes, np.array([[0.95], [0.6], [0.99]]), threshold=0.9) == 0.5


def test_a_box_at_exactly_the_iou_threshold_counts_as_found() -> None:
    truth = [(0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0)]
    half = np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0]])  # IoU exactly 0.5 (0.5 / 1)
    assert average_precision(truth, half, np.array([[0.9], [0.8]]), (0.5,)) == 1.0
    assert average_precision(truth, half, np.array([[0.9], [0.8]]), (0.55,)) == 0.0
    # Detections are taken by score: the missed box (0.9) comes first, so precision is 1/2 at recall 1/2
    # (recall points 0 to 0.5, 51 of 101) and nothing past it.
    one_missed = np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert average_precision(truth, one_missed, np.array([[0.8], [0.9]]), (0.5,)) == pytest.approx(51 * 0.5 / 101)


# ----------------------------------------------------------------------------- intervals and the size rule


def test_bootstrap_interval_is_the_middle_95_percent_of_finite_draws() -> None:
    # For a mean, the 95% interval is about the mean +- 1.96 standard errors.
    values = np.random.default_rng(1).normal(0.0, 1.0, 400)
    low, high = bootstrap_interval(lambda i: float(np.mean(values[i])), len(values))
    assert (high - low) / 2 == pytest.approx(1.96 * values.std() / np.sqrt(len(values)), rel=0.15)
    assert low < float(np.mean(values)) < high
    # The first index drawn is uniform over 0..999: its 2.5th and 97.5th percentiles are about 25 and 975.
    low, high = bootstrap_interval(lambda i: float(i[0]), 1000, resamples=20000)
    assert low == pytest.approx(25, abs=5) and high == pytest.approx(975, abs=5)
    # Draws that give no figure are left out, not counted as 0.
    assert bootstrap_interval(lambda i: math.nan if i[0] < 500 else 1.0, 1000, resamples=200) == (1.0, 1.0)
    figure = lambda i: float(np.mean(i))  # noqa: E731 - the mean index of a draw
    assert bootstrap_interval(figure, 50, seed=3) == bootstrap_interval(figure, 50, seed=3)
    assert bootstrap_interval(figure, 50, seed=3) != bootstrap_interval(figure, 50, seed=4)
    assert all(math.isnan(v) for v in bootstrap_interval(lambda i: math.nan, 5))
    assert bootstrap_interval(lambda i: float(i.sum()), 1, resamples=10) == (0.0, 0.0)  # one image: index 0


@pytest.mark.slow  # over 3 s on 2 cores
def test_bootstrap_interval_brackets_the_figure_and_narrows_with_more_images() -> None:
    rng = np.random.default_rng(0)

    def interval(count: int) -> tuple[float, float, float]:
        truth = [(0.2, 0.2, 0.6, 0.6)] * count
        boxes = np.array(truth) + rng.normal(0, 0.05, (count, 4))
        scores = rng.uniform(0.5, 1.0, count)
        metrics = score_set("model", "frames", truth, scores, boxes, 0.5, 0.0)
        return metrics.mean_iou, *metrics.mean_iou_ci

    value, low, high = interval(20)
    assert low < value < high
    value_many, low_many, high_many = interval(500)
    assert low_many < value_many < high_many and high_many - low_many < (high - low) / 2


def test_ground_truth_drops_faces_augmentation_would_drop(tmp_path: Path) -> None:
    def truth_in_square(box_px: tuple[float, float, float, float] | None) -> tuple | None:
        if box_px is None:
            return box_in_square(None, 640, 480)
        x1, y1, x2, y2 = box_px
        return box_in_square((x1 / 640, y1 / 480, x2 / 640, y2 / 480), 640, 480)

    side = MIN_SIDE * 480  # the smallest face side augmentation keeps, in pixels of a 640x480 frame
    assert truth_in_square((200, 100, 200 + side + 1, 100 + side + 1)) is not None
    assert truth_in_square((200, 100, 200 + side - 1, 300)) is None  # too narrow
    assert truth_in_square((0, 100, 100, 300)) is None  # a fifth of it in the centre square
    assert truth_in_square((0, 100, 110, 300)) is not None  # 27% of it in the centre square
    assert truth_in_square(None) is None
