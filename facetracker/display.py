"""The window that shows video frames (the collect preview and the live detector).

OpenCV is installed as its headless build only, the one albumentations requires, so there is one
OpenCV, `pip check` is clean, and no second Qt inside cv2 breaks labelme's window on Linux. The
frames are drawn with PyQt5 (labelme needs it anyway) in a small helper process: PyQt5 showing a
window in the same process as TensorFlow crashed at exit (`free(): invalid pointer`), and a
separate process also keeps a slow window from slowing the detector.

The helper reads frames from its stdin (a 12-byte header: height, width, channels; then the BGR
bytes) and writes "quit" to its stdout when the user presses q or closes the window.
"""

import contextlib
import importlib.util
import os
import struct
import subprocess
import sys
import threading

import numpy as np

from facetracker.errors import FaceTrackerError

HEADER = struct.Struct("<III")
QUIT = b"quit\n"


def display_available() -> bool:
    """Whether a window can open: Windows, macOS, or an X11/Wayland display."""
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return False
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def gui_available() -> bool:
    """Whether the window toolkit (PyQt5) is installed."""
    return importlib.util.find_spec("PyQt5") is not None


class FrameWindow:
    """A window showing BGR frames; `show` says whether to go on (False after q or a closed window)."""

    def __init__(self, title: str) -> None:
        """Start the helper process that draws the window (it appears with the first frame)."""
        self._process = subprocess.Popen([sys.executable, "-m", "facetracker.display", title],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._quit = threading.Event()
        self._failed = False
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        """Wait for the helper's "quit", or its end without one (it could not open the window)."""
        self._failed = self._process.stdout.readline() != QUIT
        self._quit.set()

    def show(self, frame: np.ndarray) -> bool:
        """Send one BGR (or grey) frame; False once the user pressed q or closed the window.

        Raises:
            FaceTrackerError: when the window could not open (Qt's reason is printed above).
        """
        if self._quit.is_set():
            self._raise_if_failed()
            return False
        frame = np.ascontiguousarray(frame if frame.ndim == 3 else frame[:, :, None].repeat(3, axis=2))
        try:
            self._process.stdin.write(HEADER.pack(*frame.shape) + frame.tobytes())
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._quit.wait(timeout=5)
            self._raise_if_failed()
            return False
        return not self._quit.is_set()

    def _raise_if_failed(self) -> None:
        if self._failed and self._process.wait(timeout=10) != 0:
            raise FaceTrackerError("the window could not open (Qt's message is above): check the display, or run "
                                   "without a window (--no-display, or --no-preview for collect)")

    def close(self) -> None:
        """Close the window and end the helper."""
        with contextlib.suppress(OSError):  # the helper may be gone already
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> "FrameWindow":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_frames(stream, latest: list, done: threading.Event) -> None:
    """Helper process: keep the newest frame from `stream` in `latest[0]`; set `done` at the end."""
    while header := stream.read(HEADER.size):
        if len(header) < HEADER.size:
            break
        height, width, channels = HEADER.unpack(header)
        data = stream.read(height * width * channels)
        if len(data) < height * width * channels:
            break
        latest[0] = np.frombuffer(data, np.uint8).reshape(height, width, channels)
    done.set()


def run_window(title: str) -> None:
    """Helper process: show the frames arriving on stdin until it closes, q is pressed or the window is closed."""
    from PyQt5 import QtCore, QtGui, QtWidgets

    app = QtWidgets.QApplication([title])
    label = QtWidgets.QLabel()
    label.setWindowTitle(title)
    latest, done = [None], threading.Event()
    threading.Thread(target=read_frames, args=(sys.stdin.buffer, latest, done), daemon=True).start()

    def quit_window() -> None:
        sys.stdout.buffer.write(QUIT)
        sys.stdout.flush()
        app.quit()

    QtWidgets.QShortcut(QtGui.QKeySequence("Q"), label).activated.connect(quit_window)
    app.lastWindowClosed.connect(quit_window)
    shown = [None]

    def draw() -> None:
        frame = latest[0]
        if frame is not None and frame is not shown[0]:
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            height, width = rgb.shape[:2]
            image = QtGui.QImage(rgb.data, width, height, 3 * width, QtGui.QImage.Format_RGB888)
            label.setPixmap(QtGui.QPixmap.fromImage(image))  # fromImage copies the pixels
            if shown[0] is None:
                label.resize(width, height)
                label.show()
            shown[0] = frame
        if done.is_set():
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(draw)
    timer.start(10)
    app.exec_()


if __name__ == "__main__":
    run_window(sys.argv[1] if len(sys.argv) > 1 else "FaceTracker")
