"""Tests for facetracker.augment: real frames and labelme files in tmp_path, no mocks."""

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest

from facetracker.annotations import load_samples, write_labelme
from facetracker.augment import (
    _Target,
    augment_chunk,
    augment_dataset,
    augment_image,
    augment_targets,
    build_transform,
    init_worker,
    plan_target,
)
from facetracker.config import CROP_SIZE, SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import temp_path
from facetracker.sample_data import make_sample_data


def augment_split(images_dir: Path, labels_dir: Path, out_images: Path, out_labels: Path, **options):
    """One split folder through `augment_targets`, the way `augment_dataset` runs each split."""
    return augment_targets({"split": _Target(images_dir, labels_dir, out_images, out_labels)}, **options)["split"]

TOLERANCE_PX = 3
# The documented labelling rule (geometry.LABEL_MIN_VISIBILITY, MIN_BOX_PX), restated so a change to it shows here.
LABEL_MIN_VISIBILITY = 0.1
EVALUATION_MIN_VISIBILITY = 0.25  # geometry.MIN_VISIBILITY: what evaluation counts as a face
MIN_BOX_PX = 20


def write_frame(
    images: Path,
    labels: Path,
    name: str,
    size=(640, 480),
    rect=(300, 100, 400, 200),
    label: bool = True,
    gray: bool = False,
) -> Path:
    """A black frame with one white rectangle (the 'face'), and its labelme file."""
    width, height = size
    image = np.zeros((height, width) if gray else (height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = rect
    image[y1:y2, x1:x2] = 255
    images.mkdir(parents=True, exist_ok=True)
    path = images / name
    assert cv2.imwrite(str(path), image)
    if label:  # labelme 6 keeps click order: give the corners bottom-right first
        write_labelme(labels / f"{path.stem}.json", path, (x2, y2, x1, y1), width, height)
    return path


def bright_region(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1, x2, y2) in px of the bright pixels; None when there are none."""
    gray = image.mean(axis=2)
    if gray.max() - gray.min() < 60:
        return None
    ys, xs = np.nonzero(gray > (gray.max() + gray.min()) / 2)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def read_outputs(out_images: Path, out_labels: Path) -> list[tuple[np.ndarray, dict]]:
    """Every augmented sample as (image, label dict), in name order."""
    labels = sorted(out_labels.glob("*.json"))
    return [(cv2.imread(str(out_images / f"{p.stem}.jpg")), json.loads(p.read_text())) for p in labels]


def check_boxes_follow_object(outputs: list[tuple[np.ndarray, dict]], object_area_px: float) -> Counter:
    """Assert each written label matches the white rectangle in its image; count positives and negatives."""
    counts: Counter = Counter()
    for image, label in outputs:
        assert image.shape == (CROP_SIZE, CROP_SIZE, 3)
        region = bright_region(image)
        w, h = (region[2] - region[0], region[3] - region[1]) if region is not None else (0, 0)
        if label["class"] == 1 and label["bbox"] == [0, 0, 0, 0]:  # a face cut to a sliver: no box
            assert (w + TOLERANCE_PX) * (h + TOLERANCE_PX) >= LABEL_MIN_VISIBILITY * object_area_px
            assert w * h < EVALUATION_MIN_VISIBILITY * object_area_px + 100
            assert min(w, h) >= MIN_BOX_PX - TOLERANCE_PX
            counts["unboxed"] += 1
        elif label["class"] == 1:
            box_px = np.array(label["bbox"]) * CROP_SIZE
            assert region is not None
            np.testing.assert_allclose(box_px, region, atol=TOLERANCE_PX)
            assert (w + TOLERANCE_PX) * (h + TOLERANCE_PX) >= EVALUATION_MIN_VISIBILITY * object_area_px
            assert min(w, h) >= MIN_BOX_PX - TOLERANCE_PX
            counts["positive"] += 1
        else:
            assert label["bbox"] == [0, 0, 0, 0]
            if region is not None:  # a sliver: too little of the face, or too thin
                assert w * h < LABEL_MIN_VISIBILITY * object_area_px + 100 or min(w, h) < MIN_BOX_PX + TOLERANCE_PX
                counts["sliver"] += 1
            counts["negative"] += 1
    return counts


def split_dirs(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    return tmp_path / "images", tmp_path / "labels", tmp_path / "aug" / "images", tmp_path / "aug" / "labels"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_boxes_stay_on_the_object(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "frame.jpg")
    summary = augment_split(images, labels, out_images, out_labels, per_image=40, workers=1, progress=False)
    assert (summary.written, summary.skipped, summary.failed) == (40, 0, [])
    outputs = read_outputs(out_images, out_labels)
    counts = check_boxes_follow_object(outputs, 100 * 100)
    assert counts["positive"] == 40  # the object is always wholly inside a 450 crop of this frame
    boxes = {tuple(np.round(np.array(label["bbox"]) * CROP_SIZE)) for _, label in outputs}
    assert len(boxes) > 30  # crops and flips move the box
    assert {label["image"] for _, label in outputs} == {"frame.jpg"}


def test_object_near_the_edge_becomes_negative_when_mostly_cut(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "edge.jpg", rect=(0, 150, 100, 250))
    augment_split(images, labels, out_images, out_labels, per_image=80, workers=1, progress=False)
    counts = check_boxes_follow_object(read_outputs(out_images, out_labels), 100 * 100)
    assert counts["positive"] > 5 and counts["negative"] > 5 and counts["sliver"] > 0


def test_a_face_cut_to_between_a_tenth_and_a_quarter_is_a_face_without_a_box(tmp_path):
    """A 180 px wide face at the frame's right edge, cut by the crops: boxed while a quarter shows, a face
    without a box from a tenth (the model learns to find half a face), a negative under that."""
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "edge.jpg", rect=(460, 150, 640, 250))
    augment_split(images, labels, out_images, out_labels, per_image=60, workers=1, progress=False)
    counts = check_boxes_follow_object(read_outputs(out_images, out_labels), 180 * 100)
    assert counts["unboxed"] >= 3 and counts["positive"] >= 3 and counts["negative"] >= 1, counts


@pytest.mark.parametrize(("side", "cls"), [(MIN_BOX_PX - 6, 0), (MIN_BOX_PX + 6, 1)])
def test_objects_under_the_minimum_size_are_negatives(tmp_path, side, cls):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "small_face.jpg", rect=(320, 200, 320 + side, 200 + side))
    augment_split(images, labels, out_images, out_labels, per_image=5, workers=1, progress=False)
    assert [label["class"] for _, label in read_outputs(out_images, out_labels)] == [cls] * 5


def test_flips_are_independent_and_move_the_box():
    ramp = np.add.outer(np.linspace(0, 127, 480), np.linspace(0, 127, 640)).astype(np.uint8)
    image = np.repeat(ramp[:, :, None], 3, axis=2)
    box = (300 / 640, 100 / 480, 400 / 640, 200 / 480)
    transform = build_transform()
    combos: Counter = Counter()
    for seed in range(120):
        out, bbox, cls = augment_image(image, box, transform, seed)
        gray = out.mean(axis=2)
        h_flip, v_flip = gray[:, 0].mean() > gray[:, -1].mean(), gray[0].mean() > gray[-1].mean()
        combos[h_flip, v_flip] += 1
        assert cls == 1
        # the object's top is 100 px below the frame's top; the crop starts 0-30 px down
        top = bbox[1] * CROP_SIZE
        assert CROP_SIZE - 200 - 1 <= top <= CROP_SIZE - 170 + 1 if v_flip else 70 - 1 <= top <= 100 + 1
    # albumentations 2.0.8's Compose(seed=...) would give only (False, False) and (True, True)
    assert all(combos[c] >= 15 for c in [(False, False), (False, True), (True, False), (True, True)]), combos


def test_exact_flip_geometry_with_own_transform():
    params = A.BboxParams(format="albumentations", label_fields=["class_labels"])
    transform = A.Compose([A.HorizontalFlip(p=1), A.VerticalFlip(p=1)], bbox_params=params)
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    _, bbox, cls = augment_image(image, (0.1, 0.2, 0.3, 0.5), transform, seed=1)
    assert cls == 1
    np.testing.assert_allclose(bbox, (0.7, 0.5, 0.9, 0.8), atol=1e-6)


def test_negatives_and_odd_images(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "empty.jpg", rect=(0, 0, 0, 0), label=False)
    write_frame(images, labels, "small.jpg", size=(320, 240), rect=(100, 60, 180, 140))
    write_frame(images, labels, "wide.png", size=(1280, 720), rect=(600, 300, 760, 460), gray=True)
    write_frame(images, labels, "odd.jpg", size=(457, 451), rect=(10, 20, 90, 110))
    summary = augment_split(images, labels, out_images, out_labels, per_image=12, workers=1, progress=False)
    assert (summary.written, summary.failed) == (48, [])
    outputs = read_outputs(out_images, out_labels)
    empty = [label for _, label in outputs if label["image"] == "empty.jpg"]
    assert len(empty) == 12
    assert all(label.keys() == {"image", "bbox", "class", "fingerprint"} for label in empty)
    assert all((label["bbox"], label["class"]) == ([0, 0, 0, 0], 0) for label in empty)
    small = [o for o in outputs if o[1]["image"] == "small.jpg"]
    assert check_boxes_follow_object(small, (80 * 2) ** 2)["positive"] == 12  # enlarged 2x to 640x480
    wide = [o for o in outputs if o[1]["image"] == "wide.png"]
    assert check_boxes_follow_object(wide, (160 * 480 / 720) ** 2)["positive"] == 12  # shrunk to 853x480
    odd = [o for o in outputs if o[1]["image"] == "odd.jpg"]
    check_boxes_follow_object(odd, (80 * 480 / 451) * (90 * 480 / 451))


def test_interrupted_run_completes_without_duplicates(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "a.jpg")
    write_frame(images, labels, "b.jpg", label=False)
    augment_split(images, labels, out_images, out_labels, per_image=6, workers=1, progress=False)
    complete = snapshot(out_images) | snapshot(out_labels)
    (out_labels / "a.2.json").unlink()  # killed between the image and its JSON
    (out_images / "b.4.jpg").unlink()  # an image lost, its JSON left
    (out_labels / "b.5.json").unlink()
    (out_images / "b.5.jpg").unlink()
    temp_path(out_images / "a.3.jpg").write_bytes(b"partial")  # killed while writing
    summary = augment_split(images, labels, out_images, out_labels, per_image=6, workers=1, progress=False)
    assert (summary.written, summary.skipped, summary.failed) == (3, 9, [])
    assert snapshot(out_images) | snapshot(out_labels) == complete  # same names, same bytes, no .tmp
    assert sorted(p.name for p in images.iterdir()) == ["a.jpg", "b.jpg"]


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    images, labels, _, _ = split_dirs(tmp_path)
    write_frame(images, labels, "a.jpg")
    write_frame(images, labels, "b.jpg", rect=(0, 150, 100, 250))
    write_frame(images, labels, "c.jpg", label=False)
    runs = {}
    for name, workers, seed in (("one", 1, 7), ("two", 2, 7), ("other", 1, 8)):
        out = tmp_path / name
        summary = augment_split(
            images, labels, out / "images", out / "labels", per_image=4, workers=workers, seed=seed, progress=False
        )
        assert summary.written == 12
        runs[name] = snapshot(out / "images") | snapshot(out / "labels")
    assert runs["one"] == runs["two"]
    assert runs["one"].keys() == runs["other"].keys() and runs["one"] != runs["other"]

    # A job this small is done before a worker process has started, so write it again in one, as the pool does.
    out = tmp_path / "worker"
    target = _Target(images, labels, out / "images", out / "labels")
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    chunks, _ = plan_target(target, load_samples(images, labels), 4, 7, build_transform())
    context = get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=init_worker, initargs=(context.Value("i", 0),)) as pool:
        results = list(pool.map(augment_chunk, chunks))
    assert sum(r.written for r in results) == 12 and {r.pid for r in results} != {os.getpid()}
    assert snapshot(out / "images") | snapshot(out / "labels") == runs["one"]


@pytest.mark.slow
def test_failures_are_listed_and_user_transform_runs_in_workers(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "big.jpg")
    write_frame(images, labels, "tiny.jpg", size=(320, 240), rect=(10, 10, 50, 50))
    params = A.BboxParams(format="albumentations", label_fields=["class_labels"])
    strict_crop = A.Compose([A.RandomCrop(450, 450), A.HorizontalFlip(p=0.5)], bbox_params=params)
    summary = augment_split(
        images, labels, out_images, out_labels, per_image=3, workers=2, transform=strict_crop, progress=False
    )
    assert summary.written == 3
    assert len(summary.failed) == 1 and summary.failed[0][0].endswith("tiny.jpg")
    assert "CropSizeError" in summary.failed[0][1]
    assert sorted(p.name for p in out_labels.iterdir()) == ["big.0.json", "big.1.json", "big.2.json"]


def test_unusable_transforms_are_refused(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "a.jpg")
    params = A.BboxParams(format="albumentations", label_fields=["class_labels"])
    unpicklable = A.Compose([A.Lambda(image=lambda img, **_: img)], bbox_params=params)
    with pytest.raises(FaceTrackerError, match="worker processes"):
        augment_split(images, labels, out_images, out_labels, per_image=1, workers=2, transform=unpicklable)
    with pytest.raises(FaceTrackerError, match="bbox_params"):
        augment_split(
            images, labels, out_images, out_labels, per_image=1, workers=1, transform=A.Compose([A.HorizontalFlip()])
        )
    with pytest.raises(FaceTrackerError, match="no images"):
        augment_split(tmp_path / "none", labels, out_images, out_labels)


def test_stale_outputs_are_reported_and_fresh_removes_them(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "a.jpg")
    augment_split(images, labels, out_images, out_labels, per_image=4, workers=1, progress=False)
    summary = augment_split(images, labels, out_images, out_labels, per_image=2, workers=1, progress=False)
    assert summary.skipped == 2 and any("4 files" in w for w in summary.warnings)
    summary = augment_split(images, labels, out_images, out_labels, per_image=2, workers=1, fresh=True, progress=False)
    assert summary.written == 2 and not summary.warnings
    assert sorted(p.name for p in out_labels.iterdir()) == ["a.0.json", "a.1.json"]


def test_augment_dataset_fills_every_split_and_leaves_data_alone(tmp_path):
    paths = Paths(tmp_path)
    for split in SPLITS:
        write_frame(paths.split_images(split), paths.split_labels(split), f"{split}.jpg")
    before = {p: p.read_bytes() for p in sorted(paths.data.rglob("*")) if p.is_file()}
    summaries = augment_dataset(paths, per_image=2, workers=1, progress=False)
    assert {split: s.written for split, s in summaries.items()} == dict.fromkeys(SPLITS, 2)
    for split in SPLITS:
        assert sorted(p.name for p in paths.aug_images(split).iterdir()) == [f"{split}.0.jpg", f"{split}.1.jpg"]
    assert {p: p.read_bytes() for p in sorted(paths.data.rglob("*")) if p.is_file()} == before


# ---------------------------------------------------------------------------------------------
# Crops follow their sources


def save_with_labelme(label_path: Path, image_path: Path, box_px: tuple[float, float, float, float]) -> None:
    """A rectangle saved by labelme's own writer, as the labelme app does (corners in click order)."""
    from labelme import LabelFile

    x1, y1, x2, y2 = box_px
    shape = {
        "label": "face",
        "points": [[x1, y1], [x2, y2]],
        "group_id": None,
        "description": "",
        "shape_type": "rectangle",
        "flags": {},
        "mask": None,
    }
    height, width = cv2.imread(str(image_path)).shape[:2]
    label_path.parent.mkdir(parents=True, exist_ok=True)
    LabelFile().save(str(label_path), [shape], f"../images/{image_path.name}", height, width)


def facetracker(root: Path, *args: str) -> str:
    """Run one step of the real CLI on project `root`; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "facetracker.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime in ns) of every file: changes whenever a file is rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def box_on_object(image: np.ndarray, label: dict) -> bool:
    """Whether a crop's box lies on the white rectangle in its image."""
    region = bright_region(image)
    return region is not None and np.allclose(np.array(label["bbox"]) * CROP_SIZE, region, atol=TOLERANCE_PX)


def crops_of(paths: Paths, stem: str) -> list[tuple[np.ndarray, dict]]:
    """The augmented samples of one source frame, from whichever split holds it."""
    split = next(s for s in SPLITS if (paths.split_images(s) / f"{stem}.jpg").is_file())
    outputs = read_outputs(paths.aug_images(split), paths.aug_labels(split))
    return [(image, label) for image, label in outputs if label["image"] == f"{stem}.jpg"]


@pytest.mark.slow
def test_a_redrawn_box_reaches_the_crops_through_split_and_augment(tmp_path):
    paths = Paths(tmp_path)
    for i in range(7):  # 5 / 1 / 1 frames after the split
        image = write_frame(paths.images, paths.labels, f"frame{i}.jpg", rect=(300, 100, 400, 200), label=False)
        wrong = (100, 300, 160, 380) if i == 3 else (400, 200, 300, 100)  # frame3's box misses the face
        save_with_labelme(paths.labels / f"frame{i}.json", image, wrong)
    facetracker(tmp_path, "split")
    facetracker(tmp_path, "augment", "--per-image", "4", "--workers", "1")
    wrong_crops = [(image, label) for image, label in crops_of(paths, "frame3") if label["class"] == 1]
    assert wrong_crops and all(not box_on_object(image, label) for image, label in wrong_crops)
    before = {split: stamps(paths.aug_labels(split)) | stamps(paths.aug_images(split)) for split in SPLITS}

    save_with_labelme(paths.labels / "frame3.json", paths.images / "frame3.jpg", (400, 200, 300, 100))  # redrawn
    facetracker(tmp_path, "split")
    out = facetracker(tmp_path, "augment", "--per-image", "4", "--workers", "1")

    assert "4 written (4 replacing outdated crops)" in out
    assert out.count("0 written (0 replacing outdated crops)") == 2, out
    counts = check_boxes_follow_object(crops_of(paths, "frame3"), 100 * 100)
    assert counts["positive"] == 4
    after = {split: stamps(paths.aug_labels(split)) | stamps(paths.aug_images(split)) for split in SPLITS}
    changed = {name for split in SPLITS for name, stamp in after[split].items() if before[split][name] != stamp}
    assert changed == {f"frame3.{k}.{ext}" for k in range(4) for ext in ("jpg", "json")}

    out = facetracker(tmp_path, "augment", "--per-image", "4", "--workers", "1")  # nothing changed: nothing redone
    assert out.count("0 written (0 replacing outdated crops)") == 3, out
    assert after == {split: stamps(paths.aug_labels(split)) | stamps(paths.aug_images(split)) for split in SPLITS}


def test_changed_settings_or_sources_redo_the_crops_and_nothing_else_does(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "a.jpg")
    write_frame(images, labels, "b.jpg", rect=(100, 100, 200, 200))

    def run(**options) -> tuple[int, int, int]:
        summary = augment_split(
            images, labels, out_images, out_labels, per_image=3, workers=1, progress=False, **options
        )
        assert summary.failed == []
        return summary.written, summary.outdated, summary.skipped

    assert run() == (6, 0, 0)
    first = snapshot(out_images) | snapshot(out_labels)
    label = json.loads((labels / "a.json").read_text())
    label["flags"] = {"checked": True}  # a change that does not move the box
    (labels / "a.json").write_text(json.dumps(label))
    assert run() == (0, 0, 6)
    assert run(seed=1) == (6, 6, 0)
    assert (snapshot(out_images) | snapshot(out_labels)).keys() == first.keys()
    assert snapshot(out_images) != {k: v for k, v in first.items() if k.endswith(".jpg")}
    assert run(seed=1, crop=300) == (6, 6, 0)
    assert cv2.imread(str(out_images / "a.0.jpg")).shape == (300, 300, 3)
    no_vertical_flip = build_transform(300)
    no_vertical_flip.transforms[-1].p = 0.0
    assert run(seed=1, transform=no_vertical_flip) == (6, 6, 0)
    assert run(seed=1, transform=no_vertical_flip) == (0, 0, 6)
    write_frame(images, labels, "b.jpg", rect=(100, 100, 200, 200), label=False)  # same label, new pixels:
    cv2.imwrite(str(images / "b.jpg"), cv2.imread(str(images / "b.jpg")) // 2)  # the face got darker
    assert run(seed=1, transform=no_vertical_flip) == (3, 3, 3)
    assert run() == (6, 6, 0)
    assert snapshot(out_images) | snapshot(out_labels) != first  # b.jpg's pixels changed
    assert {k: v for k, v in (snapshot(out_images) | snapshot(out_labels)).items() if k.startswith("a.")} == {
        k: v for k, v in first.items() if k.startswith("a.")
    }  # back to the first settings: the same bytes as the first run


def test_crops_of_an_image_gone_from_the_split_are_reported_then_pruned(tmp_path):
    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "kept.jpg")
    write_frame(images, labels, "gone.jpg")
    augment_split(images, labels, out_images, out_labels, per_image=2, workers=1, progress=False)
    (images / "gone.jpg").unlink()
    (labels / "gone.json").unlink()
    summary = augment_split(images, labels, out_images, out_labels, per_image=2, workers=1, progress=False)
    (warning,) = summary.warnings
    assert "4 files" in warning and "(gone)" in warning and "--prune" in warning
    assert len(list(out_labels.iterdir())) == 4  # reported, not deleted
    summary = augment_split(images, labels, out_images, out_labels, per_image=2, workers=1, prune=True, progress=False)
    assert "deleted 4 files" in summary.warnings[0] and summary.skipped == 2
    assert sorted(p.name for p in out_labels.iterdir()) == ["kept.0.json", "kept.1.json"]
    assert sorted(p.name for p in out_images.iterdir()) == ["kept.0.jpg", "kept.1.jpg"]
    assert sorted(p.name for p in images.iterdir()) == ["kept.jpg"]


@pytest.mark.slow
def test_automatic_worker_count_is_one_per_core_from_1000_samples(tmp_path):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for frames, per_image, expected in ((20, 49, 1), (20, 50, cores)):  # 980 and 1000 samples to write
        root = tmp_path / f"x{per_image}"
        make_sample_data(Paths(root), count=frames, seed=0)
        facetracker(root, "split")
        out = facetracker(root, "augment", "--per-image", str(per_image), "--crop", "64")
        assert f"processes: {expected} (automatic)" in out, out
        rerun = facetracker(root, "augment", "--per-image", str(per_image), "--crop", "64")
        assert "processes: 1 (automatic), 0 of them wrote samples" in rerun, rerun  # nothing left to write


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF APP1 segment holding only the Orientation tag (6: shown rotated 90 degrees)."""
    ifd = (b"\x01\x00" + b"\x12\x01" + b"\x03\x00" + b"\x01\x00\x00\x00" + orientation.to_bytes(2, "little")
           + b"\x00\x00" + b"\x00\x00\x00\x00")  # one entry: tag 0x0112, SHORT, count 1, value; no next IFD
    exif = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + ifd
    return jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]


def test_an_image_decoded_at_another_size_than_labelled_fails_naming_exif(tmp_path, capsys):
    """A phone photo stored 640x480 with EXIF "rotate 90": labelme and the size check see 640x480, OpenCV
    decodes it upright as 480x640. Its crops would get a box in the wrong place, so the image fails with
    the fix, the other image is augmented, and the command exits 1."""
    from facetracker.cli import main

    paths = Paths(tmp_path)
    images, labels = paths.split_images("train"), paths.split_labels("train")
    write_frame(images, labels, "upright.jpg")
    rotated = write_frame(images, labels, "phone.jpg")
    rotated.write_bytes(with_exif_orientation(rotated.read_bytes(), 6))
    assert cv2.imread(str(rotated)).shape == (640, 480, 3)  # OpenCV applies the rotation
    assert main(["--root", str(tmp_path), "augment", "--splits", "train", "--per-image", "2", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "2 written" in out and "1 failed" in out
    failed = [line for line in out.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "phone.jpg" in failed[0]
    assert "decoded as 480x640, labelled as 640x480 (EXIF rotation?); re-save the image upright" in failed[0]
    assert sorted(p.name for p in paths.aug_labels("train").iterdir()) == ["upright.0.json", "upright.1.json"]


def test_augment_command_exits_1_when_an_image_fails(tmp_path, capsys):
    """The same run as a user sees it: exit 0 when every image was augmented, 1 when one failed."""
    from facetracker.cli import main

    paths = Paths(tmp_path)
    images, labels = paths.split_images("train"), paths.split_labels("train")
    write_frame(images, labels, "upright.jpg")
    argv = ["--root", str(tmp_path), "augment", "--splits", "train", "--per-image", "1", "--workers", "1"]
    assert main(argv) == 0
    phone = write_frame(images, labels, "phone.jpg")
    phone.write_bytes(with_exif_orientation(phone.read_bytes(), 6))
    assert main(argv) == 1
    assert "1 failed" in capsys.readouterr().out


def crash() -> None:
    os._exit(1)  # a worker killed mid-chunk (out of memory, kill -9)


def test_a_crashed_worker_fails_its_image_with_the_fix(tmp_path):
    """A worker process that dies for real breaks the pool; its chunk's image fails with the cause and the fix."""
    from concurrent.futures.process import BrokenProcessPool

    from facetracker.augment import _Chunk, chunk_result

    images, labels, out_images, out_labels = split_dirs(tmp_path)
    write_frame(images, labels, "a.jpg")
    sample = load_samples(images, labels)[0]
    chunk = _Chunk(sample, (0,), out_images, out_labels, 0, "fingerprint", build_transform())
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        future = pool.submit(crash)
        with pytest.raises(BrokenProcessPool):
            future.result()
        result = chunk_result(future, chunk)
    assert result.written == 0 and result.failure[0] == str(images / "a.jpg")
    assert result.failure[1].startswith("BrokenProcessPool: ")
    assert result.failure[1].endswith("(out of memory? in a script, call augment under "
                                      "`if __name__ == '__main__':`, or use workers=1)")


def test_importing_facetracker_turns_off_albumentations_online_version_check():
    """albumentations asks the package index for a newer release at import; offline that stalls and warns (a red
    block in the notebook). Importing facetracker turns the check off, unless the user chose otherwise."""
    code = "import os, facetracker; print(os.environ.get('NO_ALBUMENTATIONS_UPDATE'))"
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.strip() == "1", done.stderr
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**env, "NO_ALBUMENTATIONS_UPDATE": "0"})
    assert done.stdout.strip() == "0", done.stderr
