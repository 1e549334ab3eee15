"""Augment the split frames into many labelled crops (tutorial section 5).

The video turns each of its 90 frames into 60 random 450x450 crops with flips and colour
changes, so a model can learn from a few minutes of webcam footage. This module keeps that
pipeline in one editable place (`build_transform`) and writes the crops as the video did:
`aug_data/<split>/images/<stem>.<k>.jpg` and `aug_data/<split>/labels/<stem>.<k>.json` holding
`{"image": <source file name>, "bbox": [x1, y1, x2, y2] in [0, 1] of the crop, "class": 0 or 1}`.

What we add to the video's loop:
- Every image is first scaled so its short side is `max(crop, FRAME_HEIGHT)` px: a 640x480 frame
  is untouched, a 320x240 one is enlarged instead of failing, a 1280x720 one is shrunk to the
  field of view of a webcam frame (the real-time path also sees whole frames at this scale).
- Visibility rule: a face keeps its label only while at least `MIN_VISIBILITY` of its area is
  inside the crop and the visible part is at least `MIN_BOX_PX` px wide and high; otherwise
  the crop is a negative (class 0, bbox [0, 0, 0, 0]). With the video's default (no rule),
  a crop showing a 5 px strip of cheek is labelled a face and the box head learns slivers.
- Reproducible: each output `<stem>.<k>` gets its own seed derived from `seed`, the stem and k,
  so the same seed gives the same files whatever the number of workers.
- Restartable: each file is written to a temp name and renamed; the JSON is written last, so
  a sample exists exactly when its JSON does. A second run skips finished samples.
- Parallel: one task per source image over a process pool, with a progress bar. Failures are
  collected with the file and the reason and returned, never swallowed.
"""

import hashlib
import json
import os
import pickle
import random
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import as_completed as futures_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from tqdm.auto import tqdm

from facetracker.annotations import Box, Sample, load_samples
from facetracker.config import AUG_PER_IMAGE, CLASS_NAME, CROP_SIZE, FRAME_HEIGHT, SPLITS, Paths
from facetracker.errors import FaceTrackerError

# A face stays a face while >= 30% of its area is in the crop (less than a third of a face is
# not something the detector should fire on) and the visible part is >= 20 px each way
# (about 5 px once the 450 px crop is resized to the 120 px network input).
MIN_VISIBILITY = 0.3
MIN_BOX_PX = 20
JPEG_QUALITY = 95
# Below this many samples to write, one process beats a pool: spawning a worker (importing albumentations)
# costs ~1.5-3 s here. Measured on 2 cores: 63 frames x 60 copies, 2 workers 536 vs 1 worker 327 samples/s;
# 63 x 20, 281-314 vs 234-260; 28 x 10, 150-166 vs 266-322.
PARALLEL_MIN_SAMPLES = 1000
TMP_SUFFIX = ".tmp"
NEGATIVE_BOX = (0.0, 0.0, 0.0, 0.0)


@dataclass
class AugmentSummary:
    """What one run wrote: samples written, samples already there, and failures (file, reason)."""

    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, other: "AugmentSummary") -> None:
        """Fold another summary into this one."""
        self.written += other.written
        self.skipped += other.skipped
        self.failed.extend(other.failed)
        self.warnings.extend(other.warnings)

    def format(self) -> str:
        """One line of counts, then each warning and failure with its file and reason."""
        lines = [f"{self.written} written, {self.skipped} already there, {len(self.failed)} failed"]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  failed: {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    """One source image to augment `per_image` times (what a worker process receives)."""

    sample: Sample
    out_images: Path
    out_labels: Path
    per_image: int
    seed: int
    transform: A.Compose


def build_transform(crop: int = CROP_SIZE, seed: int | None = None) -> A.Compose:
    """The tutorial's augmentation pipeline, with a resize first and the visibility rule.

    Args:
        crop: side of the square random crop, in pixels (the video: 450).
        seed: makes the pipeline's random draws repeatable; None draws fresh ones.

    Returns:
        An `A.Compose` taking `image`, `bboxes` (albumentations format) and `class_labels`.
    """
    transform = A.Compose(
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
            min_visibility=MIN_VISIBILITY,
            min_width=MIN_BOX_PX,
            min_height=MIN_BOX_PX,
            clip=True,
        ),
    )
    if seed is not None:
        reseed(transform, seed)
    return transform


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


