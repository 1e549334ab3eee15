"""Windows on a real (virtual) X display: labelme from `facetracker annotate`, the `collect --preview`
window and the `detect` window.

Each test starts the real command through its entry point under Xvfb, waits for its window by title,
saves a screenshot of the screen into the test's tmp_path (printed, run with -s to see it), checks
that the window shows a picture and not a flat colour, and closes it. They need Xvfb, xdotool and
ImageMagick's `import` (.ci/run installs them); without them they are skipped, except on CI.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetracker.config import Paths
from facetracker.sample_data import make_sample_data, write_sample_video

pytestmark = [pytest.mark.slow, pytest.mark.gui]

TOOLS = ("Xvfb", "xdotool", "import")
WINDOW_TIMEOUT_S = 90  # starting TensorFlow or labelme on a busy 2-core machine
DETECT_FRAMES = 2000  # about 8 s of detect at 240 frames/s: time to find the window, screenshot it, press q


# Each pytest-xdist worker starts its X servers at display numbers of its own. With -displayfd both took the
# lowest free number, so one could start on the number of the other's server while that one still shut down;
# CI once saw a detect window that could not connect to its display (":0") that way.
DISPLAY_BASE = 100
DISPLAYS_PER_WORKER = 20
XVFB_START_S = 30


def display_numbers() -> range:
    """This xdist worker's display numbers (gw0: 100-119, gw1: 120-139, ...; without xdist, gw0's)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = DISPLAY_BASE + DISPLAYS_PER_WORKER * int(worker or 0)
    return range(base, base + DISPLAYS_PER_WORKER)


def serves_display(server: subprocess.Popen, number: int, env: dict[str, str]) -> bool:
    """Whether `server` (just started on `number`) owns that display and accepts clients, within XVFB_START_S."""
    deadline = time.monotonic() + XVFB_START_S
    lock = Path(f"/tmp/.X{number}-lock")  # the X server's lock holds its PID: another server's does not count
    while server.poll() is None and time.monotonic() < deadline:
        owner = lock.read_text().strip() if lock.is_file() else ""
        if owner == str(server.pid) and xdotool(env, "getdisplaygeometry"):
            return True
        time.sleep(0.1)
    return False


def x_display_env(display: str) -> dict[str, str]:
    """This process's environment with DISPLAY set to `display`, and nothing that would pick another platform."""
    env = {key: value for key, value in os.environ.items() if key not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, "DISPLAY": display}


@pytest.fixture
def x_env() -> Iterator[dict[str, str]]:
    """The environment of a fresh Xvfb display (DISPLAY set); the server stops after the test."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        reason = f"needs {', '.join(missing)}: apt-get install xvfb xauth xdotool imagemagick"
        if os.environ.get("CI"):
            pytest.fail(reason + " (.ci/run installs them)")
        pytest.skip(reason)
    tried = []
    for number in display_numbers():
        server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = x_display_env(f":{number}")
        if serves_display(server, number, env):
            break
        tried.append(f":{number} ({'exited ' + str(server.returncode) if server.poll() is not None else 'no answer'})")
        server.kill()
        server.wait(timeout=30)
    else:
        pytest.fail(f"no Xvfb display accepted clients: {', '.join(tried)}")
    try:
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def facetracker_command() -> list[str]:
    """The installed `facetracker` entry point next to this Python (as a user runs it)."""
    script = shutil.which("facetracker", path=str(Path(sys.executable).parent))
    assert script, f"no facetracker entry point next to {sys.executable}: install the package (make venv)"
    return [script]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a command in its own process group (labelme runs as a child), output into `log`."""
    with log.open("w") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Kill a started command and its children."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def xdotool(env: dict[str, str], *args: str) -> str:
    """Run xdotool on the test's display; its output ('' when it found nothing)."""
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=30).stdout.strip()


