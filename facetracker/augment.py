"""Augment the split frames into many labelled crops (tutorial section 5).

The video turns each of its 90 frames into 60 random 450x450 crops with flips and colour
changes, so a model can learn from a few minutes of webcam footage. This module keeps that
pipeline in one editable place (`build_transform`) and writes the crops as the video did:
`aug_data/<split>/images/<stem>.<k>.jpg` and `aug_data/<split>/labels/<stem>.<k>.json` holding
`{"image": <source file name>, "bbox": [x1, y1, x2, y2] in [0, 1] of the crop, "class": 0 or 1}`
(a face without a box: class 1, bbox [0, 0, 0, 0]),
plus a `"fingerprint"` of what the crop was made from.

What we add to the video's loop:
- Every image is first scaled so its short side is `max(crop, FRAME_HEIGHT)` px: a 640x480 frame
  is untouched, a 320x240 one is enlarged instead of failing, a 1280x720 one is shrunk to the
  field of view of a webcam frame (the real-time path also sees whole frames at this scale).
- Visibility rule: a face keeps its box only while at least `MIN_VISIBILITY` of its area is inside
  the crop and the visible part is at least `MIN_BOX_PX` px wide and high. Cut to between
  `LABEL_MIN_VISIBILITY` and that, it is still a face (class 1) but without a box (bbox [0, 0, 0, 0]):
  the score head learns that half a face is a face, the box loss leaves the sliver out. Under it
  the crop is a negative (class 0, bbox [0, 0, 0, 0]). With the video's default (no rule), a crop
  showing a 5 px strip of cheek is labelled a face and the box head learns slivers. The transform
  carries the face's corners as keypoints (not clipped), which measure the share a crop shows.
- Reproducible: each output `<stem>.<k>` gets its own seed derived from `seed`, the stem and k,
  so the same seed gives the same files whatever the number of processes.
- Follows its sources: the fingerprint hashes the source image's bytes, the box and class read
  from its label, the seed and a full description of the pipeline (`A.to_dict`). A crop whose
  fingerprint no longer matches (a redrawn box, another seed, crop or transform) is made again;
  an unchanged rerun rewrites nothing. Crops of images no longer in the split are reported,
  and deleted only when asked (`prune=True`, `--prune`).
- Restartable: each file is written to a temp name and renamed; a sample's old JSON is removed
  before its new image is written and the new JSON is written last, so a sample counts as done
  exactly when a JSON with the right fingerprint exists. A killed run completes on the next.
- Parallel: all splits share one process pool, fed small chunks of samples, and this process
  works through chunks too while the pool starts. Failures are collected with the file and the
  reason and returned, never swallowed.
"""

import hashlib
import json
import os
import pickle
import random
import re
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context, parent_process
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from tqdm.auto import tqdm

from facetracker.annotations import Sample, list_images, load_samples
from facetracker.config import AUG_PER_IMAGE, CLASS_NAME, CROP_SIZE, FRAME_HEIGHT, SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import JPEG_QUALITY, TEMP_MARK, read_image, remove_temp_files, write_crop_label, write_image
from facetracker.geometry import (
    LABEL_MIN_VISIBILITY,
    MIN_BOX_PX,
    MIN_VISIBILITY,
    NO_BOX,
    Box,
    box_area,
    is_visible,
    ordered,
)

# With workers=None, a run with fewer samples to write stays in this process: a worker process
# imports albumentations before it writes anything, and a small run is over by then
# (benchmarks/bench_augment.py --quick measures a run just above this size).
PARALLEL_MIN_SAMPLES = 1000
# Samples per task handed to a process: small enough that the last tasks end close together,
# large enough that decoding the source image once per task costs little.
CHUNK_SAMPLES = 20
# Part of every fingerprint: bump it when the way a crop is made or written changes.
FINGERPRINT_VERSION = 1