def read_image(path: Path) -> np.ndarray:
    """An image file as a 3-channel BGR uint8 array (grayscale and PNG alpha converted)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("cannot be read as an image")
    return image


def augment_image(image: np.ndarray, box: Box | None, transform: A.Compose,
                  seed: int | None = None) -> tuple[np.ndarray, tuple[float, ...], int]:
    """One augmented sample: (image, bbox in [0, 1] of the output, class 1 or 0 for no object)."""
    if seed is not None:
        reseed(transform, seed)
    boxes, labels = ([box], [1]) if box is not None else ([], [])
    result = transform(image=image, bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), class_labels=labels)
    if len(result["bboxes"]) == 0:
        return result["image"], NEGATIVE_BOX, 0
    return result["image"], tuple(float(v) for v in result["bboxes"][0]), 1


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file under a temp name, then rename it: readers never see a partial file."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def output_paths(out_images: Path, out_labels: Path, stem: str, k: int) -> tuple[Path, Path]:
    """(image, label) paths of augmented sample k of a source image."""
    return out_images / f"{stem}.{k}.jpg", out_labels / f"{stem}.{k}.json"


def write_sample(image_path: Path, label_path: Path, image: np.ndarray, bbox: tuple[float, ...],
                 cls: int, source: str) -> None:
    """Write one augmented sample: the JPEG first, the JSON last."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"JPEG encoding failed for {image_path.name}")
    write_atomic(image_path, jpeg.tobytes())
    label = {"image": source, "bbox": [float(v) for v in bbox], "class": int(cls)}
    write_atomic(label_path, json.dumps(label).encode())


def check_box(sample: Sample) -> None:
    """Refuse a label whose box has no area (albumentations raises on it)."""
    box = sample.box
    if box is not None and (box[2] <= box[0] or box[3] <= box[1]):
        raise ValueError(f"the box in {sample.label} has no area; redraw it in labelme")


def augment_source(job: _Job) -> AugmentSummary:
    """Write the missing augmented samples of one source image (runs in a worker)."""
    summary = AugmentSummary()
    sample = job.sample
    try:
        todo = [k for k in range(job.per_image) if not is_complete(job, k)]
        summary.skipped = job.per_image - len(todo)
        if not todo:
            return summary
        check_box(sample)
        image = read_image(sample.image)
        if image.shape[:2] != (sample.height, sample.width):
            raise ValueError(f"decoded as {image.shape[1]}x{image.shape[0]}, labelled as "
                             f"{sample.width}x{sample.height} (EXIF rotation?); re-save the image upright")
        stem = sample.image.stem
        for k in todo:
            out, bbox, cls = augment_image(image, sample.box, job.transform, sample_seed(job.seed, stem, k))
            write_sample(*output_paths(job.out_images, job.out_labels, stem, k), out, bbox, cls, sample.image.name)
            summary.written += 1
    except Exception as error:  # reported per file in the summary, not swallowed
        summary.failed.append((str(sample.image), f"{type(error).__name__}: {error}"))
    return summary


def is_complete(job: _Job, k: int) -> bool:
    """True when sample k of the job's image exists (its JSON is written last)."""
    image_path, label_path = output_paths(job.out_images, job.out_labels, job.sample.image.stem, k)
    return label_path.is_file() and image_path.is_file()


def remove_temp_files(*folders: Path) -> int:
    """Delete temp files an interrupted run left behind; return how many."""
    leftovers = [p for folder in folders for p in folder.glob(f"*{TMP_SUFFIX}")]
    for path in leftovers:
        path.unlink()
    return len(leftovers)


def clear_outputs(*folders: Path) -> None:
    """Delete earlier augmented samples (images, labels and temp files) in the output folders."""
    for folder in folders:
        for path in folder.iterdir():
            if path.is_file() and path.suffix.lower() in (".jpg", ".json", TMP_SUFFIX):
                path.unlink()


def stale_outputs(samples: list[Sample], per_image: int, *folders: Path) -> list[Path]:
    """Files in the output folders that this run would not produce (other per_image, removed sources)."""
    expected = {f"{s.image.stem}.{k}" for s in samples for k in range(per_image)}
    return [p for folder in folders for p in sorted(folder.iterdir()) if p.is_file() and p.stem not in expected]


def check_transform(transform: A.Compose, workers: int) -> None:
    """Refuse a pipeline that cannot carry boxes, or cannot reach worker processes."""
    processor = getattr(transform, "processors", {}).get("bboxes")
    if processor is None or "class_labels" not in (processor.params.label_fields or []):
        raise FaceTrackerError("augment: the transform must be an A.Compose with "
                               "bbox_params=A.BboxParams(format='albumentations', label_fields=['class_labels']).")
    if workers > 1:
        try:
            pickle.dumps(transform)
        except Exception as error:
            raise FaceTrackerError(f"augment: the transform cannot be sent to worker processes ({error}); "
                                   "use module-level functions instead of lambdas, or workers=1.") from error


def check_stems(samples: list[Sample]) -> None:
    """Refuse two source images with the same stem: their outputs would overwrite each other."""
    seen: dict[str, Path] = {}
    for sample in samples:
        other = seen.setdefault(sample.image.stem, sample.image)
        if other != sample.image:
            raise FaceTrackerError(f"{other} and {sample.image} share the name '{sample.image.stem}'; rename one.")


