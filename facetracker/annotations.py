"""Read, check and write labelme annotations (tutorial section 2).

labelme 6 writes one JSON per image: `shapes` holds the rectangles, each as two corner
points in click order. We read boxes with plain `json` (labelme's own reader needs the
image beside the JSON and fails on a size mismatch), and pair images with labels by
file stem, never by sort order. `imagePath` inside a label is informational only: it is
reported when it points outside the dataset, and never opened; embedded `imageData` is
never decoded.

`check` reports what `load_samples` would refuse (errors) or quietly fix (warnings),
and changes nothing on disk.
"""

import json
import math
import ntpath
import posixpath
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facetracker.config import CLASS_NAME, IMAGE_EXTENSIONS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import atomic_write
from facetracker.geometry import Box, box_area, box_in_square, clip_box, normalise

LABELME_VERSION = "6.3.1"
MAX_LABEL_BYTES = 32 * 1024 * 1024  # a labelme JSON with an embedded 4K photo stays well below this
MAX_IMAGE_BYTES = 64 * 1024 * 1024



@dataclass(frozen=True)
class Sample:
    """One image and what its label says."""

    image: Path
    label: Path | None
    width: int
    height: int
    box: Box | None  # normalised to [0, 1] by this image's size; None: no object (negative)
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class LabelReading:
    """What one label file says: the box in pixels (None: no object), warnings and errors."""

    box_px: Box | None
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass
class CheckReport:
    """The state of a dataset folder: counts, warnings (fixed on reading) and errors (must be fixed)."""

    images_dir: Path
    labels_dir: Path
    samples: list[Sample] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.samples)

    @property
    def positives(self) -> int:
        return sum(s.box is not None for s in self.samples)

    @property
    def negatives(self) -> int:
        return self.images - self.positives

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        """A readable report: counts, then every error and warning on its own line."""
        lines = [
            f"{self.images_dir}: {self.images} images, {self.positives} with a box, {self.negatives} without "
            f"(labels from {self.labels_dir}).",
            f"{len(self.errors)} errors, {len(self.warnings)} warnings.",
        ]
        lines += [f"ERROR   {message}" for message in self.errors]
        lines += [f"WARNING {message}" for message in self.warnings]
        if self.errors:
            lines.append("Fix the errors above, then run the check again.")
        return "\n".join(lines)


def labelme_json(image_path: Path, box_px: Box, width: int, height: int, class_name: str = CLASS_NAME) -> dict:
    """The JSON labelme 6 writes for one rectangle (image data not embedded).

    `box_px` is written as the two points in the given order, as labelme keeps click order.
    """
    x1, y1, x2, y2 = (float(v) for v in box_px)
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": [
            {
                "label": class_name,
                "points": [[x1, y1], [x2, y2]],
                "group_id": None,
                "description": "",
                "shape_type": "rectangle",
                "flags": {},
                "mask": None,
            }
        ],
        "imagePath": f"../images/{image_path.name}",
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }


def write_labelme(
    label_path: Path, image_path: Path, box_px: Box, width: int, height: int, class_name: str = CLASS_NAME,
    overwrite: bool = True,
) -> bool:
    """Write a labelme 6 JSON holding one rectangle, given in pixels (atomically, as labelme formats it).

    Returns False when `overwrite=False` and the file exists (it is kept).
    """
    data = labelme_json(image_path, box_px, width, height, class_name)
    return atomic_write(Path(label_path), json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"), overwrite)


# ---------------------------------------------------------------------------------------------
# Reading one label


def load_label_json(label_path: Path) -> tuple[dict | None, str | None]:
    """The parsed JSON object of a label file, or an error message."""
    try:
        size = label_path.stat().st_size
        if size > MAX_LABEL_BYTES:
            return None, f"{label_path}: {size} bytes, too large for a labelme file; re-save it without image data."
        data = json.loads(label_path.read_bytes().decode("utf-8"))
    except OSError as error:
        return None, f"{label_path}: cannot be read ({error.strerror}); check its permissions."
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{label_path}: not valid JSON ({error}); re-save it in labelme or delete it."
    if not isinstance(data, dict):
        return None, f"{label_path}: not a labelme file (top level is not an object); re-save it in labelme."
    return data, None


def shape_points(shape: object) -> list[tuple[float, float]] | None:
    """The finite (x, y) points of a labelme shape, or None if they are malformed."""
    if not isinstance(shape, dict) or not isinstance(shape.get("points"), list):
        return None
    points = []
    for point in shape["points"]:
        if not (isinstance(point, list | tuple) and len(point) == 2):
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in point):
            return None
        points.append((float(point[0]), float(point[1])))
    return points or None


