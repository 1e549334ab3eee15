"""Read and write labelme annotations (tutorial section 2).

labelme 6 writes one JSON per image: `shapes` holds the rectangles, each as two corner
points in click order. We read boxes with plain `json` (labelme's own reader needs the
image beside the JSON and fails on a size mismatch), and pair images with labels by
file stem, never by sort order.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from facetracker.config import CLASS_NAME, IMAGE_EXTENSIONS
from facetracker.errors import FaceTrackerError

LABELME_VERSION = "6.3.1"

# A box as (x1, y1, x2, y2) with x1 < x2 and y1 < y2.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One image and what its label says."""

    image: Path
    label: Path | None
    width: int
    height: int
    box: Box | None  # normalised to [0, 1] by this image's size; None: no object (negative)
    warnings: tuple[str, ...] = field(default=())


def labelme_json(image_path: Path, box_px: Box, width: int, height: int, class_name: str = CLASS_NAME) -> dict:
    """The JSON labelme 6 writes for one rectangle (image data not embedded)."""
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


def write_labelme(label_path: Path, image_path: Path, box_px: Box, width: int, height: int,
                  class_name: str = CLASS_NAME) -> None:
    """Write a labelme 6 JSON holding one rectangle, given in pixels."""
    label_path.parent.mkdir(parents=True, exist_ok=True)
    data = labelme_json(image_path, box_px, width, height, class_name)
    label_path.write_text(json.dumps(data, indent=2))


def read_box(label_path: Path, width: int, height: int, class_name: str = CLASS_NAME) -> tuple[Box | None, list[str]]:
    """The object's box in a labelme file, normalised by the image size, and any warnings."""
    try:
        data = json.loads(label_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FaceTrackerError(f"{label_path}: not valid JSON ({error}); re-save it in labelme or delete it.") from error
    shapes = [s for s in data.get("shapes", []) if s.get("label") == class_name]
    if not shapes:
        return None, [f"{label_path}: no '{class_name}' shape; the image is used as a negative."]
    xs = [float(p[0]) for p in shapes[0]["points"]]
    ys = [float(p[1]) for p in shapes[0]["points"]]
    x1, x2 = sorted((min(xs), max(xs)))
    y1, y2 = sorted((min(ys), max(ys)))
    box = (x1 / width, y1 / height, x2 / width, y2 / height)
    return tuple(min(max(v, 0.0), 1.0) for v in box), []


def image_size(image_path: Path) -> tuple[int, int]:
    """(width, height) of an image file; a clear error when it cannot be read."""
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FaceTrackerError(f"{image_path}: cannot be read as an image; re-save it as JPEG or remove it.")
    return image.shape[1], image.shape[0]


def list_images(images_dir: Path) -> list[Path]:
    """Image files in a folder, sorted by name."""
    if not images_dir.is_dir():
        return []
    return sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def load_samples(images_dir: Path, labels_dir: Path, class_name: str = CLASS_NAME) -> list[Sample]:
    """Every image in `images_dir` with its label from `labels_dir`, paired by file stem."""
    samples = []
    for image_path in list_images(images_dir):
        width, height = image_size(image_path)
        label_path = labels_dir / f"{image_path.stem}.json"
        if label_path.exists():
            box, warnings = read_box(label_path, width, height, class_name)
            samples.append(Sample(image_path, label_path, width, height, box, tuple(warnings)))
        else:
            samples.append(Sample(image_path, None, width, height, None))
    return samples