def run_jobs(jobs: list[_Job], workers: int, desc: str, progress: bool) -> AugmentSummary:
    """Run jobs in this process (workers=1) or over a process pool, with a progress bar."""
    summary = AugmentSummary()
    bar = tqdm(total=len(jobs), desc=desc, unit="image", disable=not progress)
    if workers <= 1:
        for job in jobs:
            summary.add(augment_source(job))
            bar.update()
        bar.close()
        return summary
    # spawn, not fork: forked workers hung here once this process had used OpenCV's thread pool
    # (and TensorFlow's threads in a notebook would do the same). Spawn costs ~1.5 s per worker to start.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=init_worker)
    try:
        futures: dict[Future, _Job] = {pool.submit(augment_source, job): job for job in jobs}
        for future in futures_completed(futures):
            summary.add(job_result(future, futures[future]))
            bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return summary


def init_worker() -> None:
    """One OpenCV thread per worker process: the processes already fill the cores."""
    cv2.setNumThreads(1)


def job_result(future: Future, job: _Job) -> AugmentSummary:
    """A finished job's summary; a crashed worker becomes a failure of that job's image."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        reason = (f"BrokenProcessPool: {error} (out of memory? in a script, call augment under "
                  "`if __name__ == '__main__':`, or use workers=1)")
        return AugmentSummary(failed=[(str(job.sample.image), reason)])
    except Exception as error:  # reported with its file, not swallowed
        return AugmentSummary(failed=[(str(job.sample.image), f"{type(error).__name__}: {error}")])


def augment_split(images_dir: Path, labels_dir: Path, out_images: Path, out_labels: Path,
                  per_image: int = AUG_PER_IMAGE, crop: int = CROP_SIZE, workers: int | None = None,
                  seed: int = 0, transform: A.Compose | None = None, class_name: str = CLASS_NAME,
                  fresh: bool = False, progress: bool = True) -> AugmentSummary:
    """Write `per_image` augmented samples of every image in one split folder.

    Args:
        images_dir, labels_dir: the split's frames and labelme files (read only).
        out_images, out_labels: where `<stem>.<k>.jpg` and `<stem>.<k>.json` go.
        per_image: augmented samples per source image (the video: 60).
        crop: crop side for the default pipeline (ignored when `transform` is given).
        workers: processes to use; None: one per CPU core when there are at least PARALLEL_MIN_SAMPLES
            samples to write, else 1 (starting a worker costs about as much as writing 500 samples).
        seed: base seed; the same seed writes the same files whatever `workers` is.
        transform: your own pipeline (an `A.Compose` with bbox_params label_fields=['class_labels']).
        class_name: the labelme label of the object.
        fresh: delete earlier outputs first instead of completing them.
        progress: show a progress bar.

    Returns:
        An AugmentSummary: samples written and skipped, and failures as (file, reason).
    """
    if per_image < 1:
        raise FaceTrackerError(f"--per-image {per_image}: give the number of augmented samples per image (>= 1).")
    if transform is None and crop < 1:
        raise FaceTrackerError(f"--crop {crop}: give the side of the square crop in pixels (>= 1), e.g. 450.")
    if workers is not None and workers < 0:
        raise FaceTrackerError(f"--workers {workers}: give a number of processes >= 1 (or leave it out: all cores).")
    transform = transform if transform is not None else build_transform(crop)
    samples = load_samples(images_dir, labels_dir, class_name)
    if not samples:
        raise FaceTrackerError(f"{images_dir}: no images to augment; run `facetracker split` first.")
    check_stems(samples)
    out_images.mkdir(parents=True, exist_ok=True)
    out_labels.mkdir(parents=True, exist_ok=True)
    if fresh:
        clear_outputs(out_images, out_labels)
    remove_temp_files(out_images, out_labels)
    jobs = [_Job(s, out_images, out_labels, per_image, seed, transform) for s in samples]
    if workers is None:
        to_write = sum(not is_complete(job, k) for job in jobs for k in range(per_image))
        workers = (os.cpu_count() or 1) if to_write >= PARALLEL_MIN_SAMPLES else 1
    check_transform(transform, workers)
    summary = run_jobs(jobs, min(workers, len(jobs)), f"augment {images_dir.parent.name}", progress)
    summary.failed.sort()
    summary.warnings[:0] = [w for s in samples for w in s.warnings]
    summary.warnings.extend(stale_warning(samples, per_image, out_images, out_labels))
    return summary


def stale_warning(samples: list[Sample], per_image: int, out_images: Path, out_labels: Path) -> list[str]:
    """A warning naming outputs this run did not make (they would still be trained on)."""
    stale = stale_outputs(samples, per_image, out_images, out_labels)
    if not stale:
        return []
    names = ", ".join(p.name for p in stale[:3])
    return [f"{out_images.parent}: {len(stale)} files not from these sources or per_image ({names}, ...); "
            "run again with fresh=True (--fresh) to rebuild."]


def augment_dataset(paths: Paths, splits: Iterable[str] = SPLITS, **options) -> dict[str, AugmentSummary]:
    """Augment data/<split> into aug_data/<split> for each split; options go to `augment_split`."""
    return {
        split: augment_split(paths.split_images(split), paths.split_labels(split),
                             paths.aug_images(split), paths.aug_labels(split), **options)
        for split in splits
    }
