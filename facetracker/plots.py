"""Every figure the package draws: images with their boxes, the prediction grid and the loss curves.

The only module that imports matplotlib (its object-oriented `Figure`: no pyplot state, no GUI
backend); real time and export never import it.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from facetracker.config import CLASS_NAME, SCORE_THRESHOLD
from facetracker.fileio import publish
from facetracker.geometry import box_area, shows_object


def split_labels(labels_or_boxes) -> tuple[np.ndarray | None, np.ndarray]:
    """(classes [N] or None, boxes [N, 4]) from a (classes, boxes) pair or a boxes array."""
    if isinstance(labels_or_boxes, tuple | list) and len(labels_or_boxes) == 2:
        classes, boxes = labels_or_boxes
        return np.asarray(classes, dtype=np.float32).reshape(-1), np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return None, np.asarray(labels_or_boxes, dtype=np.float32).reshape(-1, 4)


def draw_box(ax, box: np.ndarray, width: int, height: int, color: str, text: str | None = None) -> None:
    """One normalised box on an axis, with an optional caption above it."""
    x1, y1, x2, y2 = (float(v) for v in box * np.array([width, height, width, height]))
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2))
    if text:
        ax.text(x1, y1, text, color="white", fontsize=8, va="bottom", bbox={"facecolor": color, "pad": 1, "lw": 0})


def plot_samples(images, labels_or_boxes, scores=None, ncols: int = 4, truth=None,
                 threshold: float = SCORE_THRESHOLD, class_name: str = CLASS_NAME) -> Figure:
    """A grid of images with their boxes (normalised x1, y1, x2, y2).

    Args:
        images: [N, H, W, 3] floats in [0, 1] or uint8 (read-only arrays are fine: nothing is drawn into them).
        labels_or_boxes: ground truth as (classes [N, 1], boxes [N, 4]), drawn in green where class is 1;
            or boxes [N, 4], drawn in blue, where `scores` (if given) reach `threshold`.
        scores: predicted class scores [N] or [N, 1], written on the boxes.
        ncols: images per row.
        truth: optional ground truth (classes, boxes) drawn in green under predicted boxes.
        threshold: smallest score whose box is drawn (the video: 0.9 for the test grid).
        class_name: caption of ground-truth boxes.

    Returns:
        A matplotlib Figure (shown by Jupyter when it is a cell's last value).
    """
    images = np.asarray(images)
    classes, boxes = split_labels(labels_or_boxes)
    true_classes, true_boxes = split_labels(truth) if truth is not None else (None, None)
    score_list = None if scores is None else np.asarray(scores, dtype=np.float32).reshape(-1)
    nrows = max(1, -(-len(images) // ncols))
    figure = Figure(figsize=(3 * ncols, 3 * nrows))
    axes = figure.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= len(images):
            continue
        height, width = images[i].shape[:2]
        ax.imshow(images[i])
        if true_boxes is not None and true_classes[i] > 0.5 and box_area(true_boxes[i]) > 0:
            draw_box(ax, true_boxes[i], width, height, "limegreen")
        if classes is not None:
            if classes[i] > 0.5:  # a face cut to a sliver has no box: its caption alone says it is there
                draw_box(ax, boxes[i], width, height, "limegreen", class_name)
        elif score_list is None:
            draw_box(ax, boxes[i], width, height, "royalblue")
        elif shows_object(score_list[i], threshold):
            draw_box(ax, boxes[i], width, height, "royalblue", f"{score_list[i]:.2f}")
    figure.tight_layout()
    return figure


def plot_curves(history: dict[str, list[float]], names: Sequence[str], path: Path) -> Path:
    """The tutorial's plots, one per loss (train vs val), side by side, saved as a PNG."""
    figure = Figure(figsize=(5 * len(names), 4))
    titles = {"loss": "Total Loss", "class_loss": "Class Loss", "regress_loss": "Regress Loss"}
    marker = "o" if len(history.get(names[0], [])) == 1 else None  # one epoch is a point: a line needs two
    for ax, name in zip(figure.subplots(1, len(names), squeeze=False)[0], names, strict=True):
        ax.plot(history.get(name, []), color="teal", label="train", marker=marker)
        ax.plot(history.get(f"val_{name}", []), color="orange", label="val", marker=marker)
        ax.set(title=titles.get(name, name), xlabel="epoch")
        ax.legend()
    return save_figure(figure, path, dpi=80)


def save_figure(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Write a figure as a PNG, atomically (a reader never sees half a picture)."""
    publish(path, lambda temp: figure.savefig(temp, dpi=dpi, bbox_inches="tight", format="png"))
    return path
