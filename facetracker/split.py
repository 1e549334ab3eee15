"""Partition the frames into train / test / val (tutorial section 3).

The tutorial moves files by hand, 70/15/15 (63/14/13 of 90). Here the raw frames in
data/images and data/labels stay where they are; copies go to data/{train,test,val}/{images,labels}.

The split is stable: an image already in a split folder keeps its split, and only new images are
placed, in an order fixed by a hash of the seed and the file name, each into the split furthest
below its share. Re-running is safe: identical copies are left alone, a changed image or label is
copied again. Nothing is ever deleted: a split label whose raw label has gone is reported (copy it
back or delete it), and images that exist only in a split folder (a split made by hand, as in the
video) are kept as they are; while data/images holds frames, `orphaned_copies` names them, since
a frame deleted from data/images would otherwise live on in its split and in aug_data.
"""

import hashlib
from pathlib import Path

from facetracker.annotations import list_images, shared_stems
from facetracker.config import SPLIT_RATIOS, SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.fileio import atomic_copy


def check_ratios(ratios: tuple[float, ...]) -> tuple[float, ...]:
    """Ratios for (train, test, val): three non-negative numbers summing to 1."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != len(SPLITS) or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise FaceTrackerError(
            f"--ratios {ratios}: give {len(SPLITS)} non-negative shares for {'/'.join(SPLITS)} that sum to 1, "
            "e.g. 0.7 0.15 0.15."
        )
    return ratios


def target_counts(total: int, ratios: tuple[float, ...]) -> list[int]:
    """Whole-image counts per split for `total` images (largest remainder; 90 -> 63/14/13)."""
    exact = [total * r for r in ratios]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def current_assignment(paths: Paths) -> dict[str, str]:
    """stem -> split for the images already in the split folders; error if one is in two splits."""
    found: dict[str, Path] = {}
    assignment: dict[str, str] = {}
    for split in SPLITS:
        for image in list_images(paths.split_images(split)):
            if assignment.get(image.stem, split) != split:
                raise FaceTrackerError(
                    f"{image.stem} is in two splits: {found[image.stem]} and {image}; delete one of the copies."
                )
            found[image.stem] = image
            assignment[image.stem] = split
    return assignment


def placement_order(stems: list[str], seed: int) -> list[str]:
    """New images in a pseudo-random order fixed by the seed and their names."""
    return sorted(stems, key=lambda stem: hashlib.sha256(f"{seed}:{stem}".encode()).hexdigest())


def assign(paths: Paths, stems: list[str], ratios: tuple[float, ...], seed: int) -> dict[str, str]:
    """stem -> split: existing images keep theirs, new ones fill the splits toward `ratios`."""
    assignment = current_assignment(paths)
    new = [stem for stem in stems if stem not in assignment]
    counts = {split: list(assignment.values()).count(split) for split in SPLITS}
    targets = dict(zip(SPLITS, target_counts(len(assignment) + len(new), ratios), strict=True))
    for stem in placement_order(new, seed):
        split = max(SPLITS, key=lambda s: (targets[s] - counts[s], -SPLITS.index(s)))
        assignment[stem] = split
        counts[split] += 1
    return assignment


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files exist and hold the same bytes."""
    if not b.is_file() or a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def stale_labels(paths: Paths, raw: list[Path], assignment: dict[str, str]) -> list[Path]:
    """Split labels of raw images whose label is no longer in data/labels."""
    stale = []
    for image in raw:
        split_label = paths.split_labels(assignment[image.stem]) / f"{image.stem}.json"
        if split_label.is_file() and not (paths.labels / split_label.name).is_file():
            stale.append(split_label)
    return stale


def sync_one(paths: Paths, image: Path, split: str) -> None:
    """Make the split copy of one raw image and its label match the raw files."""
    for source, target in ((image, paths.split_images(split) / image.name),
                           (paths.labels / f"{image.stem}.json", paths.split_labels(split) / f"{image.stem}.json")):
        if source.is_file() and not same_bytes(source, target):
            atomic_copy(source, target)


def split_dataset(
    paths: Paths, ratios: tuple[float, float, float] = SPLIT_RATIOS, seed: int = 0
) -> dict[str, list[Path]]:
    """Copy data/images (+ labels) into data/{train,test,val}/{images,labels}; stable and re-runnable.

    Args:
        paths: the dataset root.
        ratios: shares for (train, test, val).
        seed: fixes which new images go where.

    Returns:
        split -> the image files now in that split's folder.
    """
    ratios = check_ratios(ratios)
    raw = list_images(paths.images)
    if not raw and not any(list_images(paths.split_images(s)) for s in SPLITS):
        raise FaceTrackerError(f"{paths.images}: no images to split; run `facetracker collect` first.")
    shared = shared_stems(paths.images, raw)
    if shared:
        raise FaceTrackerError(shared[0])
    assignment = assign(paths, [image.stem for image in raw], ratios, seed)
    stale = stale_labels(paths, raw, assignment)
    if stale:
        listed = "\n".join(f"  - {label}" for label in stale)
        raise FaceTrackerError(
            f"{len(stale)} split label(s) have no label in {paths.labels} any more; copy each back to "
            f"{paths.labels} if it is right, or delete it if its image shows no object, then split again:\n{listed}"
        )
    for image in raw:
        sync_one(paths, image, assignment[image.stem])
    return {split: list_images(paths.split_images(split)) for split in SPLITS}


def orphaned_copies(paths: Paths) -> list[Path]:
    """Split images with no raw image of the same stem in data/images (none when data/images is empty)."""
    raw = {image.stem for image in list_images(paths.images)}
    if not raw:  # a split made by hand, as in the video: nothing to compare with
        return []
    return [image for split in SPLITS for image in list_images(paths.split_images(split)) if image.stem not in raw]


def orphan_warning(orphans: list[Path], paths: Paths) -> str:
    """One warning naming the split copies whose raw image is gone, and what to do about each."""
    listed = "\n".join(f"  - {image}" for image in orphans)
    return (
        f"{len(orphans)} split image(s) have no raw image in {paths.images}: if you deleted the frame on purpose, "
        "delete the copy and its label in the split folder too, then run `facetracker augment --prune`; "
        f"if the copy belongs in the dataset, copy it back to {paths.images}:\n{listed}"
    )
