"""Tests for facetracker.geometry: the frame <-> input square mapping, pure numpy."""

import subprocess
import sys

import numpy as np
import pytest

from facetracker.geometry import (
    box_to_frame,
    box_to_square,
    center_square,
    frame_box_to_input,
    frame_geometry,
    is_visible,
)

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
        square = frame_box_to_input((x1, y1, x2, y2), geo)
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
