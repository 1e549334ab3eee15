"""The detector in the browser: `facetracker export --format web` writes a static page that runs it.

The folder it writes (default `export/web/`) works offline and loads nothing from another host:

- `index.html`, `app.js`, `style.css`: the page (sources in `facetracker/web/`). It runs the model on
  the webcam and on image files with LiteRT.js (wasm), preprocessing as `inference.frame_to_input` does;
- `<model>.tflite`: the model with a fixed batch of one frame (LiteRT.js refuses an open batch);
- `model.json`: what the page must know: input size, class name, threshold, and which output is the
  score and which the box (TFLite orders them box first, so the page picks them by name and shape);
- `vendor/litertjs/`: the LiteRT.js runtime, copied from `facetracker/web/node_modules`, where `npm ci`
  installs the versions that `package-lock.json` pins after checking their integrity hashes. Only what
  the page loads is copied: the two ES modules and the two wasm builds the runtime picks from
  (relaxed-SIMD, and the compatible one for browsers without it; the threaded and JSPI builds are
  never asked for).

The page's own scripts, stylesheet and the runtime's modules carry Subresource Integrity hashes, so a
changed file is refused by the browser. `facetracker serve` (`facetracker.serve`) serves the folder.
"""

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetracker.config import CLASS_NAME, SCORE_THRESHOLD
from facetracker.errors import FaceTrackerError
from facetracker.fileio import atomic_copy, atomic_write

PAGE_SOURCE = Path(__file__).parent / "web"
PAGE_FILES = ("app.js", "style.css")
RUNTIME_PACKAGES = ("@litertjs/core", "@litertjs/wasm-utils")
# Vendored file (below the export folder) <- file of the npm package (below node_modules).
RUNTIME_FILES = {
    "vendor/litertjs/core/index.js": "@litertjs/core/dist/index.js",
    "vendor/litertjs/wasm-utils/index.js": "@litertjs/wasm-utils/dist/index.js",
    **{f"vendor/litertjs/wasm/{name}": f"@litertjs/core/wasm/{name}"
       for stem in ("litert_wasm_internal", "litert_wasm_compat_internal") for name in (f"{stem}.js", f"{stem}.wasm")},
}
IMPORT_MAP = {"@litertjs/core": "./vendor/litertjs/core/index.js",
              "@litertjs/wasm-utils": "./vendor/litertjs/wasm-utils/index.js"}
CONFIG_FILE = "model.json"


@dataclass(frozen=True)
class WebExport:
    """What `export_web` wrote."""

    folder: Path
    model: Path  # the batch-1 .tflite inside `folder`
    runtime: str  # "@litertjs/core 2.5.3"

    def format(self) -> str:
        """One line for the CLI."""
        megabytes = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file()) / 1e6
        return (f"exported the web page to {self.folder} ({megabytes:.1f} MB: index.html, {self.model.name}, "
                f"{CONFIG_FILE}, {self.runtime}); open it with: facetracker serve {self.folder}")


def pinned_versions(source: Path | None = None) -> dict[str, str]:
    """The runtime packages' versions that package-lock.json (in `source`, default PAGE_SOURCE) pins."""
    source = source or PAGE_SOURCE
    lock = json.loads((source / "package-lock.json").read_text())
    return {name: lock["packages"][f"node_modules/{name}"]["version"] for name in RUNTIME_PACKAGES}


def runtime_folder(source: Path | None = None) -> Path:
    """node_modules below `source` (default PAGE_SOURCE), checked to hold the pinned runtime; one line when not."""
    source = source or PAGE_SOURCE
    modules = source / "node_modules"
    fix = (f"run `npm ci` in {source} (it installs the LiteRT.js version package-lock.json pins and checks "
           "its integrity hashes), then export again")
    for name, version in pinned_versions(source).items():
        manifest = modules / name / "package.json"
        if not manifest.is_file():
            raise FaceTrackerError(f"the page's runtime {name} is not installed in {modules}: {fix}.")
        installed = json.loads(manifest.read_text()).get("version")
        if installed != version:
            raise FaceTrackerError(f"{manifest} is version {installed}, package-lock.json pins {version}: {fix}.")
    missing = [file for file in RUNTIME_FILES.values() if not (modules / file).is_file()]
    if missing:
        raise FaceTrackerError(f"{modules / missing[0]} is missing: {fix}.")
    return modules


