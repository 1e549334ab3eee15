"""Tests for facetracker.geometry (pure numpy) and the frame <-> input square mapping of facetracker.inference."""

import subprocess
import sys

import numpy as np
import pytest

from facetracker.geometry import (
    MIN_SIDE,
    NO_BOX,
    box_in_square,
    box_to_square,
    center_square,
    clip_box,
    iou,
    is_visible,
    ordered,
    shows_object,
)
from facetracker.inference import FrameGeometry, box_to_frame, frame_geometry

SIZES = [(640, 480), (480, 640), (1280, 720), (300, 300), (101, 77)]


def test_geometry_of_a_webcam_frame():
    crop = frame_geometry(640, 480)
    assert (crop.x0, crop.y0, crop.side) == (80, 0, 480)
    assert box_to_frame((0.0, 0.0, 1.0, 1.0), crop) == (80, 0, 560, 480)
    assert box_to_frame((0.25, 0.5, 0.75, 1.0), crop) == (200, 240, 440, 480)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_box_round_trip(width, height):
    geo = frame_geometry(width, height)
    rng = np.random.default_rng(width * height)
    for _ in range(20):
        # A box inside the frame, in frame pixels, then into the input square and back.
        x1, x2 = sorted(rng.uniform(0, width, 2))
        y1, y2 = sorted(rng.uniform(0, height, 2))
        # Kept inside the centre square.
        x1, x2 = (geo.x0 + v * geo.side / width for v in (x1, x2))
        y1, y2 = (geo.y0 + v * geo.side / height for v in (y1, y2))
        corners = zip((x1, y1, x2, y2), (geo.x0, geo.y0) * 2, strict=True)
        square = tuple((v - offset) / geo.side for v, offset in corners)
        assert all(0.0 <= v <= 1.0 for v in square)
        np.testing.assert_allclose(box_to_frame(square, geo, rounded=False), (x1, y1, x2, y2), atol=1e-9)
        assert np.max(np.abs(np.subtract(box_to_frame(square, geo), (x1, y1, x2, y2)))) <= 0.5 + 1e-9


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_box_to_frame_clips_and_orders(width, height):
    x1, y1, x2, y2 = box_to_frame((1.2, 1.0, -0.3, 0.0), frame_geometry(width, height))
    assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def test_center_square_and_the_visibility_rule():
    assert center_square(640, 480) == (80, 0, 480) and center_square(480, 640) == (0, 80, 480)
    half_out = (40 / 640, 0.0, 120 / 640, 0.5)  # half of it in the left margin
    np.testing.assert_allclose(box_to_square(half_out, 640, 480), (0.0, 0.0, 40 / 480, 0.5))
    assert box_to_square(half_out, 640, 480, min_visibility=0.6) is None
    assert box_to_square((0.0, 0.2, 70 / 640, 0.4), 640, 480) is None  # all in the margin
    assert is_visible(30.0, 100.0, 0.3) and not is_visible(29.0, 100.0, 0.3) and not is_visible(0.0, 0.0, 0.0)


@pytest.mark.slow
def test_geometry_imports_nothing_heavy():
    code = "import sys, facetracker.geometry; print([m for m in ('cv2', 'tensorflow', 'keras') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_score_at_the_threshold_is_the_object_everywhere():
    """One rule, `score >= threshold`, for the figures, the drawn boxes and the decisions."""
    from matplotlib.patches import Rectangle

    from facetracker.inference import Detection
    from facetracker.plots import plot_samples
    from facetracker.realtime import draw_detection

    assert shows_object(0.5, 0.5) and not shows_object(0.4999, 0.5)
    np.testing.assert_array_equal(shows_object(np.array([0.2, 0.5, 0.7]), 0.5), [False, True, True])
    figure = plot_samples(np.zeros((2, 8, 8, 3)), np.array([[0.1, 0.1, 0.9, 0.9]] * 2), scores=[0.5, 0.4999],
                          threshold=0.5)
    assert sum(isinstance(p, Rectangle) for ax in figure.axes for p in ax.patches) == 1
    frame = np.zeros((48, 64, 3), np.uint8)
    draw_detection(frame, Detection(0.5, (10, 10, 30, 30), (0.0, 0.0, 0.5, 0.5)), "face", 0.5)
    assert frame.any()


def test_ordered_sorts_corners_and_iou_of_known_boxes():
    np.testing.assert_array_equal(ordered(np.array([[0.8, 0.9, 0.2, 0.1]])), [[0.2, 0.1, 0.8, 0.9]])
    assert iou((0, 0, 2, 2), (1, 1, 3, 3)) == 1 / 7 and iou(NO_BOX, NO_BOX) == 0.0



