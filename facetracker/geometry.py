"""Boxes and frame geometry, shared by labelling, augmentation, evaluation and real time: numpy only.

A `Box` is (x1, y1, x2, y2). The model sees a square: the centre square of a frame, as augmentation's
square crops showed it in training. These functions map boxes between frame pixels, boxes
normalised to the frame, and boxes normalised to that square, and hold the visibility rule that
decides when a cut face still counts as a face. They also hold what every user of boxes shares: the
empty "no face" box, IoU, corner order and the threshold rule that turns a score into a decision.
Numpy only, so `inference`, `evaluate` and `export`'s check use it without loading TensorFlow.
"""

from collections.abc import Sequence

import numpy as np

from facetracker.config import CROP_SIZE, FRAME_HEIGHT, SCORE_THRESHOLD

# A box as (x1, y1, x2, y2), x1 <= x2 and y1 <= y2.
Box = tuple[float, float, float, float]
PixelBox = tuple[int, int, int, int]
# The box of "no face": an image without the object is labelled, and scored, with it.
NO_BOX: Box = (0.0, 0.0, 0.0, 0.0)

# The visibility rule, shared by augmentation (a crop) and evaluation (a frame's centre square): a face
# counts while at least a quarter of its area shows and the visible part is at least MIN_BOX_PX wide and
# high; under it, the image is "no face".
MIN_VISIBILITY = 0.25
# Augmentation also labels a face cut to between a tenth and a quarter as a face, without a box (NO_BOX):
# the score head learns it, the box loss skips it. Taught "no face" up to the quarter, a model missed
# faces half out of the square on frames it had not seen.
LABEL_MIN_VISIBILITY = 0.1
MIN_BOX_PX = 20  # in a 450 px crop: about 5 px once resized to the 120 px network input
# MIN_BOX_PX as a share of the square: augmentation crops from frames scaled to this short side.
MIN_SIDE = MIN_BOX_PX / max(CROP_SIZE, FRAME_HEIGHT)


def clip_box(box: Box, width: int, height: int) -> Box:
    """A pixel box clipped to the image."""
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def box_area(box: Box) -> float:
    """The area of a box (0 for an empty or inverted one)."""
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def normalise(box_px: Box, width: int, height: int) -> Box:
    """A pixel box divided by the image size."""
    x1, y1, x2, y2 = box_px
    return (x1 / width, y1 / height, x2 / width, y2 / height)


def center_square(width: int, height: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the centred square of a frame: 640x480 -> (80, 0, 480)."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def is_visible(visible_area: float, box_area: float, min_visibility: float) -> bool:
    """The visibility rule: a cut box keeps its label while some, and at least `min_visibility`, of it shows."""
    return visible_area > 0.0 and visible_area >= min_visibility * box_area


def box_to_square(box_norm: Box, width: int, height: int, min_visibility: float = 0.0) -> Box | None:
    """A box normalised to the frame, re-normalised to the frame's centre square and clipped.

    Returns None (a negative) when no part of the box is inside the square, or less than
    `min_visibility` of its area.
    """
    x0, y0, side = center_square(width, height)
    x1, y1, x2, y2 = (
        box_norm[0] * width - x0,
        box_norm[1] * height - y0,
        box_norm[2] * width - x0,
        box_norm[3] * height - y0,
    )
    cx1, cy1, cx2, cy2 = (min(max(v, 0.0), float(side)) for v in (x1, y1, x2, y2))
    visible = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
    if not is_visible(visible, (x2 - x1) * (y2 - y1), min_visibility):
        return None
    return cx1 / side, cy1 / side, cx2 / side, cy2 / side


def box_in_square(box_norm: Box | None, width: int, height: int) -> Box | None:
    """A labelled box (normalised to the frame) in the frame's centre square, or None where augmentation's
    visibility rule would call the square "no face" (MIN_VISIBILITY of it inside, sides at least MIN_SIDE)."""
    if box_norm is None:
        return None
    box = box_to_square(box_norm, width, height, MIN_VISIBILITY)
    if box is None or min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
        return None
    return box


def shows_object(scores: float | np.ndarray, threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """The threshold rule, everywhere a score becomes a decision: a score of `threshold` or more is the object."""
    return np.asarray(scores) >= threshold


def ordered(boxes: np.ndarray) -> np.ndarray:
    """Boxes [..., 4] with their corners sorted to (x1, y1, x2, y2): a model's box may come out flipped."""
    boxes = np.asarray(boxes, dtype=np.float64)
    xs, ys = np.sort(boxes[..., [0, 2]], axis=-1), np.sort(boxes[..., [1, 3]], axis=-1)
    return np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], axis=-1)


def iou(box_a: Sequence[float] | np.ndarray, box_b: Sequence[float] | np.ndarray) -> float | np.ndarray:
    """Intersection over union of (x1, y1, x2, y2) boxes (continuous coordinates; broadcasts over [..., 4]).

    Two empty boxes have IoU 0. Written in numpy rather than taken from `keras.utils.bounding_boxes`, whose
    import loads TensorFlow: `evaluate` scores a `.tflite` model, and `export` compares boxes, without it
    (pycocotools' bbox IoU checks it in tests/test_evaluate.py).
    """
    a, b = np.asarray(box_a, dtype=np.float64), np.asarray(box_b, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = (np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
            + np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None))
    union = area - inter
    out = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return float(out) if out.ndim == 0 else out
