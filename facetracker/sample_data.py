"""A synthetic webcam session, so every step runs without a camera (stands in for tutorial section 1).

The face is real: the portrait of Grace Hopper that matplotlib ships. Each frame pastes her
head, moved, scaled, slightly rotated and relit, over a random background (gradients, noise,
shapes); some frames cut the face at the frame edge, and about 15% show no face at all. The
label written is the true box of the face in the frame, as labelme 6.3.1 would save it.

Names are uuids like the tutorial's, but derived from the seed and the frame number, so the
same seed always gives the same files and re-running adds nothing. Existing files are never
overwritten.
"""

import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facetracker.annotations import write_labelme
from facetracker.capture import open_video_writer
from facetracker.config import CLASS_NAME, FRAME_HEIGHT, FRAME_WIDTH, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import read_image, write_image

# The face in matplotlib's grace_hopper.jpg (512x600), checked by eye and by OpenCV's
# Haar cascade (155, 105, 222, 222): forehead under the cap to the chin, ear to ear.
FACE_BOX = (158, 120, 376, 336)
# The head (cap and hair included) pasted around the face: an ellipse, centre and half-axes.
HEAD_ELLIPSE = ((267, 205), (165, 195))
UUID_NAMESPACE = uuid.UUID("5b0e3a56-6a43-4c43-9d55-3f1f6e0c7a11")
MIN_VISIBLE = 0.45  # a face cut by the frame edge keeps at least this share of its area

Pose = tuple[float, float, float, float, float, float]  # cx, cy, face width px, angle deg, gain, bias


@dataclass(frozen=True)
class SampleDataSummary:
    """What `make_sample_data` wrote (and skipped because it was already there)."""

    images_dir: Path
    labels_dir: Path
    images_written: int
    labels_written: int
    skipped: int
    positives: int
    negatives: int

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        """A two-line summary for the CLI and the notebook."""
        return (
            f"{self.images_written} images written to {self.images_dir}, "
            f"{self.labels_written} labels to {self.labels_dir} ({self.skipped} files already there, kept).\n"
            f"This session: {self.positives} frames with a face, {self.negatives} without."
        )


@dataclass(frozen=True)
class Portrait:
    """The portrait with its soft head mask and its face mask, computed once per session."""

    image: np.ndarray
    alpha: np.ndarray
    face: np.ndarray
    face_area: int


def load_portrait() -> Portrait:
    """The portrait and its masks."""
    image = portrait()
    face = face_mask(image)
    return Portrait(image, head_alpha(image), face, cv2.countNonZero(face))


def portrait() -> np.ndarray:
    """matplotlib's Grace Hopper portrait as a BGR array."""
    import matplotlib.cbook

    path = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return read_image(path)


def frame_name(seed: int, index: int) -> str:
    """The file stem of frame `index` of the session made with `seed` (a uuid, as in the tutorial)."""
    return str(uuid.uuid5(UUID_NAMESPACE, f"facetracker-sample-{seed}-{index}"))


