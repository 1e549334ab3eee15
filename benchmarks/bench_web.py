"""The web page (`facetracker export --format web`): ms per frame in Chromium next to Python LiteRT, same files.

Each model is exported by `facetracker.webpage.export_web` (a batch-1 `.tflite`, float32 and full int8
calibrated on the session's aug_data/train images), served by `facetracker.serve` on 127.0.0.1 and
opened in Debian's headless Chromium (Playwright, `executable_path`), where LiteRT.js runs it with its
`wasm` accelerator (XNNPack, one thread: the page is not cross-origin isolated, so no threaded build).
The page times itself (`window.facetracker.time`): "model" is one call on a fixed input, "preprocess"
turns a 640x480 frame into the model's input (centre square, area averaging to 120 px, in JavaScript).
Python runs the same `.tflite` files with LiteRT (`ai_edge_litert`) on one thread and on every core,
model call only. Browser and Python take turns, round after round. The small model is the
quick preset trained on the sample session; VGG16 has random weights (`--weights none`: speed does
not depend on them). The run also writes the README's screenshot, docs/web.png: the page on a fake
camera playing the sample video, with the trained small model.
"""

import os
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, augmented_session, fmt, log, stats, train_quick

SETTINGS = {True: {"per_image": 8, "epochs": 3, "calls": 10, "rounds": 2},
            False: {"per_image": 15, "epochs": 8, "calls": 30, "rounds": 3}}
BACKBONES = ("small", "vgg16")
QUANTIZE = ("none", "int8")
SCREENSHOT = REPO / "docs" / "web.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def model_file(backbone: str, root: Path, epochs: int) -> Path:
    """The .keras model: the trained quick preset for small, random weights for VGG16."""
    from facetracker.model import build_model

    if backbone == "small":
        return Path(train_quick(root, epochs)["model"])
    path = root / "models" / f"{backbone}.keras"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_model(backbone, weights="none").save(path)
    return path


def python_ms(tflite: Path, threads: int, calls: int) -> float:
    """Python LiteRT's ms per model call on one fixed input, after one warm-up call."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.full(detail["shape"], 0.5, np.float32))
    interpreter.invoke()
    tick = time.perf_counter()
    for _ in range(calls):
        interpreter.invoke()
    return 1000 * (time.perf_counter() - tick) / calls


def served(folder: Path):
    """`facetracker.serve`'s server for `folder` on a free port, in a thread; returns (server, URL)."""
    from facetracker.serve import make_server

    server = make_server(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/"


def open_page(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready", timeout=300_000)
    if page.get_attribute("body", "data-ready") != "model":
        raise RuntimeError(f"{url}: {page.text_content('#status')}")
    return page


def screenshot(browser_type, folder: Path, video: Path) -> None:
    """docs/web.png: the page on a fake camera that plays `video`, once boxes have been drawn."""
    from facetracker.sample_data import video_to_y4m

    y4m = video_to_y4m(video, Path(tempfile.mkdtemp()) / "camera.y4m")
    server, url = served(folder)
    browser = browser_type.launch(executable_path="/usr/bin/chromium", args=[
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}"])
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 720})
        page.goto(url)
        page.wait_for_function("Number(document.querySelector('#view').dataset.boxes || 0) >= 10", timeout=300_000)
        page.evaluate("window.facetracker.holdOnBox()")
        page.wait_for_function("document.querySelector('#view').dataset.held === '1'", timeout=60_000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        log(f"screenshot {SCREENSHOT}")
    finally:
        browser.close()
        server.shutdown()


def run(quick: bool) -> dict:
    """Export each backbone as float32 and int8 pages; time them in Chromium and in Python LiteRT."""
    from playwright.sync_api import sync_playwright

    from facetracker.config import Paths
    from facetracker.export import calibration_images
    from facetracker.sample_data import write_sample_video
    from facetracker.webpage import export_web

    cfg = SETTINGS[quick]
    root = augmented_session(cfg["per_image"])
    pages = {}
    for backbone in BACKBONES:
        keras_path = model_file(backbone, root, cfg["epochs"])
        representative = calibration_images(Paths(root).aug_images("train"), 120)
        for kind in QUANTIZE:
            export = export_web(keras_path, root / "web" / f"{backbone}_{kind}", quantize=kind,
                                representative=representative if kind == "int8" else None)
            pages[(backbone, kind)] = export
            log(f"{backbone} {kind}: {export.model.stat().st_size / 1e6:.1f} MB")
    threads = os.cpu_count() or 1
    times = {key: {"page model": [], "page preprocess": [], "Python 1 thread": [], f"Python {threads} threads": []}
             for key in pages}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        servers = {key: served(export.folder) for key, export in pages.items()}
        opened = {key: open_page(browser, url) for key, (_, url) in servers.items()}
        for round_index in range(cfg["rounds"]):
            for key, page in opened.items():
                calls = cfg["calls"] if key[0] == "small" else max(cfg["calls"] // 3, 3)
                row = times[key]
                row["page model"].append(page.evaluate(f"window.facetracker.time({calls}, 'model')"))
                row["page preprocess"].append(page.evaluate(f"window.facetracker.time({calls}, 'preprocess')"))
                row["Python 1 thread"].append(python_ms(pages[key].model, 1, calls))
                row[f"Python {threads} threads"].append(python_ms(pages[key].model, threads, calls))
            latest = {key: (row["page model"][-1], row["Python 1 thread"][-1]) for key, row in times.items()}
            log(f"round {round_index + 1}/{cfg['rounds']}: "
                + ", ".join(f"{b} {k} page {web:.1f} / Python {py:.1f} ms" for (b, k), (web, py) in latest.items()))
        version = browser.version
        browser.close()
        for server, _ in servers.values():
            server.shutdown()
        video = write_sample_video(Path(tempfile.mkdtemp()) / "camera.mp4", frames=60, fps=15, seed=1)
        screenshot(playwright.chromium, pages[("small", "none")].folder, video)
    columns = list(next(iter(times.values())))
    rows = [{"backbone": b, "quantize": k, "size_mb": pages[(b, k)].model.stat().st_size / 1e6,
             **{name: stats(values) for name, values in times[(b, k)].items()}} for b, k in pages]
    table = [[r["backbone"] + ("" if r["backbone"] == "small" else " (random weights)"), r["quantize"],
              f"{r['size_mb']:.2f}", *(fmt(r[c]) for c in columns),
              f"{r['page model']['median'] / r['Python 1 thread']['median']:.2f}x"] for r in rows]
    findings = []
    for r in rows:
        web, python, prep = (r[c]["median"] for c in ("page model", "Python 1 thread", "page preprocess"))
        findings.append(f"{r['backbone']} {r['quantize']}: the page's model call takes {web / python:.2f}x Python "
                        f"LiteRT's on one thread ({web:.1f} vs {python:.1f} ms); the page's preprocessing of a "
                        f"640x480 frame takes {prep:.1f} ms.")
    return {
        "title": "The web page: LiteRT.js (wasm) in Chromium against Python LiteRT",
        "tables": [{
            "caption": f"ms per call, median (min-max) of {cfg['rounds']} rounds of up to {cfg['calls']} calls; "
                       f"{version}, LiteRT.js {pages[('small', 'none')].runtime}.",
            "columns": ["model", "quantize", "file MB", *(f"{c} ms" for c in columns), "page / Python 1 thread"],
            "rows": table,
        }],
        "findings": findings,
        "rows": rows,
        "chromium": version,
        "screenshot": str(SCREENSHOT.relative_to(REPO)),
    }
