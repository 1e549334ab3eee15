"""Tests for facetracker.evaluate: metrics (checked against pycocotools), the report, prelabelling."""

import contextlib
import io
import json
import math
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tiny_model import tiny_model_file

from facetracker.annotations import haar_detector, write_labelme
from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.evaluate import (
    IOU_THRESHOLDS,
    average_precision,
    classification_metrics,
    evaluate,
    haar_detection,
    iou,
    mean_iou_true_positives,
    prediction_grid,
    prelabel_with_model,
)

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
    frame, _ = portrait_frame()
    score, box = haar_detection(haar_detector(), frame)
    assert score > 0.5
    assert all(0.0 <= v <= 1.0 for v in box) and box[2] > box[0] and box[3] > box[1]
    assert haar_detection(haar_detector(), np.full((480, 640, 3), 90, np.uint8)) == (0.0, (0.0, 0.0, 0.0, 0.0))


def make_project(root: Path) -> Paths:
    """data/test with 3 face frames and 1 empty one, aug_data/test with 3 samples, and a tiny model."""
    paths = Paths(root)
    paths.split_images("test").mkdir(parents=True)
    for i, (x, y) in enumerate([(160, 40), (200, 100), (120, 60)]):
        frame, box = portrait_frame(x, y)
        image = paths.split_images("test") / f"frame{i}.jpg"
        cv2.imwrite(str(image), frame)
        write_labelme(paths.split_labels("test") / f"frame{i}.json", image, box, 640, 480)
    cv2.imwrite(str(paths.split_images("test") / "empty.jpg"), np.full((480, 640, 3), 90, np.uint8))
    paths.aug_images("test").mkdir(parents=True)
    paths.aug_labels("test").mkdir(parents=True)
    for k, (cls, bbox) in enumerate([(1, [0.2, 0.2, 0.6, 0.7]), (0, [0, 0, 0, 0]), (1, [0.1, 0.3, 0.5, 0.9])]):
        cv2.imwrite(str(paths.aug_images("test") / f"frame0.{k}.jpg"), np.full((450, 450, 3), 40 * k, np.uint8))
        label = {"image": "frame0.jpg", "bbox": bbox, "class": cls}
        (paths.aug_labels("test") / f"frame0.{k}.json").write_text(json.dumps(label))
    tiny_model_file(root)
    return paths


def test_evaluate_reports_model_haar_and_augmented(tmp_path):
    paths = make_project(tmp_path)
    report = evaluate(paths, tmp_path / "tiny.keras", threshold=0.5)
    assert [(r.detector, r.images_from, r.images, r.faces) for r in report.results] == [
        ("model", "frames", 4, 3), ("haar", "frames", 4, 3), ("model", "augmented", 3, 2)]
    haar = report.results[1]
    assert haar.recall == 1.0 and haar.accuracy == 1.0 and haar.mean_iou > 0.3  # the cascade finds the portraits
    saved = json.loads((paths.logs / "evaluation.json").read_text())
    assert saved["results"][2]["images"] == 3 and saved["threshold"] == 0.5
    table = report.format()
    assert "AP@[.5:.95]" in table and "haar" in table and "augmented" in table


def test_evaluate_errors_name_the_problem(tmp_path):
    paths = make_project(tmp_path)
    with pytest.raises(FaceTrackerError, match="missing.keras"):
        evaluate(paths, tmp_path / "missing.keras")
    with pytest.raises(FaceTrackerError, match="split"):
        evaluate(paths, tmp_path / "tiny.keras", split="val")


def test_prediction_grid_writes_png(tmp_path):
    paths = make_project(tmp_path)
    figure = prediction_grid(paths, tmp_path / "tiny.keras", n=3, threshold=0.0, ncols=3)
    png = paths.logs / "predictions.png"
    assert png.stat().st_size > 1000 and cv2.imread(str(png)) is not None
    assert len(figure.axes) == 3


def test_prelabel_never_overwrites_and_writes_boxes(tmp_path):
    paths = make_project(tmp_path)
    paths.images.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(paths.images / f"img{i}.jpg"), portrait_frame(100 + 40 * i)[0])
    existing = paths.labels / "img1.json"
    existing.parent.mkdir(parents=True)
    existing.write_text('{"hand": "made"}')
    written = prelabel_with_model(paths, tmp_path / "tiny.keras", threshold=0.0)
    assert sorted(p.name for p in written) == ["img0.json", "img2.json"]
    assert existing.read_text() == '{"hand": "made"}'
    label = json.loads(written[0].read_text())
    (x1, y1), (x2, y2) = label["shapes"][0]["points"]
    assert label["shapes"][0]["label"] == "face" and 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 480
    assert prelabel_with_model(paths, tmp_path / "tiny.keras", threshold=0.0) == []  # nothing left to propose


def test_prelabel_below_threshold_writes_nothing(tmp_path):
    paths = make_project(tmp_path)
    paths.images.mkdir(parents=True)
    cv2.imwrite(str(paths.images / "img.jpg"), portrait_frame()[0])
    assert prelabel_with_model(paths, tmp_path / "tiny.keras", threshold=1.01) == []
    assert not paths.labels.exists()
