"""The environment that the README's commands build: one OpenCV build with Haar cascades, a clean
`pip check`, and a window that opens (drawn with PyQt5, since the one OpenCV build is headless)."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

OPENCV_BUILDS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def test_opencv_is_4x_with_haar_cascades():
    assert cv2.__version__.startswith("4."), cv2.__version__
    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    assert cascade.is_file()
    assert not cv2.CascadeClassifier(str(cascade)).empty()


def test_one_opencv_build_and_pip_check_is_clean():
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert [name for name in OPENCV_BUILDS if name in installed] == ["opencv-python-headless"]
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_frame_window_opens_under_xvfb():
    if not shutil.which("xvfb-run"):
        if os.environ.get("CI"):
            pytest.fail("xvfb-run is missing: .ci/run installs the xvfb package")
        pytest.skip("xvfb-run not installed")
    script = (
        "import numpy as np\n"
        "from facetracker.display import FrameWindow\n"
        "window = FrameWindow('facetracker')\n"
        "assert window.show(np.zeros((48, 64, 3), np.uint8))\n"
        "window.close(); print('window ok')\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "QT_QPA_PLATFORM"}
    result = subprocess.run(["xvfb-run", "-a", sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "window ok" in result.stdout