def random_background(rng: np.random.Generator, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> np.ndarray:
    """A varied BGR background: a gradient or smooth noise, with shapes and sensor noise."""
    small_w, small_h = width // 8, height // 8
    kind = rng.integers(3)
    if kind < 2:  # linear gradient at a random angle, or radial gradient
        a, b = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
        if kind == 0:
            angle = rng.uniform(0, 2 * np.pi)
            t = (xs * np.cos(angle) + ys * np.sin(angle)) / (small_w + small_h) + 0.5
        else:
            t = np.hypot(xs - rng.uniform(0, small_w), ys - rng.uniform(0, small_h)) / np.hypot(small_w, small_h)
        small = a + (b - a) * np.clip(t, 0, 1)[..., None]
    else:  # smooth coloured noise
        small = rng.uniform(0, 255, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
    image = np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    draw_shapes(image, rng, int(rng.integers(2, 9)))
    level = int(rng.integers(2, 13))
    noise = rng.integers(-level, level + 1, image.shape, dtype=np.int16)  # sensor noise
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def draw_shapes(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draw random filled rectangles, circles and lines onto `image` in place."""
    height, width = image.shape[:2]
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(10, 160))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(10, 160))), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 8)), cv2.LINE_AA)


def head_alpha(source: np.ndarray) -> np.ndarray:
    """A soft elliptical mask (0..1) around the head in the portrait."""
    alpha = np.zeros(source.shape[:2], np.float32)
    cv2.ellipse(alpha, HEAD_ELLIPSE[0], HEAD_ELLIPSE[1], 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(alpha, (0, 0), 12)


def face_mask(source: np.ndarray) -> np.ndarray:
    """The face outline in the portrait: the ellipse inscribed in FACE_BOX (uint8, 0 or 255)."""
    x1, y1, x2, y2 = FACE_BOX
    mask = np.zeros(source.shape[:2], np.uint8)
    cv2.ellipse(mask, (((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1, y2 - y1), 0), 255, -1)
    return mask


def pose_matrix(pose: Pose) -> np.ndarray:
    """The 2x3 affine map from portrait pixels to frame pixels for a pose."""
    cx, cy, face_width, angle = pose[:4]
    x1, y1, x2, y2 = FACE_BOX
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, face_width / (x2 - x1))
    matrix[:, 2] += (cx - centre[0], cy - centre[1])
    return matrix


def render(background: np.ndarray, source: Portrait, pose: Pose | None) -> tuple[np.ndarray, tuple | None, float]:
    """Paste the head over `background` in `pose`: (frame, face box in px or None, visible share)."""
    if pose is None:
        return background.copy(), None, 0.0
    height, width = background.shape[:2]
    matrix = pose_matrix(pose)
    size = (width, height)
    head = cv2.warpAffine(source.image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.warpAffine(source.alpha, matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    head = cv2.convertScaleAbs(head, alpha=pose[4], beta=pose[5]).astype(np.float32)
    frame = (background + (head - background) * alpha).astype(np.uint8)
    warped = cv2.warpAffine(source.face, matrix, size, flags=cv2.INTER_NEAREST)
    visible = cv2.countNonZero(warped)
    if visible == 0:
        return frame, None, 0.0
    x, y, w, h = cv2.boundingRect(warped)
    full = source.face_area * abs(np.linalg.det(matrix[:, :2]))
    return frame, (float(x), float(y), float(x + w), float(y + h)), visible / full


def random_pose(rng: np.random.Generator, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> Pose:
    """A random face pose: size, angle and light vary; one in five is cut by the frame edge."""
    face_width = rng.uniform(90, 260)
    margin = -0.25 * face_width if rng.random() < 0.2 else 0.55 * face_width
    cx = rng.uniform(margin, width - margin)
    cy = rng.uniform(margin, height - margin)
    return (cx, cy, face_width, rng.uniform(-12, 12), rng.uniform(0.6, 1.35), rng.uniform(-30, 30))


def make_frame(rng: np.random.Generator, source: Portrait, with_face: bool) -> tuple[np.ndarray, tuple | None]:
    """One synthetic webcam frame and the face box in pixels (None when no face)."""
    background = random_background(rng)
    if not with_face:
        return background, None
    for _ in range(20):
        frame, box, visible = render(background, source, random_pose(rng))
        if box is not None and visible >= MIN_VISIBLE:
            return frame, box
    frame, box, _ = render(background, source, (FRAME_WIDTH / 2, FRAME_HEIGHT / 2, 180.0, 0.0, 1.0, 0.0))
    return frame, box


def is_negative(index: int, negatives: float) -> bool:
    """Spread negatives evenly: frame `index` is one when the running count of negatives steps up."""
    return int((index + 1) * negatives) > int(index * negatives)


def click_order(box: tuple, rng: np.random.Generator) -> tuple:
    """The box's corners in one of the four orders a labelme drag can produce."""
    x1, y1, x2, y2 = box
    orders = [(x1, y1, x2, y2), (x2, y2, x1, y1), (x2, y1, x1, y2), (x1, y2, x2, y1)]
    return orders[int(rng.integers(4))]


def make_sample_data(
    paths: Paths, count: int = 90, negatives: float = 0.15, seed: int = 0, class_name: str = CLASS_NAME
) -> SampleDataSummary:
    """Write a synthetic webcam session: `count` JPEG frames into data/images, labelme JSON into data/labels.

    Args:
        paths: where data/images and data/labels live.
        count: frames in the session (the tutorial collects 90).
        negatives: share of frames without a face (they get no JSON, as in labelme).
        seed: the same seed gives the same file names and bytes; frame i does not depend on `count`.
        class_name: the rectangle's label.

    Returns:
        A summary of the files written and skipped.
    """
    if count < 0 or not 0 <= negatives <= 1:
        raise FaceTrackerError(f"count={count}, negatives={negatives}: use count >= 0 and 0 <= negatives <= 1.")
    paths.images.mkdir(parents=True, exist_ok=True)
    paths.labels.mkdir(parents=True, exist_ok=True)
    source = load_portrait()
    images = labels = skipped = positives = 0
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        name = frame_name(seed, index)
        with_face = not is_negative(index, negatives)
        image_path, label_path = paths.images / f"{name}.jpg", paths.labels / f"{name}.json"
        positives += with_face
        if image_path.exists() and (label_path.exists() or not with_face):
            skipped += 1 + with_face  # all there already: no need to render it again
            continue
        frame, box = make_frame(rng, source, with_face)
        wrote = write_image(image_path, frame, overwrite=False)
        images, skipped = images + wrote, skipped + (not wrote)
        if box is None:
            continue
        wrote = write_labelme(label_path, image_path, click_order(box, rng), FRAME_WIDTH, FRAME_HEIGHT, class_name,
                              overwrite=False)
        labels, skipped = labels + wrote, skipped + (not wrote)
    return SampleDataSummary(paths.images, paths.labels, images, labels, skipped, positives, count - positives)


def video_pose(t: float, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> Pose:
    """A smooth head movement over time `t` in seconds (a slow Lissajous path)."""
    cx = width / 2 + 0.38 * width * np.sin(0.9 * t)
    cy = height / 2 + 0.3 * height * np.sin(1.3 * t + 0.5)
    return (cx, cy, 170 + 60 * np.sin(0.5 * t), 10 * np.sin(0.7 * t), 1.0 + 0.25 * np.sin(0.4 * t), 0.0)


def write_sample_camera(path: Path, count: int, interval: float, fps: int = 15) -> Path:
    """A sample video long enough for `collect` to take `count` frames `interval` seconds apart (plus 1 s)."""
    return write_sample_video(path, frames=math.ceil(count * interval * fps) + fps, fps=fps)


def write_sample_video(path: Path, frames: int = 60, fps: int = 15, seed: int = 0) -> Path:
    """Write an .mp4 (mp4v) of a face moving over a fixed background: a stand-in camera.

    Every 20th frame shows no face. Returns `path`.
    """
    path = Path(path)
    rng = np.random.default_rng([seed, 1_000_003])
    background, source = random_background(rng), load_portrait()
    writer = open_video_writer(path, float(fps), FRAME_WIDTH, FRAME_HEIGHT)
    try:
        for index in range(frames):
            pose = None if index % 20 == 19 else video_pose(index / fps)
            writer.write(render(background, source, pose)[0])
    finally:
        writer.release()
    return path


def video_to_y4m(video: Path, path: Path) -> Path:
    """A video file as a .y4m (YUV 4:2:0): the file Chromium's fake camera plays in a loop
    (`--use-file-for-fake-video-capture`), which tests and benchmarks of the web page use as a webcam."""
    capture = cv2.VideoCapture(str(video))
    path = Path(path)
    with path.open("wb") as out:
        ok, frame = capture.read()
        if not ok:
            raise FaceTrackerError(f"{video}: no frame could be read; give a video file OpenCV can open.")
        height, width = frame.shape[:2]
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        while ok:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            ok, frame = capture.read()
    capture.release()
    return path
