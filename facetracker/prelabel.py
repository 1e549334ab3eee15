"""Box proposals for unlabelled images, to check in labelme: OpenCV's Haar face cascade or a trained model.

Both write a labelme JSON only where no label exists yet and something was found; they never
overwrite. The Haar cascade is also the baseline `evaluate` compares the model with, and both uses
pick "the face" among the cascade's detections by one rule, `best_face`.
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from facetracker.annotations import list_images, write_labelme
from facetracker.config import CLASS_NAME, SCORE_THRESHOLD, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import read_image
from facetracker.geometry import Box, box_area, shows_object

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
# OpenCV's usual detectMultiScale settings for webcam frames.
HAAR_SCALE, HAAR_NEIGHBOURS, HAAR_MIN_SIZE = 1.1, 5, (40, 40)


def haar_detector() -> cv2.CascadeClassifier:
    """OpenCV's frontal-face Haar cascade (shipped with opencv-python 4.x)."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    classifier_type = getattr(cv2, "CascadeClassifier", None)
    path = Path(folder) / HAAR_CASCADE
    if classifier_type is None or not path.is_file():
        raise FaceTrackerError(
            f"OpenCV {cv2.__version__} has no {HAAR_CASCADE}; install opencv-python 4.x (OpenCV 5 dropped it)."
        )
    return classifier_type(str(path))


def haar_faces(cascade: cv2.CascadeClassifier, frame_bgr: np.ndarray) -> list[tuple[Box, int]]:
    """Every face the cascade finds: (box in pixels, neighbours), neighbours being the merged raw detections."""
    gray = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr[..., :3], cv2.COLOR_BGR2GRAY)
    rects, counts = cascade.detectMultiScale2(gray, scaleFactor=HAAR_SCALE, minNeighbors=HAAR_NEIGHBOURS,
                                              minSize=HAAR_MIN_SIZE)
    return [((float(x), float(y), float(x + w), float(y + h)), int(n))
            for (x, y, w, h), n in zip(rects, counts, strict=True)]


def best_face(faces: list[tuple[Box, int]]) -> tuple[Box, int] | None:
    """The one rule for "the face": the most neighbours (the cascade's own confidence), then the larger box."""
    if not faces:
        return None
    return max(faces, key=lambda face: (face[1], box_area(face[0])))


def propose_labels(paths: Paths, propose: Callable[[np.ndarray], Box | None], class_name: str) -> list[Path]:
    """Write `propose(frame)`'s box (pixels) as a labelme JSON for every unlabelled image in data/images.

    An image already labelled is skipped, one for which `propose` returns None gets no file.
    """
    written = []
    for image_path in list_images(paths.images):
        label_path = paths.labels / f"{image_path.stem}.json"
        if label_path.exists():
            continue
        frame = read_image(image_path)
        box = propose(frame)
        if box is not None:
            write_labelme(label_path, image_path, box, frame.shape[1], frame.shape[0], class_name)
            written.append(label_path)
    return written


def prelabel_haar(paths: Paths, class_name: str = CLASS_NAME) -> list[Path]:
    """Propose a box (the best face) for each unlabelled image in data/images; returns the labels written."""
    cascade = haar_detector()

    def propose(frame: np.ndarray) -> Box | None:
        face = best_face(haar_faces(cascade, frame))
        return None if face is None else face[0]

    return propose_labels(paths, propose, class_name)


def prelabel_with_model(paths: Paths, model_path: Path | str, threshold: float = SCORE_THRESHOLD,
                        class_name: str = CLASS_NAME) -> list[Path]:
    """Propose the model's box for each unlabelled image in data/images where it scores `threshold` or more.

    An image scored below `threshold` gets no file (labelme's way of saying "no object").
    """
    from facetracker.inference import Detector

    detector = Detector.load(model_path)

    def propose(frame: np.ndarray) -> Box | None:
        detection = detector(frame)
        return detection.box_px if shows_object(detection.score, threshold) else None

    return propose_labels(paths, propose, class_name)