def shape_box(shape: dict, points: list[tuple[float, float]]) -> Box:
    """The axis-aligned box around a shape in pixels, corners in any click order."""
    if shape.get("shape_type") == "circle" and len(points) == 2:
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        return (cx - r, cy - r, cx + r, cy + r)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def image_path_problem(label_path: Path, data: dict, image_name: str | None) -> str | None:
    """A warning when `imagePath` is absolute, leaves the dataset folder, or names another image.

    The path is only examined as text; it is never opened.
    """
    value = data.get("imagePath")
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{label_path}: imagePath is not text; ignored (images are paired by file name)."
    text = value.replace("\\", "/")
    fix = f'set "imagePath" to "../images/{image_name or label_path.stem + ".jpg"}" (or re-save in labelme)'
    if posixpath.isabs(text) or ntpath.isabs(value) or ntpath.splitdrive(value)[0]:
        return f"{label_path}: imagePath {value!r} is an absolute path; ignored, never opened. To fix, {fix}."
    joined = posixpath.normpath(posixpath.join("labels", text))  # the dataset folder seen from the label
    if joined == ".." or joined.startswith("../"):
        return f"{label_path}: imagePath {value!r} points outside the dataset; ignored, never opened. To fix, {fix}."
    if image_name is not None and posixpath.basename(text) != image_name:
        named = posixpath.basename(text)
        return f"{label_path}: imagePath names {named!r} but the label is paired with {image_name!r} by name; {fix}."
    return None


def size_problem(label_path: Path, data: dict, width: int, height: int) -> str | None:
    """A warning when imageWidth/imageHeight disagree with the real image."""
    json_w, json_h = data.get("imageWidth"), data.get("imageHeight")
    if json_w is None and json_h is None:
        return None
    if (json_w, json_h) != (width, height):
        return (
            f"{label_path}: says the image is {json_w}x{json_h} but it is {width}x{height}; "
            "using the real size. Re-open the image in labelme and re-save the box to fix."
        )
    return None


def read_labelme(
    label_path: Path, width: int, height: int, class_name: str = CLASS_NAME, image_name: str | None = None
) -> LabelReading:
    """Read one labelme file against an image of `width` x `height`; never raises for bad content.

    Rules: corners in any order are normalised; points outside the image are clipped (warning);
    several boxes of the class: the largest is used (warning); non-rectangles: their bounding box
    (warning); shapes of another label are ignored (warning); no shape of the class: a negative
    (warning); a zero-area box: error.
    """
    data, error = load_label_json(label_path)
    if data is None:
        return LabelReading(None, errors=(error,))
    checks = (image_path_problem(label_path, data, image_name), size_problem(label_path, data, width, height))
    warnings = [w for w in checks if w]
    shapes = data.get("shapes")
    if not isinstance(shapes, list):
        error = f"{label_path}: no 'shapes' list; re-save it in labelme or delete it."
        return LabelReading(None, tuple(warnings), (error,))
    if not shapes:
        warnings.append(
            f"{label_path}: empty 'shapes': used as an image without a {class_name}. "
            f"Draw the box in labelme, or delete the JSON if the image shows no {class_name}."
        )
        return LabelReading(None, tuple(warnings))
    return read_shapes(label_path, shapes, width, height, class_name, warnings)


def read_shapes(
    label_path: Path, shapes: list, width: int, height: int, class_name: str, warnings: list[str]
) -> LabelReading:
    """The box from a non-empty labelme `shapes` list (see `read_labelme`)."""
    errors, boxes = [], []
    for index, shape in enumerate(shapes):
        points = shape_points(shape)
        if points is None:
            errors.append(f"{label_path}: shape {index} has malformed points; redraw it in labelme.")
            continue
        label, kind = shape.get("label"), shape.get("shape_type") or "polygon"
        if label != class_name:
            hint = f" (or pass --class {label})" if isinstance(label, str) and label else ""
            warnings.append(
                f"{label_path}: shape {index} is labelled {label!r}, not {class_name!r}: ignored, "
                f"so it does not count as a {class_name}. Rename it to {class_name!r} in labelme{hint}."
            )
            continue
        if kind != "rectangle":
            warnings.append(f"{label_path}: shape {index} is a {kind}, not a rectangle: using its bounding box.")
        raw = shape_box(shape, points)
        box = clip_box(raw, width, height)
        if box != raw:
            warnings.append(
                f"{label_path}: shape {index} reaches outside the {width}x{height} image: clipped. "
                "Redraw it inside the image in labelme."
            )
        if box_area(box) <= 0:
            errors.append(f"{label_path}: shape {index} has zero area inside the image; redraw the box in labelme.")
            continue
        boxes.append(box)
    if len(boxes) > 1:
        warnings.append(
            f"{label_path}: {len(boxes)} {class_name!r} boxes; using the largest (the model predicts one per image). "
            "Delete the others in labelme."
        )
    if errors:
        return LabelReading(None, tuple(warnings), tuple(errors))
    if not boxes:
        return LabelReading(None, tuple(warnings))
    return LabelReading(max(boxes, key=box_area), tuple(warnings))


