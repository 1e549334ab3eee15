"""Tests for facetracker.losses: values against numpy by hand, and the optimizer's decay."""

import keras
import numpy as np
import pytest

from facetracker.losses import (
    classification_loss,
    localization_loss,
    make_optimizer,
    masked_localization_loss,
    total_loss,
)

TRUE = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.9, 0.7]], np.float32)
PRED = np.array([[0.2, 0.1, 0.4, 0.8], [0.1, 0.2, 0.3, 0.5], [0.3, 0.4, 0.8, 0.9]], np.float32)
CLASSES = np.array([[1.0], [0.0], [1.0]], np.float32)


def by_hand(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-sample (x1 - x1')^2 + (y1 - y1')^2 + (w - w')^2 + (h - h')^2, written out."""
    out = []
    for t, p in zip(true, pred, strict=True):
        w, h, pw, ph = t[2] - t[0], t[3] - t[1], p[2] - p[0], p[3] - p[1]
        out.append((t[0] - p[0]) ** 2 + (t[1] - p[1]) ** 2 + (w - pw) ** 2 + (h - ph) ** 2)
    return np.array(out)


def test_localization_loss_is_the_tutorials_sum_over_the_batch() -> None:
    expected = by_hand(TRUE, PRED).sum()
    assert float(localization_loss(TRUE, PRED)) == pytest.approx(expected, rel=1e-6)
    # Sample 1: corner (0.1, 0.2) vs (0.2, 0.1) -> 0.02; size (0.4, 0.4) vs (0.2, 0.7) -> 0.04 + 0.09.
    assert by_hand(TRUE[:1], PRED[:1])[0] == pytest.approx(0.15, abs=1e-6)


def test_localization_loss_counts_negatives() -> None:
    assert float(localization_loss(TRUE[1:2], PRED[1:2])) == pytest.approx(0.01 + 0.04 + 0.04 + 0.09, rel=1e-5)


def test_masked_loss_sums_over_faces_only() -> None:
    expected = by_hand(TRUE, PRED)[[0, 2]].sum()
    assert float(masked_localization_loss(TRUE, PRED, CLASSES)) == pytest.approx(expected, rel=1e-6)
    assert float(masked_localization_loss(TRUE, PRED, np.zeros((3, 1), np.float32))) == 0.0


def test_masked_loss_leaves_out_a_face_without_a_box() -> None:
    """A face cut to a sliver is labelled class 1 with the empty box: the masked loss skips it, the tutorial's
    does not."""
    sliver = np.array([[1.0], [1.0], [1.0]], np.float32)  # sample 1 is a face, boxed [0, 0, 0, 0]
    expected = by_hand(TRUE, PRED)[[0, 2]].sum()
    assert float(masked_localization_loss(TRUE, PRED, sliver)) == pytest.approx(expected, rel=1e-6)
    assert float(localization_loss(TRUE, PRED)) == pytest.approx(by_hand(TRUE, PRED).sum(), rel=1e-6)


def test_losses_are_zero_for_a_perfect_box() -> None:
    assert float(localization_loss(TRUE, TRUE)) == 0.0


def test_total_is_box_plus_half_the_binary_cross_entropy() -> None:
    scores = np.array([[0.9], [0.2], [0.6]], np.float32)
    bce = -np.mean(CLASSES * np.log(scores) + (1 - CLASSES) * np.log(1 - scores))
    cls = float(classification_loss()(CLASSES, scores))
    assert cls == pytest.approx(bce, rel=1e-5)
    assert float(total_loss(localization_loss(TRUE, PRED), cls)) == pytest.approx(by_hand(TRUE, PRED).sum() + 0.5 * bce)


def test_learning_rate_is_75_percent_after_one_epoch() -> None:
    batches = 5
    optimizer = make_optimizer(batches, learning_rate=1e-3)
    weight = keras.Variable(np.ones(3, np.float32))
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    for _ in range(batches):
        optimizer.apply_gradients([(np.ones(3, np.float32), weight)])
    assert int(optimizer.iterations) == batches
    assert float(optimizer.learning_rate) == pytest.approx(0.75e-3, rel=1e-6)
    for _ in range(batches):
        optimizer.apply_gradients([(np.ones(3, np.float32), weight)])
    assert float(optimizer.learning_rate) == pytest.approx(1e-3 / (1 + 2 / 3), rel=1e-6)
