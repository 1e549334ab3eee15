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


@pytest.mark.slow  # a fresh Python: pip
def test_one_opencv_build_and_pip_check_is_clean():
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert [name for name in OPENCV_BUILDS if name in installed] == ["opencv-python-headless"]
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # a fresh Python under Xvfb, and the window's helper process
def test_a_frame_window_opens_under_xvfb():
    """The window really appears on the display (found by its title), and its helper process is still running:
    a helper that crashes on start must fail this test, not pass it."""
    missing = [tool for tool in ("xvfb-run", "xdotool") if not shutil.which(tool)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing: .ci/run installs the xvfb and xdotool packages")
        pytest.skip(f"{', '.join(missing)} not installed")
    script = (
        "import subprocess, time\n"
        "import numpy as np\n"
        "from facetracker.display import FrameWindow\n"
        "window = FrameWindow('facetracker install check')\n"
        "deadline = time.monotonic() + 60\n"
        "while True:\n"
        "    assert window.show(np.zeros((48, 64, 3), np.uint8)), 'the window helper ended'\n"
        "    found = subprocess.run(['xdotool', 'search', '--name', 'facetracker install check'],\n"
        "                           capture_output=True, text=True).stdout.split()\n"
        "    if found:\n"
        "        break\n"
        "    assert window._process.poll() is None, 'the window helper exited'\n"
        "    assert time.monotonic() < deadline, 'no window on the display after 60 s'\n"
        "    time.sleep(0.2)\n"
        "assert window._process.poll() is None, 'the window helper exited'\n"
        "window.close(); print('window ok')\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "QT_QPA_PLATFORM"}
    result = subprocess.run(["xvfb-run", "-a", sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "window ok" in result.stdout
