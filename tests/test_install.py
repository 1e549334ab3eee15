"""The environment that `make venv` builds: an OpenCV that has Haar cascades and can open a window."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


def test_opencv_is_4x_with_haar_cascades():
    assert cv2.__version__.startswith("4."), cv2.__version__
    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    assert cascade.is_file()
    assert not cv2.CascadeClassifier(str(cascade)).empty()


def test_only_the_gui_build_of_opencv_is_installed():
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert "opencv-python" in installed
    assert "opencv-python-headless" not in installed, "run `make venv` (it removes the headless build)"


def test_imshow_opens_a_window_under_xvfb():
    if not shutil.which("xvfb-run"):
        if os.environ.get("CI"):
            pytest.fail("xvfb-run is missing: .ci/run installs the xvfb package")
        pytest.skip("xvfb-run not installed")
    script = (
        "import cv2, numpy as np\n"
        "cv2.namedWindow('facetracker'); cv2.imshow('facetracker', np.zeros((48, 64, 3), np.uint8))\n"
        "cv2.waitKey(1); cv2.destroyAllWindows(); print('window ok')\n"
    )
    result = subprocess.run(["xvfb-run", "-a", sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "window ok" in result.stdout
