"""split: copies into train/test/val that are deterministic, stable, re-runnable and leave raw data alone."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetracker.annotations import check
from facetracker.config import SPLITS, Paths
from facetracker.errors import FaceTrackerError
from facetracker.prelabel import prelabel_haar
from facetracker.sample_data import make_sample_data
from facetracker.split import orphaned_copies, split_dataset, target_counts


def tiny_frames(paths: Paths, names: list[str], label_every: int = 2) -> None:
    """Small real JPEGs, every `label_every`-th one with a label file."""
    paths.images.mkdir(parents=True, exist_ok=True)
    paths.labels.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(paths.images / f"{name}.jpg"), np.full((8, 8, 3), i % 256, np.uint8))
        if i % label_every == 0:
            (paths.labels / f"{name}.json").write_text(json.dumps({"shapes": [], "name": name}))


def assignment(result: dict[str, list[Path]]) -> dict[str, str]:
    return {p.stem: split for split, images in result.items() for p in images}


def names(count: int, start: int = 0) -> list[str]:
    return [f"img{i:04d}" for i in range(start, start + count)]


# 9: exact 6.3 / 1.35 / 1.35, the one left over goes to the largest remainder (test), not to the first split.
@pytest.mark.parametrize(("total", "counts"), [(90, [63, 14, 13]), (20, [14, 3, 3]), (1, [1, 0, 0]), (0, [0, 0, 0]),
                                               (9, [6, 2, 1]), (16, [11, 3, 2])])
def test_target_counts(total: int, counts: list[int]) -> None:
    assert target_counts(total, (0.7, 0.15, 0.15)) == counts


def test_90_images_split_63_14_13_with_labels_following(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(90))
    result = split_dataset(paths)
    assert [len(result[s]) for s in SPLITS] == [63, 14, 13]
    for split in SPLITS:
        for image in result[split]:
            assert image.read_bytes() == (paths.images / image.name).read_bytes()
            raw_label = paths.labels / f"{image.stem}.json"
            copy = paths.split_labels(split) / raw_label.name
            assert copy.is_file() == raw_label.is_file()
            assert not copy.is_file() or copy.read_bytes() == raw_label.read_bytes()
    assert not list(tmp_path.rglob(".*.tmp"))


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    results = {}
    for root, seed in (("a", 0), ("b", 0), ("c", 1)):
        paths = Paths(tmp_path / root)
        tiny_frames(paths, names(40))
        results[root] = assignment(split_dataset(paths, seed=seed))
    assert results["a"] == results["b"] != results["c"]


def test_existing_images_keep_their_split_when_images_are_added(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(90))
    first = assignment(split_dataset(paths))
    tiny_frames(paths, names(10, start=90))
    second = assignment(split_dataset(paths, seed=5))
    assert {stem: second[stem] for stem in first} == first
    assert [list(second.values()).count(s) for s in SPLITS] == [70, 15, 15]


def test_rerun_is_idempotent_and_recopies_changed_labels(tmp_path: Path, file_hashes) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(20))
    first = split_dataset(paths)
    before = file_hashes(paths.data)
    assert split_dataset(paths) == first and file_hashes(paths.data) == before
    label = paths.labels / "img0000.json"
    label.write_text('{"shapes": [], "edited": true}')
    (paths.labels / "img0001.json").write_text('{"shapes": []}')  # a label added later
    result = split_dataset(paths)
    split = assignment(result)
    assert (paths.split_labels(split["img0000"]) / label.name).read_text() == label.read_text()
    assert (paths.split_labels(split["img0001"]) / "img0001.json").is_file()


def test_image_in_two_splits_is_an_error_naming_both(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(10))
    result = split_dataset(paths)
    image = result["train"][0]
    duplicate = paths.split_images("val") / image.name
    duplicate.write_bytes(image.read_bytes())
    with pytest.raises(FaceTrackerError, match="two splits") as caught:
        split_dataset(paths)
    assert str(image) in str(caught.value) and str(duplicate) in str(caught.value)


def test_a_removed_raw_label_is_reported_not_deleted(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(10))
    split = assignment(split_dataset(paths))
    (paths.labels / "img0002.json").unlink()
    copy = paths.split_labels(split["img0002"]) / "img0002.json"
    with pytest.raises(FaceTrackerError, match="no label in") as caught:
        split_dataset(paths)
    assert str(copy) in str(caught.value) and copy.is_file()



def test_the_removed_labels_are_listed_one_per_line(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(10))
    split = assignment(split_dataset(paths))
    for stem in ("img0002", "img0004"):
        (paths.labels / f"{stem}.json").unlink()
    copies = [paths.split_labels(split[stem]) / f"{stem}.json" for stem in ("img0002", "img0004")]
    with pytest.raises(FaceTrackerError) as caught:
        split_dataset(paths)
    assert str(caught.value).endswith(f"then split again:\n  - {copies[0]}\n  - {copies[1]}")


def test_two_images_sharing_a_name_stop_the_split_before_any_copy(tmp_path: Path) -> None:
    """a.jpg and a.png would share one label: split names both and copies nothing."""
    paths = Paths(tmp_path)
    tiny_frames(paths, names(4))
    cv2.imwrite(str(paths.images / "img0001.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FaceTrackerError) as caught:
        split_dataset(paths)
    assert str(caught.value) == (f"{paths.images}: img0001.jpg, img0001.png share the name 'img0001'; "
                                 "rename or remove all but one.")
    assert not any(paths.split_images(s).exists() for s in SPLITS)


def test_hand_made_split_images_are_kept(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(6))
    manual = paths.split_images("val") / "by-hand.jpg"
    manual.parent.mkdir(parents=True)
    manual.write_bytes((paths.images / "img0000.jpg").read_bytes())
    result = split_dataset(paths)
    assert manual in result["val"] and sum(len(v) for v in result.values()) == 7


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_ratios(tmp_path: Path, ratios: tuple) -> None:
    with pytest.raises(FaceTrackerError, match="--ratios"):
        split_dataset(Paths(tmp_path), ratios=ratios)


def test_nothing_to_split(tmp_path: Path) -> None:
    with pytest.raises(FaceTrackerError, match="no images to split"):
        split_dataset(Paths(tmp_path))


def test_raw_data_untouched_by_the_whole_pipeline(sample_paths: Paths, file_hashes) -> None:
    images, labels = file_hashes(sample_paths.images), file_hashes(sample_paths.labels)
    make_sample_data(sample_paths, count=20, seed=0)
    check(sample_paths)
    split_dataset(sample_paths)
    split_dataset(sample_paths)
    written = prelabel_haar(sample_paths)  # may add proposals for the 3 frames without a face
    assert file_hashes(sample_paths.images) == images
    after = file_hashes(sample_paths.labels)
    assert {k: after[k] for k in labels} == labels and len(after) == len(labels) + len(written)
    assert sum(len(list(sample_paths.split_images(s).iterdir())) for s in SPLITS) == 20


@pytest.mark.slow
def test_split_warns_about_copies_whose_raw_image_is_gone(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    tiny_frames(paths, names(10))
    split = assignment(split_dataset(paths))
    (paths.images / "img0004.jpg").unlink()  # the learner deletes a bad frame and its label
    (paths.labels / "img0004.json").unlink()
    copy = paths.split_images(split["img0004"]) / "img0004.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "facetracker.cli", "--root", str(tmp_path), "split"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: 1 split image(s) have no raw image" in done.stdout
    assert f"  - {copy}" in done.stdout and "augment --prune" in done.stdout and "copy it back" in done.stdout
    assert copy.is_file()  # reported, never deleted
    assert orphaned_copies(paths) == [copy]
    (paths.images / "img0004.jpg").write_bytes(copy.read_bytes())
    assert orphaned_copies(paths) == []


def test_ratios_may_leave_a_split_empty_but_must_sum_to_1() -> None:
    from facetracker.split import check_ratios

    assert check_ratios((1, 0, 0)) == (1.0, 0.0, 0.0)
    with pytest.raises(FaceTrackerError) as error:
        check_ratios((0.5, 0.5, 0.5))
    assert str(error.value) == ("--ratios (0.5, 0.5, 0.5): give 3 non-negative shares for train/test/val that sum "
                                "to 1, e.g. 0.7 0.15 0.15.")


def test_a_tie_goes_to_the_earlier_split_and_the_default_seed_is_0(tmp_path: Path) -> None:
    """Three images at equal shares: the first placed (by the seed's order) goes to train, the next to test."""
    from facetracker.split import placement_order

    paths = Paths(tmp_path / "a")
    tiny_frames(paths, names(3))
    got = assignment(split_dataset(paths, ratios=(1 / 3, 1 / 3, 1 / 3)))
    order = placement_order(names(3), 0)
    assert [got[stem] for stem in order] == ["train", "test", "val"]
    other = Paths(tmp_path / "b")
    tiny_frames(other, names(40))
    assert assignment(split_dataset(other)) == assignment(split_dataset(Paths(tmp_path / "b"), seed=0))


def test_rerun_rewrites_nothing_and_recopies_a_label_of_the_same_size(tmp_path: Path) -> None:
    """Unchanged copies keep their file (inode and time); a label edited to other bytes of the same length is
    copied again."""
    paths = Paths(tmp_path)
    tiny_frames(paths, names(6))
    split = assignment(split_dataset(paths))
    copies = sorted(p for p in paths.data.rglob("*") if p.is_file() and p.parent.parent != paths.data)
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in copies}
    split_dataset(paths)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in copies} == stamps
    label = paths.labels / "img0000.json"
    label.write_text(label.read_text().replace("img0000", "img9999"))  # same length, other bytes
    split_dataset(paths)
    assert (paths.split_labels(split["img0000"]) / label.name).read_text() == label.read_text()


def test_split_command_prints_counts_and_warns_about_orphaned_copies(tmp_path: Path, capsys) -> None:
    from facetracker.cli import main

    paths = Paths(tmp_path)
    tiny_frames(paths, names(20))
    assert main(["--root", str(tmp_path), "split"]) == 0
    assert capsys.readouterr().out == "train: 14  test: 3  val: 3\n"
    gone = sorted(paths.split_images("test").iterdir())[:2]
    for image in gone:
        (paths.images / image.name).unlink()
    assert main(["--root", str(tmp_path), "split"]) == 0
    assert capsys.readouterr().out == (
        f"train: 14  test: 3  val: 3\nwarning: 2 split image(s) have no raw image in {paths.images}: if you deleted "
        "the frame on purpose, delete the copy and its label in the split folder too, then run `facetracker augment "
        f"--prune`; if the copy belongs in the dataset, copy it back to {paths.images}:\n"
        f"  - {gone[0]}\n  - {gone[1]}\n")