@dataclass
class AugmentSummary:
    """What one run did for one split: samples written (new or redone), up to date, failures, warnings.

    `outdated` counts the written samples that replaced a crop made from another source, label or
    settings; `processes` is how many processes the run used, `writers` the ids of those that wrote here.
    """

    written: int = 0
    skipped: int = 0
    outdated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    processes: int = 1
    writers: set[int] = field(default_factory=set)

    def format(self) -> str:
        """One line of counts, then each warning and failure with its file and reason."""
        lines = [
            f"{self.written} written ({self.outdated} replacing outdated crops), {self.skipped} up to date, "
            f"{len(self.failed)} failed"
        ]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  failed: {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Chunk:
    """Samples `ks` of one source image to write (what a worker process receives)."""

    sample: Sample
    ks: tuple[int, ...]
    out_images: Path
    out_labels: Path
    seed: int
    fingerprint: str
    transform: A.Compose


@dataclass(frozen=True)
class _ChunkResult:
    """What a process did with one chunk: samples written, a failure (file, reason), its process id."""

    written: int
    failure: tuple[str, str] | None
    pid: int


@dataclass(frozen=True)
class _Target:
    """One split folder pair to read and the folder pair its crops go to."""

    images_dir: Path
    labels_dir: Path
    out_images: Path
    out_labels: Path


def build_transform(crop: int = CROP_SIZE) -> A.Compose:
    """The tutorial's augmentation pipeline, with a resize first and the visibility rule.

    Args:
        crop: side of the square random crop, in pixels (the video: 450).

    Returns:
        An `A.Compose` taking `image`, `bboxes` (albumentations format) and `class_labels`.
    """
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=max(crop, FRAME_HEIGHT)),
            A.RandomCrop(height=crop, width=crop, pad_if_needed=True),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(p=0.2),
            A.RandomGamma(p=0.2),
            A.RGBShift(p=0.2),
            A.VerticalFlip(p=0.5),
        ],
        bbox_params=A.BboxParams(
            format="albumentations",
            label_fields=["class_labels"],
            min_visibility=LABEL_MIN_VISIBILITY,
            min_width=MIN_BOX_PX,
            min_height=MIN_BOX_PX,
            clip=True,
        ),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )


def reseed(transform: A.Compose, seed: int) -> None:
    """Seed a pipeline with one random stream shared by all its transforms.

    Not `Compose(seed=...)`: in albumentations 2.0.8 that gives every transform its own
    generator with the same seed, so HorizontalFlip and VerticalFlip (both p=0.5) always
    flip together and the pipeline never makes a single flip.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def sample_seed(seed: int, stem: str, k: int) -> int:
    """The seed of output `<stem>.<k>`: the same in any process and on any run."""
    digest = hashlib.blake2b(f"{seed}/{stem}/{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def augment_image(
    image: np.ndarray, box: Box | None, transform: A.Compose, seed: int | None = None
) -> tuple[np.ndarray, tuple[float, ...], int]:
    """One augmented sample: (image, bbox in [0, 1] of the output, class 1 or 0 for no object).

    A face the crop cuts under `MIN_VISIBILITY` (but kept by the transform's own, lower rule) is class 1
    with NO_BOX. A transform without keypoint_params boxes every face it keeps.
    """
    if seed is not None:
        reseed(transform, seed)
    boxes, labels = ([box], [1]) if box is not None else ([], [])
    inputs = {"image": image, "bboxes": np.array(boxes, dtype=np.float32).reshape(-1, 4), "class_labels": labels}
    carries_corners = "keypoints" in getattr(transform, "processors", {})
    if carries_corners:
        inputs["keypoints"] = corner_points(box, image.shape)
    result = transform(**inputs)
    if len(result["bboxes"]) == 0:
        return result["image"], NO_BOX, 0
    bbox = tuple(float(v) for v in result["bboxes"][0])
    if carries_corners and not shows_enough(bbox, result["keypoints"], result["image"].shape):
        return result["image"], NO_BOX, 1
    return result["image"], bbox, 1


def corner_points(box: Box | None, shape: tuple[int, ...]) -> np.ndarray:
    """The corners of a normalised box as keypoints in pixels [2, 2] (none [0, 2] without a box)."""
    if box is None:
        return np.zeros((0, 2), dtype=np.float32)
    height, width = shape[:2]
    return np.array([[box[0] * width, box[1] * height], [box[2] * width, box[3] * height]], dtype=np.float32)


def shows_enough(bbox: tuple[float, ...], corners: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether the cropped box (normalised) keeps MIN_VISIBILITY of the whole face its corners span."""
    height, width = shape[:2]
    whole = box_area(ordered(np.ravel(corners)))  # a flip swaps the corners
    return is_visible(box_area(bbox) * width * height, whole, MIN_VISIBILITY)


def output_paths(out_images: Path, out_labels: Path, stem: str, k: int) -> tuple[Path, Path]:
    """(image, label) paths of augmented sample k of a source image."""
    return out_images / f"{stem}.{k}.jpg", out_labels / f"{stem}.{k}.json"


def write_sample(
    image_path: Path,
    label_path: Path,
    image: np.ndarray,
    bbox: tuple[float, ...],
    cls: int,
    source: str,
    fingerprint: str,
) -> None:
    """Write one augmented sample: the JPEG first, the JSON (with the fingerprint) last."""
    write_image(image_path, image)
    write_crop_label(label_path, source, bbox, cls, fingerprint)


# ---------------------------------------------------------------------------------------------
# Fingerprints: what a crop was made from


def describe_transform(transform: A.Compose) -> str:
    """A description of a pipeline that is the same in every run: `A.to_dict`, else `describe_parts`."""
    try:
        return json.dumps(A.to_dict(transform), sort_keys=True)
    except Exception:  # noqa: BLE001 - e.g. an unnamed A.Lambda, which to_dict (and repr) refuse
        return describe_parts(transform)


# Attributes of a transform that change as it runs, not what it does.
RUNTIME_STATE = ("params", "processors", "py_random", "random_generator", "invalid_args", "seed")


def describe_parts(part: object) -> str:
    """Class names and settings of a pipeline, its functions by name and bytecode, without memory addresses."""
    children = getattr(part, "transforms", None)
    if isinstance(children, list | tuple):
        return f"{type(part).__qualname__}[{', '.join(describe_parts(child) for child in children)}]"
    if isinstance(part, dict):
        return "{" + ", ".join(f"{key!r}: {describe_parts(value)}" for key, value in part.items()) + "}"
    if hasattr(part, "__code__"):
        code = part.__code__
        return f"{part.__qualname__}:{hashlib.blake2b(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]}"
    if not hasattr(part, "__dict__") or not isinstance(part, A.BasicTransform):
        return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(part))
    settings = {k: v for k, v in sorted(vars(part).items()) if not k.startswith("_") and k not in RUNTIME_STATE}
    return f"{type(part).__qualname__}({describe_parts(settings)})"


