"""Helpers for the web page tests: the page served by `facetracker serve`, Debian's Chromium driven by Playwright.

Nothing downloads a browser: Playwright starts /usr/bin/chromium (`executable_path`). The page's camera is
Chromium's fake device, fed from a .y4m file (`sample_data.video_to_y4m`) when one is given.
"""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

ENTRY_POINT = Path(sys.executable).with_name("facetracker")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def missing() -> str | None:
    """Why the page cannot be tested here (no Chromium, or the runtime not installed by `npm ci`), or None."""
    from facetracker.errors import FaceTrackerError
    from facetracker.webpage import runtime_folder

    if not CHROMIUM.is_file():
        return f"{CHROMIUM} not found: install Debian's chromium package (.ci/run does)"
    try:
        runtime_folder()
    except FaceTrackerError as error:
        return str(error)
    return None


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`facetracker serve FOLDER --port 0` running; yields the URL it prints; Ctrl+C (SIGINT) at the end."""
    server = subprocess.Popen([str(ENTRY_POINT), "serve", str(folder), "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert " at http://127.0.0.1:" in line, (line, server.stderr.read() if server.poll() is not None else "")
        yield line.split(" at ")[1].split()[0]
    finally:
        server.send_signal(2)
        server.wait(timeout=30)


@contextmanager
def chromium(*args: str) -> Iterator[object]:
    """A headless Chromium (Playwright's Browser) with the extra command-line `args`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *args])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: object, url: str, requests: list[str] | None = None) -> object:
    """A new page at `url`, waiting until the model loaded or the page showed an error; logs request URLs."""
    page = browser.new_page()
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready", timeout=120_000)
    return page


def blue_pixels(png: bytes) -> int:
    """How many pixels of a screenshot are the box's blue (BGR 255, 0, 0)."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return int(np.sum((image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)))
