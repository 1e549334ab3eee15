"""Reading and writing files: the one atomic write, the image reader and writer, the augmented label's format
and how augmented images and labels pair up.

Every file the package writes goes through `publish` (`atomic_write`, `atomic_copy`): the bytes go to a hidden
temporary file in the same folder, then `os.replace` puts it in place, so a reader or a killed run
never sees half a file. Temporary files are named `.<stem>.<pid>.tmp<suffix>`; `remove_temp_files`
clears those an interrupted run left behind.
"""

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from facetracker.config import IMAGE_EXTENSIONS
from facetracker.errors import FaceTrackerError

TEMP_MARK = ".tmp"
JPEG_QUALITY = 95  # every JPEG the package writes: captured frames, sample frames, crops, annotated copies


def temp_path(path: Path) -> Path:
    """The hidden temporary file `path` is written through; it keeps the suffix (Keras insists on `.keras`)."""
    return path.with_name(f".{path.stem}.{os.getpid()}{TEMP_MARK}{path.suffix}")


def publish(path: Path, fill: Callable[[Path], object], overwrite: bool = True) -> bool:
    """Let `fill(temp)` write a temporary file, then move it to `path`; with `overwrite=False` an existing
    file is kept (False returned). Any writer fits: bytes, a copy, `model.save`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    try:
        fill(temp)
        if overwrite:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # fails if `path` exists, even if it appeared a moment ago
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if path.exists():
                return False
            os.replace(temp, path)
        return True
    finally:
        temp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes, overwrite: bool = True) -> bool:
    """Write `data` to `path` through a temporary file; False when `overwrite=False` and `path` exists."""
    return publish(Path(path), lambda temp: temp.write_bytes(data), overwrite)


def atomic_copy(source: Path, target: Path) -> None:
    """Copy a file (with its modification time) through a temporary file."""
    publish(Path(target), lambda temp: shutil.copy2(source, temp))


def remove_temp_files(*folders: Path) -> int:
    """Delete the temporary files an interrupted run left in `folders`; return how many."""
    leftovers = [p for folder in folders for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file()]
    for path in leftovers:
        path.unlink()
    return len(leftovers)


def write_image(path: Path, image: np.ndarray, overwrite: bool = True) -> bool:
    """Encode a BGR image by the path's suffix (JPEG at JPEG_QUALITY) and write it atomically.

    Returns False when `overwrite=False` and `path` exists. Raises FaceTrackerError when OpenCV cannot encode it.
    """
    path = Path(path)
    try:
        ok, buffer = cv2.imencode(path.suffix or ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    except cv2.error:  # a suffix OpenCV has no encoder for raises instead of returning False
        ok = False
    if not ok:
        raise FaceTrackerError(f"{path}: OpenCV cannot encode this image type; use a .jpg or .png name.")
    return atomic_write(path, buffer.tobytes(), overwrite)


def read_image(path: Path) -> np.ndarray:
    """An image file as a 3-channel BGR uint8 array (grayscale and PNG alpha converted).

    Raises:
        FaceTrackerError: naming the file, when OpenCV cannot decode it.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceTrackerError(f"{path}: cannot be read as an image; re-save it as JPEG or remove it.")
    return image


def write_crop_label(path: Path, source: str, bbox: tuple[float, ...], cls: int, fingerprint: str) -> None:
    """An augmented sample's label: its source image's name, box, class and what it was made from."""
    label = {"image": source, "bbox": [float(v) for v in bbox], "class": int(cls), "fingerprint": fingerprint}
    atomic_write(path, json.dumps(label).encode())


def read_crop_label(path: Path) -> tuple[float, list[float]]:
    """(class, bbox) of an augmented sample's label; a clear error when it is malformed."""
    try:
        data = json.loads(path.read_text())
        cls, bbox = float(data["class"]), [float(v) for v in data["bbox"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        message = f"{path}: not an augmented label ({error}); run `facetracker augment --fresh`."
        raise FaceTrackerError(message) from error
    if cls not in (0.0, 1.0) or len(bbox) != 4 or not all(0.0 <= v <= 1.0 for v in bbox):
        raise FaceTrackerError(f"{path}: class must be 0 or 1 and bbox four numbers in [0, 1]; "
                               "run `facetracker augment --fresh`.")
    return cls, bbox


def files_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """{stem: path} of the files in a folder with one of the suffixes."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def unpaired_error(images_dir: Path, labels_dir: Path, no_label: list[Path], no_image: list[Path]) -> FaceTrackerError:
    """The error for images without labels and labels without images."""
    parts = [f"{len(files)} {what}: {', '.join(str(p) for p in files[:3])}{', ...' if len(files) > 3 else ''}"
             for what, files in (("images without a label", no_label), ("labels without an image", no_image)) if files]
    return FaceTrackerError(f"{images_dir} and {labels_dir} do not pair up by name ({'; '.join(parts)}); "
                            "run `facetracker augment` again to complete them, or delete the unpaired files.")


def load_labels(labels_dir: Path, images_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Augmented samples paired by file stem: (image paths, classes [N, 1], boxes [N, 4]) float32."""
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise FaceTrackerError(f"{folder}: folder not found; run `facetracker augment` first.")
    images = files_by_stem(images_dir, IMAGE_EXTENSIONS)
    labels = files_by_stem(labels_dir, (".json",))
    if images.keys() != labels.keys():
        raise unpaired_error(images_dir, labels_dir, [images[s] for s in sorted(images.keys() - labels.keys())],
                             [labels[s] for s in sorted(labels.keys() - images.keys())])
    if not images:
        raise FaceTrackerError(f"{images_dir}: no samples; run `facetracker augment` first.")
    stems = sorted(images)
    pairs = [read_crop_label(labels[s]) for s in stems]
    classes = np.array([[c] for c, _ in pairs], dtype=np.float32)
    boxes = np.array([b for _, b in pairs], dtype=np.float32)
    return [str(images[s]) for s in stems], classes, boxes