def wait_for_window(env: dict[str, str], title: str, process: subprocess.Popen, log: Path) -> str:
    """The X window id of the first visible window whose title matches `title` (a regex)."""
    deadline = time.monotonic() + WINDOW_TIMEOUT_S
    while time.monotonic() < deadline:
        found = xdotool(env, "search", "--onlyvisible", "--name", title)
        if found:
            return found.split()[0]
        if process.poll() is not None:
            output = log.read_text()[-3000:]
            pytest.fail(f"exited with {process.returncode} before a {title!r} window opened:\n{output}")
        time.sleep(0.2)
    pytest.fail(f"no {title!r} window within {WINDOW_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def window_pixels(env: dict[str, str], window: str, screenshot: Path) -> np.ndarray:
    """Screenshot the whole screen into `screenshot`; returns the window's part of it (BGR)."""
    subprocess.run(["import", "-window", "root", str(screenshot)], env=env, check=True, timeout=60)
    geometry = dict(line.split("=") for line in xdotool(env, "getwindowgeometry", "--shell", window).splitlines())
    if not geometry:  # the window has closed
        return np.zeros((0, 0, 3), np.uint8)
    x, y, width, height = (int(geometry[key]) for key in ("X", "Y", "WIDTH", "HEIGHT"))
    screen = cv2.imread(str(screenshot))
    return screen[max(y, 0) : y + height, max(x, 0) : x + width]


def wait_for_picture(env: dict[str, str], window: str, screenshot: Path, looks_right) -> np.ndarray:
    """Screenshot until the window's pixels satisfy `looks_right` (drawing may lag its mapping)."""
    deadline = time.monotonic() + 30
    while True:
        pixels = window_pixels(env, window, screenshot)
        if looks_right(pixels) or time.monotonic() > deadline:
            print(f"\nscreenshot: {screenshot}")
            return pixels
        time.sleep(0.5)


def video_frames(video: Path, count: int = 40) -> list[np.ndarray]:
    """The first `count` frames of a video file."""
    capture, frames = cv2.VideoCapture(str(video)), []
    while len(frames) < count and (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    assert frames, video
    return frames


def shows_video(frames: list[np.ndarray]):
    """A check: the window's pixels are one of `frames` (up to video coding and the drawn box and text)."""

    def check(pixels: np.ndarray) -> bool:
        if pixels.shape != frames[0].shape:
            return False
        return min(float(np.mean(cv2.absdiff(pixels, frame))) for frame in frames) < 25.0

    return check


def not_flat(pixels: np.ndarray) -> bool:
    """Whether an image shows something: many colours and real contrast."""
    return pixels.size > 0 and float(pixels.std()) > 20.0 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100


def press_q(env: dict[str, str], window: str) -> None:
    """Give the window the keyboard focus and type q (XTEST, as a real key press)."""
    xdotool(env, "windowfocus", "--sync", window)
    xdotool(env, "key", "q")


def test_annotate_opens_labelme_on_the_images(x_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_sample_data(Paths(root), count=3, seed=0)
    log = tmp_path / "annotate.log"
    process = start([*facetracker_command(), "--root", str(root), "annotate"], x_env, log)
    try:
        window = wait_for_window(x_env, "labelme", process, log)
        pixels = wait_for_picture(x_env, window, tmp_path / "labelme.png", not_flat)
        title = xdotool(x_env, "getwindowname", window)
    finally:
        stop(process)
    assert not_flat(pixels), f"labelme's window is blank: {tmp_path / 'labelme.png'}"
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400, pixels.shape
    assert re.search(r"\.jpg", title), f"labelme opened no image (title {title!r})"


def test_collect_preview_shows_the_frames_and_q_stops(x_env: dict[str, str], tmp_path: Path) -> None:
    video = write_sample_video(tmp_path / "camera.mp4", frames=40, fps=15)
    log = tmp_path / "collect.log"
    # A file:// URL is a live source: frames come `interval` seconds apart in real time, like a webcam.
    args = ["--root", str(tmp_path), "collect", "--source", video.as_uri(), "--count", "40", "--interval", "0.5"]
    process = start([*facetracker_command(), *args, "--preview"], x_env, log)
    try:
        window = wait_for_window(x_env, "FaceTracker collect", process, log)
        pixels = wait_for_picture(x_env, window, tmp_path / "collect.png", shows_video(video_frames(video)))
        press_q(x_env, window)
        code = process.wait(timeout=60)
    finally:
        stop(process)
    assert shows_video(video_frames(video))(pixels), f"the preview does not show the video: {tmp_path / 'collect.png'}"
    assert code == 0, log.read_text()[-3000:]
    saved = list((tmp_path / "data" / "images").glob("*.jpg"))
    assert 1 <= len(saved) < 40, f"q did not stop collect early ({len(saved)} frames saved)"


def write_long_video(path: Path, frames: int) -> Path:
    """A video of `frames` frames: the sample video's first 30, repeated (detect reads 200+ frames/s)."""
    short = write_sample_video(path.with_name("short.mp4"), frames=30, fps=15)
    capture, clip = cv2.VideoCapture(str(short)), []
    while (frame := capture.read()[1]) is not None:
        clip.append(frame)
    capture.release()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (clip[0].shape[1], clip[0].shape[0]))
    for index in range(frames):
        writer.write(clip[index % len(clip)])
    writer.release()
    return path


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real small detector (untrained), saved as .keras."""
    from facetracker.model import build_model

    path = tmp_path_factory.mktemp("model") / "facetracker.keras"
    build_model("small", 120, "none", 16).save(path)
    return path


def test_detect_window_shows_the_video_and_q_quits(x_env: dict[str, str], tmp_path: Path, small_model: Path) -> None:
    video = write_long_video(tmp_path / "camera.mp4", frames=DETECT_FRAMES)
    log = tmp_path / "detect.log"
    args = ["detect", "--source", str(video), "--model", str(small_model)]
    process = start([*facetracker_command(), *args], x_env, log)
    try:
        window = wait_for_window(x_env, "FaceTracker", process, log)
        pixels = wait_for_picture(x_env, window, tmp_path / "detect.png", shows_video(video_frames(video)))
        press_q(x_env, window)
        code = process.wait(timeout=60)
    finally:
        stop(process)
    assert shows_video(video_frames(video))(pixels), f"the window does not show the video: {tmp_path / 'detect.png'}"
    assert code == 0, log.read_text()[-3000:]
    frames = re.search(r"(\d+) frames", log.read_text())
    assert frames and int(frames.group(1)) < DETECT_FRAMES, f"q did not stop detect:\n{log.read_text()[-2000:]}"


def test_a_window_that_cannot_open_is_one_clear_error(tmp_path: Path, small_model: Path) -> None:
    video = write_sample_video(tmp_path / "camera.mp4", frames=10, fps=15)
    env = x_display_env(":97")  # set, but no X server there
    done = subprocess.run([*facetracker_command(), "detect", "--source", str(video), "--model", str(small_model)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("facetracker detect: error: the window could not open")
    assert "--no-display" in done.stderr


def test_notebook_loop_cell_shows_a_window_and_q_ends_it(x_env: dict[str, str], tmp_path: Path,
                                                         small_model: Path) -> None:
    """The notebook's real-time loop cell in a real kernel on a display: its window shows the video, q ends it."""
    import threading

    import nbformat
    from jupyter_client import KernelManager

    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "FaceDetection.ipynb", as_version=4)
    imports = next(c.source for c in notebook.cells if c.cell_type == "code" and "from facetracker import" in c.source)
    loop = next(c.source for c in notebook.cells if "loop" in c.metadata.get("tags", []))
    video = write_long_video(tmp_path / "camera.mp4", frames=DETECT_FRAMES)
    shutil.copy(small_model, Paths(tmp_path).model)
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path), env=x_env)
    kernel = manager.client()
    kernel.start_channels()
    printed, result = [], {}
    try:
        kernel.wait_for_ready(timeout=60)
        setup = (f"from pathlib import Path\nROOT = Path({str(tmp_path)!r})\nCLASS_NAME = 'face'\n"
                 f"camera = {str(video)!r}\n{imports}\npaths.logs.mkdir(parents=True, exist_ok=True)")
        assert kernel.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"

        def run_loop() -> None:
            result["reply"] = kernel.execute_interactive(
                loop.replace("MAX_FRAMES = 300", f"MAX_FRAMES = {DETECT_FRAMES}"), timeout=300,
                output_hook=lambda message: printed.append(message["content"].get("text", "")))

        running = threading.Thread(target=run_loop)
        running.start()
        deadline, window = time.monotonic() + WINDOW_TIMEOUT_S, ""
        while not window and time.monotonic() < deadline and running.is_alive():
            window = xdotool(x_env, "search", "--onlyvisible", "--name", "FaceTracker - q quits").split("\n")[0]
            time.sleep(0.2)
        assert window, f"no window opened: {''.join(printed)[-2000:]}"
        pixels = wait_for_picture(x_env, window, tmp_path / "loop.png", shows_video(video_frames(video)))
        press_q(x_env, window)
        running.join(timeout=120)
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    assert shows_video(video_frames(video))(pixels), f"the window does not show the video: {tmp_path / 'loop.png'}"
    assert result["reply"]["content"]["status"] == "ok", "".join(printed)[-2000:]
    frames = re.search(r"(\d+) frames,", "".join(printed))
    assert frames and 0 < int(frames.group(1)) < DETECT_FRAMES, f"q did not stop the loop: {''.join(printed)[-2000:]}"