def settings_key(transform: A.Compose, seed: int) -> str:
    """Everything besides the source that decides a crop's bytes: pipeline, seed, JPEG quality, version."""
    settings = {
        "version": FINGERPRINT_VERSION,
        "seed": seed,
        "jpeg_quality": JPEG_QUALITY,
        "transform": describe_transform(transform),
    }
    return json.dumps(settings, sort_keys=True)


def source_fingerprint(sample: Sample, settings: str) -> str:
    """Hash of the source image's bytes, its name, the box and class read from its label, and `settings`."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(settings.encode())
    digest.update(sample.image.read_bytes())
    read = {"image": sample.image.name, "box": sample.box, "class": int(sample.box is not None)}
    digest.update(json.dumps(read).encode())
    return digest.hexdigest()


def read_fingerprint(label_path: Path) -> str | None:
    """The fingerprint stored in an augmented label, or None (missing, unreadable, or from an older version)."""
    try:
        data = json.loads(label_path.read_bytes())
    except (OSError, ValueError):
        return None
    return data.get("fingerprint") if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------------------
# Planning: which samples to write, in chunks


def chunked(ks: list[int], size: int = CHUNK_SAMPLES) -> list[tuple[int, ...]]:
    """`ks` cut into consecutive runs of at most `size`, as even as possible."""
    n = -(-len(ks) // size)
    return [tuple(ks[i * len(ks) // n : (i + 1) * len(ks) // n]) for i in range(n)]


def plan_target(
    target: _Target, samples: list[Sample], per_image: int, seed: int, transform: A.Compose
) -> tuple[list[_Chunk], AugmentSummary]:
    """The chunks still to write for one split (missing or outdated samples) and a summary of the rest."""
    summary = AugmentSummary()
    settings = settings_key(transform, seed)
    images_there = {p.name for p in target.out_images.iterdir()}
    chunks = []
    for sample in samples:
        fingerprint = source_fingerprint(sample, settings)
        todo = []
        for k in range(per_image):
            image_path, label_path = output_paths(target.out_images, target.out_labels, sample.image.stem, k)
            found = read_fingerprint(label_path)
            if found == fingerprint and image_path.name in images_there:
                summary.skipped += 1
                continue
            todo.append(k)
            summary.outdated += found is not None
        if not todo:
            continue
        chunks += [
            _Chunk(sample, ks, target.out_images, target.out_labels, seed, fingerprint, transform)
            for ks in chunked(todo)
        ]
    return chunks, summary


# ---------------------------------------------------------------------------------------------
# Writing: one chunk, in any process


def augment_chunk(chunk: _Chunk) -> _ChunkResult:
    """Write the samples of one chunk (runs in a worker process, or in this one)."""
    sample, written = chunk.sample, 0
    try:
        image = read_image(sample.image)
        if image.shape[:2] != (sample.height, sample.width):
            raise ValueError(
                f"decoded as {image.shape[1]}x{image.shape[0]}, labelled as "
                f"{sample.width}x{sample.height} (EXIF rotation?); re-save the image upright"
            )
        stem = sample.image.stem
        for k in chunk.ks:
            image_path, label_path = output_paths(chunk.out_images, chunk.out_labels, stem, k)
            label_path.unlink(missing_ok=True)  # an old label must never vouch for the new image
            out, bbox, cls = augment_image(image, sample.box, chunk.transform, sample_seed(chunk.seed, stem, k))
            write_sample(image_path, label_path, out, bbox, cls, sample.image.name, chunk.fingerprint)
            written += 1
    except Exception as error:  # reported per file in the summary, not swallowed
        return _ChunkResult(written, (str(sample.image), f"{type(error).__name__}: {error}"), os.getpid())
    return _ChunkResult(written, None, os.getpid())


def init_worker(started: Synchronized) -> None:
    """Set up a worker process: one OpenCV thread, exit as soon as the parent is gone, then count itself in.

    Without the watch, a worker whose parent was killed (kill -9, a crashed notebook kernel) would
    finish its chunk and then wait forever for more work.
    """
    cv2.setNumThreads(1)
    parent = parent_process()
    if parent is not None:
        threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()
    with started.get_lock():
        started.value += 1


def exit_with_parent(parent: BaseProcess) -> None:
    """Block until `parent` ends, then end this process at once."""
    parent.join()
    os._exit(1)


@dataclass(frozen=True)
class _WorkerPool:
    """Worker processes, started as early as possible: `started` counts those ready for work."""

    executor: ProcessPoolExecutor
    started: Synchronized


def start_pool(size: int) -> _WorkerPool:
    """Start `size` worker processes now; they import albumentations while this process plans the work."""
    # spawn, not fork: forked workers hung here once this process had used OpenCV's thread pool
    # (and TensorFlow's threads in a notebook would do the same).
    context = get_context("spawn")
    started = context.Value("i", 0)
    executor = ProcessPoolExecutor(size, mp_context=context, initializer=init_worker, initargs=(started,))
    executor.submit(int)  # a no-op: makes the executor start its processes
    return _WorkerPool(executor, started)


def run_chunks(chunks: list[_Chunk], pool: _WorkerPool | None, progress: bool) -> list[tuple[_Chunk, _ChunkResult]]:
    """Write every chunk, in this process alone (no pool) or with the pool's processes too.

    This process works through chunks as well; a worker process is handed chunks only once it has
    started (importing albumentations takes it a while), two at a time so it never waits for the next.

    Returns:
        (chunk, result) pairs, in no particular order.
    """
    bar = tqdm(total=sum(len(c.ks) for c in chunks), desc="augment", unit="sample", disable=not progress)
    results = []

    def local(chunk: _Chunk) -> None:
        results.append((chunk, augment_chunk(chunk)))
        bar.update(len(chunk.ks))

    if pool is None:
        for chunk in chunks:
            local(chunk)
        bar.close()
        return results
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # this process is one of the workers now
    pending, in_flight, broken = deque(chunks), {}, False
    try:
        while pending or in_flight:
            while pending and len(in_flight) < 2 * pool.started.value and not broken:
                try:
                    in_flight[pool.executor.submit(augment_chunk, pending[0])] = pending[0]
                    pending.popleft()
                except BrokenProcessPool:  # a worker died: this process finishes the rest alone
                    broken = True
            if pending:
                local(pending.popleft())
            else:
                wait(in_flight, return_when=FIRST_COMPLETED)
            for future in [f for f in in_flight if f.done()]:
                chunk = in_flight.pop(future)
                results.append((chunk, chunk_result(future, chunk)))
                bar.update(len(chunk.ks))
    finally:
        cv2.setNumThreads(threads)
        bar.close()
    return results


def chunk_result(future: Future, chunk: _Chunk) -> _ChunkResult:
    """A finished chunk's result; a crashed worker becomes a failure of that chunk's image."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        reason = (
            f"BrokenProcessPool: {error} (out of memory? in a script, call augment under "
            "`if __name__ == '__main__':`, or use workers=1)"
        )
        return _ChunkResult(0, (str(chunk.sample.image), reason), 0)
    except Exception as error:  # reported with its file, not swallowed
        return _ChunkResult(0, (str(chunk.sample.image), f"{type(error).__name__}: {error}"), 0)