# ---------------------------------------------------------------------------------------------
# Reading one image


def image_problem(image_path: Path, data: bytes) -> str | None:
    """Why the bytes of an image file are not a complete JPEG or PNG (None if they are)."""
    if data.startswith(b"\xff\xd8"):
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return f"{image_path}: truncated JPEG (no end marker); re-capture it or delete it."
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if b"IEND" not in data[-16:]:
            return f"{image_path}: truncated PNG (no IEND chunk); re-save it or delete it."
        return None
    return f"{image_path}: not a JPEG or PNG file; convert it to JPEG or remove it from the folder."


def read_image_size(image_path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """(width, height) of a complete, decodable JPEG or PNG, or an error message."""
    try:
        size = image_path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return None, f"{image_path}: {size} bytes, too large for a frame; resize it or remove it."
        data = image_path.read_bytes()
    except OSError as error:
        return None, f"{image_path}: cannot be read ({error.strerror}); check its permissions."
    problem = image_problem(image_path, data)
    if problem:
        return None, problem
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None, f"{image_path}: cannot be decoded as an image; re-save it as JPEG or remove it."
    return (image.shape[1], image.shape[0]), None


def list_images(images_dir: Path) -> list[Path]:
    """Image files in a folder, sorted by name."""
    if not images_dir.is_dir():
        return []
    return sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_labels(labels_dir: Path) -> list[Path]:
    """labelme files in a folder, sorted by name."""
    if not labels_dir.is_dir():
        return []
    return sorted(p for p in labels_dir.iterdir() if p.is_file() and p.suffix.lower() == ".json")


# ---------------------------------------------------------------------------------------------
# A whole folder


def shared_stems(images_dir: Path, images: list[Path]) -> list[str]:
    """The one duplicate-name rule: images that share a stem (a.jpg, a.png) would share a label; a message each."""
    by_stem: dict[str, list[Path]] = {}
    for image_path in images:
        by_stem.setdefault(image_path.stem, []).append(image_path)
    return [f"{images_dir}: {', '.join(p.name for p in same)} share the name {stem!r}; rename or remove all but one."
            for stem, same in by_stem.items() if len(same) > 1]


def inspect(images_dir: Path, labels_dir: Path, class_name: str = CLASS_NAME) -> CheckReport:
    """Read every image and label of a folder pair; collect samples, warnings and errors. Writes nothing."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    report = CheckReport(images_dir, labels_dir)
    images = list_images(images_dir)
    report.errors.extend(shared_stems(images_dir, images))
    stems = {image_path.stem for image_path in images}
    for label_path in list_labels(labels_dir):
        if label_path.stem not in stems:
            report.warnings.append(
                f"{label_path}: no image {label_path.stem}.jpg/.png in {images_dir} (orphaned label); "
                "put the image back or delete the label."
            )
    for image_path in images:
        inspect_image(image_path, labels_dir, class_name, report)
    return report


def inspect_image(image_path: Path, labels_dir: Path, class_name: str, report: CheckReport) -> None:
    """Add one image's sample, warnings and errors to `report`."""
    size, error = read_image_size(image_path)
    if size is None:
        report.errors.append(error)
        return
    width, height = size
    label_path = labels_dir / f"{image_path.stem}.json"
    if not label_path.is_file():
        report.samples.append(Sample(image_path, None, width, height, None))
        return
    reading = read_labelme(label_path, width, height, class_name, image_path.name)
    report.warnings.extend(reading.warnings)
    if reading.errors:
        report.errors.extend(reading.errors)
        return
    box = None if reading.box_px is None else normalise(reading.box_px, width, height)
    report.samples.append(Sample(image_path, label_path, width, height, box, reading.warnings))


def check(paths: Paths, class_name: str = CLASS_NAME) -> CheckReport:
    """Check data/images and data/labels: counts, warnings and errors. Changes nothing on disk."""
    if not paths.images.is_dir():
        raise FaceTrackerError(f"{paths.images}: no images folder; collect frames first (facetracker collect, "
                               "or facetracker sample-data), or pass --root of the project folder.")
    return inspect(paths.images, paths.labels, class_name)


def require_labels(report: CheckReport, class_name: str = CLASS_NAME) -> None:
    """The gate between annotation and training: stop unless some images have a box and nothing is broken.

    Raises:
        FaceTrackerError: saying what to do next.
    """
    if not report.ok:
        raise FaceTrackerError(f"{report.images_dir}: {len(report.errors)} error(s) listed above; fix them "
                               "(each line says how), then run the check again.")
    if report.positives == 0:
        raise FaceTrackerError(
            f"no image in {report.images_dir} has a '{class_name}' box yet: draw one rectangle labelled "
            f"'{class_name}' on each image in labelme (saved to {report.labels_dir}), or set "
            "USE_SAMPLE_DATA = True to use the built-in sample session; then run this cell again.")


def load_samples(images_dir: Path, labels_dir: Path, class_name: str = CLASS_NAME) -> list[Sample]:
    """Every image in `images_dir` with its label from `labels_dir`, paired by file stem.

    Raises one FaceTrackerError listing every error found; warnings ride on the samples.
    """
    report = inspect(images_dir, labels_dir, class_name)
    if report.errors:
        listed = "\n".join(f"  - {message}" for message in report.errors)
        raise FaceTrackerError(
            f"{len(report.errors)} problem(s) in {images_dir} / {labels_dir} "
            f"(run `facetracker check` for the full report):\n{listed}"
        )
    return report.samples


# ---------------------------------------------------------------------------------------------
# Labelling help


def labelled_frames(images_dir: Path, labels_dir: Path, class_name: str) -> tuple[list[Sample], list[Box | None]]:
    """A folder's labelled frames and their boxes in the centre square (None: no face there, by the visibility
    rule): the truth evaluation scores against, as `inference.frame_to_input` frames it."""
    samples = load_samples(images_dir, labels_dir, class_name)
    if not samples:
        raise FaceTrackerError(f"{images_dir}: no images; run `facetracker split` first, or point to a folder "
                               "holding images/ and labels/.")
    return samples, [box_in_square(s.box, s.width, s.height) for s in samples]


def labelme_command(paths: Paths, class_name: str = CLASS_NAME) -> list[str]:
    """The labelme 6 command line: images from data/images, JSON to data/labels, one label name.

    Auto-save is labelme 6's default (`--autosave` is deprecated there); image data is not embedded.
    """
    return [
        sys.executable, "-m", "labelme", str(paths.images),
        "--output", str(paths.labels),
        "--labels", class_name,
        "--validate-label", "exact",
    ]  # fmt: skip


def launch_labelme(paths: Paths, class_name: str = CLASS_NAME) -> int:
    """Open the labelme GUI on data/images, saving to data/labels, and wait until it is closed.

    Returns:
        0, labelme's exit code after its window was closed. Raises FaceTrackerError with a one-line
        message starting "no display:" where no window can open (a notebook reports it and goes on),
        and one starting "labelme failed:" when labelme is missing or exits with an error.
    """
    from facetracker.display import display_available

    if not display_available():
        raise FaceTrackerError(
            "no display: labelme needs a display (DISPLAY/WAYLAND_DISPLAY is not set); run `facetracker annotate` "
            "on a desktop session, or `facetracker annotate --prelabel haar --no-gui` for automatic proposals."
        )
    if not paths.images.is_dir():
        raise FaceTrackerError(f"{paths.images}: no images folder; collect images first (facetracker collect).")
    paths.labels.mkdir(parents=True, exist_ok=True)
    try:
        code = subprocess.run(labelme_command(paths, class_name), check=False).returncode
    except OSError as error:
        raise FaceTrackerError(
            f"labelme failed: cannot start it ({error}); install it with `pip install labelme`."
        ) from error
    if code != 0:
        raise FaceTrackerError(
            f"labelme failed: it exited with code {code} (its messages are above). 'Could not load the Qt platform "
            "plugin \"xcb\"' means a second OpenCV build (opencv-python) is installed: `pip uninstall opencv-python`, "
            "then `pip install --force-reinstall opencv-python-headless` (see README, Troubleshooting)."
        )
    return code