@pytest.mark.parametrize(("box_a", "box_b", "expected"), [
    ((0, 0, 10, 10), (20, 0, 30, 10), 0.0),  # apart along x only: a negative width must not count
    ((0, 0, 10, 10), (0, 20, 10, 30), 0.0),  # apart along y only
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # apart along both: two negative sides must not make an overlap
    ((0.0, 0.0, 0.5, 0.5), (0.25, 0.0, 0.75, 0.5), 1 / 3),  # fractions of the image: sides below 1
    ((0.0, 0.0, 0.5, 0.5), (0.0, 0.25, 0.5, 0.75), 1 / 3),
])
def test_iou_by_hand_for_boxes_apart_and_in_fractions(box_a, box_b, expected):
    assert iou(box_a, box_b) == pytest.approx(expected) and iou(box_b, box_a) == pytest.approx(expected)


def test_iou_of_two_boxes_is_a_float_and_of_arrays_an_array():
    one = iou((0, 0, 2, 2), (1, 1, 3, 3))
    assert type(one) is float
    many = iou(np.array([[0, 0, 2, 2], [0, 0, 1, 1]]), np.array([[1, 1, 3, 3], [2, 2, 3, 3]]))
    np.testing.assert_allclose(many, [1 / 7, 0.0])


def test_ordered_gives_floats_for_integer_pixel_boxes():
    flipped = ordered(np.array([[30, 40, 10, 20]]))
    assert flipped.dtype == np.float64
    np.testing.assert_array_equal(flipped, [[10.0, 20.0, 30.0, 40.0]])


@pytest.mark.parametrize(("box", "clipped"), [
    ((-20.0, 10.0, -10.0, 30.0), (0.0, 10.0, 0.0, 30.0)),  # wholly left of the image: no width left
    ((10.0, -20.0, 30.0, -10.0), (10.0, 0.0, 30.0, 0.0)),  # wholly above it: no height left
    ((-5.0, -5.0, 70.0, 50.0), (0.0, 0.0, 64.0, 48.0)),
])
def test_clip_box_by_hand(box, clipped):
    assert clip_box(box, 64, 48) == clipped


def test_frame_geometry_keeps_the_frame_size():
    assert frame_geometry(640, 480) == FrameGeometry(80, 0, 480, 640, 480)
    assert frame_geometry(480, 640) == FrameGeometry(0, 80, 480, 480, 640)


def test_box_to_frame_by_hand_on_a_portrait_frame():
    """480x640 (portrait): the square starts at y = 80; boxes are rounded to whole pixels unless asked not to."""
    geo = frame_geometry(480, 640)
    assert box_to_frame((0.0, 0.0, 0.5, 0.5), geo) == (0, 80, 240, 320)
    assert box_to_frame((-0.1, -0.2, 0.5, 1.3), geo) == (0, 80, 240, 560)  # clipped to the square first
    box = box_to_frame((155 / 480, 100 / 480, 305 / 480, 222.4 / 480), frame_geometry(640, 480))
    assert box == (235, 100, 385, 222) and all(type(v) is int for v in box)
    np.testing.assert_allclose(box_to_frame((155 / 480, 100 / 480, 305 / 480, 222.4 / 480), frame_geometry(640, 480),
                                            rounded=False), (235, 100, 385, 222.4))


def test_box_to_square_by_hand_on_a_portrait_frame():
    """A box of a 480x640 frame, (120, 160, 360, 320) px, is (120, 80, 360, 240) px of the square below y = 80."""
    np.testing.assert_allclose(box_to_square((0.25, 0.25, 0.75, 0.5), 480, 640), (0.25, 80 / 480, 0.75, 0.5))
    assert box_to_square((100 / 480, 10 / 640, 200 / 480, 60 / 640), 480, 640) is None  # above the square


def test_box_cut_by_the_right_edge_of_the_square():
    """(500, 100, 600, 200) px of a 640x480 frame: 60 of its 100 px width lie in the square (x < 560)."""
    box = (500 / 640, 100 / 480, 600 / 640, 200 / 480)
    np.testing.assert_allclose(box_to_square(box, 640, 480, min_visibility=0.6), (420 / 480, 100 / 480, 1.0, 200 / 480))
    assert box_to_square(box, 640, 480, min_visibility=0.61) is None


def test_the_size_rule_drops_thin_boxes():
    """box_in_square drops a face thinner than MIN_SIDE of the square in either direction, keeps one as wide."""
    assert box_in_square((0.3, 0.5, 0.6, 0.5 + 0.9 * MIN_SIDE * 480 / 480), 640, 480) is None  # too flat
    assert box_in_square((0.3, 0.5, 0.3 + 0.9 * MIN_SIDE * 480 / 640, 0.7), 640, 480) is None  # too narrow
    assert box_in_square((0.3, 0.5, 0.3 + 1.1 * MIN_SIDE * 480 / 640, 0.7), 640, 480) is not None
    assert is_visible(0.5, 1.0, 0.25)  # half a square pixel of a one-pixel face still counts