# ---------------------------------------------------------------------------------------------
# Checks and clean-up


def clear_outputs(*folders: Path) -> None:
    """Delete earlier augmented samples (images, labels and temp files) in the output folders."""
    for folder in folders:
        for path in folder.iterdir():
            if path.is_file() and (path.suffix.lower() in (".jpg", ".json") or TEMP_MARK in path.name):
                path.unlink()


def stale_outputs(samples: list[Sample], per_image: int, *folders: Path) -> list[Path]:
    """Crops in the output folders that this run would not make (sources gone from the split, k >= per_image)."""
    expected = {f"{s.image.stem}.{k}" for s in samples for k in range(per_image)}
    return [
        p
        for folder in folders
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in (".jpg", ".json") and p.stem not in expected
    ]


def source_stem(crop: Path) -> str:
    """The source image's stem of a crop file: `<stem>.<k>.jpg` -> `<stem>`."""
    return crop.stem.rsplit(".", 1)[0]


def stale_report(target: _Target, samples: list[Sample], per_image: int, prune: bool) -> list[str]:
    """Report (or, with prune, delete and report) the crops this run would not make; they would be trained on."""
    stale = stale_outputs(samples, per_image, target.out_images, target.out_labels)
    if not stale:
        return []
    in_split = {s.image.stem for s in samples}
    gone = sorted({source_stem(p) for p in stale} - in_split)
    what = f"{len(stale)} files ({', '.join(p.name for p in stale[:3])}, ...)"
    why = (
        f"of {len(gone)} image(s) no longer in {target.images_dir} ({', '.join(gone[:5])}"
        f"{', ...' if len(gone) > 5 else ''}) or numbered >= per_image={per_image}"
    )
    if prune:
        for path in stale:
            path.unlink()
        return [f"{target.out_images.parent}: deleted {what} {why}."]
    return [
        f"{target.out_images.parent}: {what} {why}; training would still use them: run again with "
        "prune=True (--prune) to delete them, or fresh=True (--fresh) to rebuild everything."
    ]