def integrity(path: Path) -> str:
    """The Subresource Integrity value of a file (sha384)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def output_names(tflite: Path) -> dict[str, dict]:
    """Which output of a .tflite file is the score [1, 1] and which the box [1, 4]: signature name and shape."""
    from facetracker.inference import tflite_interpreter

    runner = tflite_interpreter(tflite).get_signature_runner()
    found = {}
    for name, detail in runner.get_output_details().items():
        shape = [int(v) for v in detail["shape"]]
        kind = {1: "score", 4: "box"}.get(int(np.prod(shape)))
        if kind:
            found[kind] = {"name": name, "shape": shape}
    if set(found) != {"score", "box"}:
        raise FaceTrackerError(f"model {tflite} has no score [1, 1] and box [1, 4] outputs; "
                               "use a model saved by facetracker train.")
    return found


def page_config(tflite: Path, size: int, class_name: str, threshold: float, quantize: str) -> dict:
    """The content of model.json."""
    runtime = " ".join(f"{name} {version}" for name, version in pinned_versions().items())
    return {"model": tflite.name, "input_size": size, "class_name": class_name, "threshold": threshold,
            "quantize": quantize, "outputs": output_names(tflite), "runtime": runtime}


def write_page(folder: Path, modules: Path) -> None:
    """Copy the page and the runtime files into `folder`; index.html gets the import map and SRI hashes."""
    for relative, source in RUNTIME_FILES.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(modules / source, target)
    for name in PAGE_FILES:
        atomic_copy(PAGE_SOURCE / name, folder / name)
    import_map = {"imports": IMPORT_MAP,
                  "integrity": {url: integrity(folder / url) for url in IMPORT_MAP.values()}}
    html = (PAGE_SOURCE / "index.html").read_text()
    html = (html.replace("__IMPORT_MAP__", json.dumps(import_map, indent=2))
            .replace("__APP_INTEGRITY__", integrity(folder / "app.js"))
            .replace("__STYLE_INTEGRITY__", integrity(folder / "style.css")))
    atomic_write(folder / "index.html", html.encode())


def export_web(model_path: Path | str, out_dir: Path | str, quantize: str = "none",
               representative: np.ndarray | Path | None = None, threshold: float = SCORE_THRESHOLD,
               class_name: str = CLASS_NAME) -> WebExport:
    """Write the web page with the model into `out_dir`.

    Args:
        model_path: the trained .keras model.
        out_dir: the page's folder (created).
        quantize, representative: as `export.export_model` (int8 calibrates on `representative`).
        threshold: the score threshold the page starts with (a slider changes it).
        class_name: the label drawn next to the box.
    Returns:
        the folder, the model file in it and the runtime's version.
    """
    from facetracker.export import export_model

    if not 0.0 <= threshold <= 1.0:
        raise FaceTrackerError(f"--threshold {threshold} is outside [0, 1]; scores are probabilities.")
    modules = runtime_folder()  # before the slow export: a missing runtime is the most likely mistake
    out_dir = Path(out_dir)
    tflite = export_model(model_path, fmt="tflite", out_dir=out_dir, quantize=quantize, representative=representative)
    from facetracker.inference import tflite_interpreter

    size = int(tflite_interpreter(tflite).get_input_details()[0]["shape"][1])
    config = page_config(tflite, size, class_name, threshold, quantize)
    atomic_write(out_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    write_page(out_dir, modules)
    return WebExport(out_dir, tflite, config["runtime"])