def check_transform(transform: A.Compose, workers: int) -> None:
    """Refuse a pipeline that cannot carry boxes, or cannot reach worker processes."""
    processor = getattr(transform, "processors", {}).get("bboxes")
    if processor is None or "class_labels" not in (processor.params.label_fields or []):
        raise FaceTrackerError(
            "augment: the transform must be an A.Compose with "
            "bbox_params=A.BboxParams(format='albumentations', label_fields=['class_labels'])."
        )
    if workers > 1:
        try:
            pickle.dumps(transform)
        except Exception as error:
            raise FaceTrackerError(
                f"augment: the transform cannot be sent to worker processes ({error}); "
                "use module-level functions instead of lambdas, or workers=1."
            ) from error


def check_options(per_image: int, crop: int, workers: int | None, transform: A.Compose | None) -> None:
    """Refuse settings that cannot make any sample, with the flag to fix."""
    if per_image < 1:
        raise FaceTrackerError(f"--per-image {per_image}: give the number of augmented samples per image (>= 1).")
    if transform is None and crop < 1:
        raise FaceTrackerError(f"--crop {crop}: give the side of the square crop in pixels (>= 1), e.g. 450.")
    if workers is not None and workers < 1:
        raise FaceTrackerError(f"--workers {workers}: give a number of processes >= 1 (or leave it out: all cores).")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it, else all)."""
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def auto_workers(to_write: int) -> int:
    """Processes for `to_write` samples when none are asked for: one per core from PARALLEL_MIN_SAMPLES, else 1."""
    return usable_cores() if to_write >= PARALLEL_MIN_SAMPLES else 1


def early_workers(targets: dict[str, _Target], per_image: int, workers: int | None, fresh: bool) -> int:
    """Processes to start before planning, judged from folder listings alone (1: wait for the plan).

    Sources x per_image, less the labels already written, is what a run writes unless crops are
    outdated; only reading every label can tell that, so outdated crops get their pool after the plan.
    """
    if workers is not None:
        return workers
    sources = sum(len(list_images(t.images_dir)) for t in targets.values() if t.images_dir.is_dir())
    written = (
        0 if fresh else sum(len(list(t.out_labels.glob("*.json"))) for t in targets.values() if t.out_labels.is_dir())
    )
    return auto_workers(sources * per_image - written)


# ---------------------------------------------------------------------------------------------
# The step


def load_target(target: _Target, class_name: str) -> list[Sample]:
    """The samples of one split folder; an error when there are none or two share a stem."""
    samples = load_samples(target.images_dir, target.labels_dir, class_name)
    if not samples:
        raise FaceTrackerError(f"{target.images_dir}: no images to augment; run `facetracker split` first.")
    return samples


def prepare_outputs(target: _Target, fresh: bool) -> None:
    """Make the output folders; remove temp files of a killed run, and with `fresh` every earlier output."""
    target.out_images.mkdir(parents=True, exist_ok=True)
    target.out_labels.mkdir(parents=True, exist_ok=True)
    if fresh:
        clear_outputs(target.out_images, target.out_labels)
    remove_temp_files(target.out_images, target.out_labels)


def augment_targets(
    targets: dict[str, _Target],
    per_image: int = AUG_PER_IMAGE,
    crop: int = CROP_SIZE,
    workers: int | None = None,
    seed: int = 0,
    transform: A.Compose | None = None,
    class_name: str = CLASS_NAME,
    fresh: bool = False,
    prune: bool = False,
    progress: bool = True,
) -> dict[str, AugmentSummary]:
    """Bring the crops of several split folders up to date, with one pool for all.

    A sample is written when it is missing or its fingerprint (source image bytes, the box read
    from its label, seed, pipeline) no longer matches; an up-to-date sample is left alone.

    Args:
        targets: name -> a split folder (its frames and labelme files, read only) and where its
            `<stem>.<k>.jpg` and `<stem>.<k>.json` go.
        per_image: augmented samples per source image (the video: 60).
        crop: crop side for the default pipeline (ignored when `transform` is given).
        workers: processes to use, this one included; None: one per CPU core when there are at least
            PARALLEL_MIN_SAMPLES samples to write, else 1.
        seed: base seed; the same seed writes the same files whatever `workers` is.
        transform: your own pipeline (an `A.Compose` with bbox_params label_fields=['class_labels']).
        class_name: the labelme label of the object.
        fresh: delete earlier outputs first and make every sample again.
        prune: delete crops this run would not make (images gone from the split, k >= per_image)
            instead of only reporting them.
        progress: show a progress bar.
    Returns:
        name -> an AugmentSummary: samples written (and how many replaced outdated ones), up to date, failures.
    """
    check_options(per_image, crop, workers, transform)
    transform = transform if transform is not None else build_transform(crop)
    early = early_workers(targets, per_image, workers, fresh)
    pool = start_pool(early - 1) if early > 1 else None
    pool_used = False
    try:
        loaded = {name: load_target(target, class_name) for name, target in targets.items()}
        summaries, chunks, owner = {}, [], {}
        for name, target in targets.items():
            prepare_outputs(target, fresh)
            planned, summaries[name] = plan_target(target, loaded[name], per_image, seed, transform)
            chunks += planned
            owner.update({id(chunk): name for chunk in planned})
        workers = workers or auto_workers(sum(len(chunk.ks) for chunk in chunks))
        check_transform(transform, workers)
        workers = max(1, min(workers, len(chunks)))
        if workers > 1 and pool is None:
            pool = start_pool(workers - 1)
        pool_used = workers > 1
        results = run_chunks(chunks, pool if pool_used else None, progress)
    finally:
        if pool is not None:  # a pool that got no work is not waited for
            pool.executor.shutdown(wait=pool_used, cancel_futures=True)
    for chunk, result in results:
        summary = summaries[owner[id(chunk)]]
        summary.written += result.written
        if result.written:
            summary.writers.add(result.pid)
        if result.failure and result.failure not in summary.failed:
            summary.failed.append(result.failure)
    for name, target in targets.items():
        summary = summaries[name]
        summary.processes = workers
        summary.failed.sort()
        summary.warnings[:0] = [w for s in loaded[name] for w in s.warnings]
        summary.warnings += stale_report(target, loaded[name], per_image, prune)
    return summaries


def augment_dataset(paths: Paths, splits: Iterable[str] = SPLITS, **options) -> dict[str, AugmentSummary]:
    """Augment data/<split> into aug_data/<split> for each split, one pool for all; options as `augment_targets`."""
    targets = {
        split: _Target(
            paths.split_images(split), paths.split_labels(split), paths.aug_images(split), paths.aug_labels(split)
        )
        for split in splits
    }
    return augment_targets(targets, **options)
