"""Tests for facetracker.fileio: the atomic writer, the image reader and the augmented label format."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetracker.errors import FaceTrackerError
from facetracker.fileio import (
    atomic_copy,
    atomic_write,
    load_labels,
    publish,
    read_crop_label,
    read_image,
    remove_temp_files,
    temp_path,
    unpaired_error,
    write_crop_label,
    write_image,
)


def test_crop_label_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "labels" / "a.0.json"
    write_crop_label(path, "a.jpg", (0.25, 0.5, 0.75, 1.0), 1, "abc")
    assert json.loads(path.read_text()) == {"image": "a.jpg", "bbox": [0.25, 0.5, 0.75, 1.0], "class": 1,
                                            "fingerprint": "abc"}
    assert read_crop_label(path) == (1.0, [0.25, 0.5, 0.75, 1.0])
    write_crop_label(path, "a.jpg", (0, 0, 0, 0), 0, "abc")
    assert read_crop_label(path) == (0.0, [0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("bbox", [[0.2, 0.2, 1.3, 0.5], [-0.1, 0.2, 0.5, 0.5], [0.2, 0.2, 0.5, 1.0001]])
def test_crop_label_outside_0_1_is_refused_naming_the_file(tmp_path: Path, bbox: list[float]) -> None:
    path = tmp_path / "a.0.json"
    path.write_text(json.dumps({"image": "a.jpg", "bbox": bbox, "class": 1}))
    with pytest.raises(FaceTrackerError) as error:
        read_crop_label(path)
    assert str(error.value) == (f"{path}: class must be 0 or 1 and bbox four numbers in [0, 1]; "
                                "run `facetracker augment --fresh`.")


@pytest.mark.parametrize("label", [{"image": "a.jpg", "bbox": [0, 0, 1, 1], "class": 2},
                                   {"image": "a.jpg", "bbox": [0, 0, 1], "class": 1}])
def test_crop_label_with_another_class_or_box_length_is_refused(tmp_path: Path, label: dict) -> None:
    path = tmp_path / "a.0.json"
    path.write_text(json.dumps(label))
    with pytest.raises(FaceTrackerError, match="class must be 0 or 1 and bbox four numbers"):
        read_crop_label(path)


@pytest.mark.parametrize("text", ["{not json", '{"bbox": [0, 0, 1, 1]}', '{"class": 1, "bbox": 3}',
                                  '{"class": "x", "bbox": [0, 0, 1, 1]}'])
def test_malformed_crop_label_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.0.json"
    path.write_text(text)
    with pytest.raises(FaceTrackerError, match=r"a\.0\.json: not an augmented label \(.+\); run `facetracker "
                                               r"augment --fresh`\.$"):
        read_crop_label(path)
    with pytest.raises(FaceTrackerError, match=r"missing\.json: not an augmented label"):
        read_crop_label(tmp_path / "missing.json")


def test_atomic_write_replaces_or_keeps_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "file.txt"
    assert atomic_write(path, b"one") is True and path.read_bytes() == b"one"
    assert atomic_write(path, b"two") is True and path.read_bytes() == b"two"
    assert atomic_write(path, b"three", overwrite=False) is False and path.read_bytes() == b"two"
    assert atomic_write(tmp_path / "other.txt", b"x", overwrite=False) is True
    assert (tmp_path / "other.txt").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file.txt", "new", "other.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    from facetracker.fileio import publish

    path = tmp_path / "model.keras"
    path.write_bytes(b"old")

    def fail(temp: Path) -> None:
        temp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish(path, fail)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_temp_path_is_hidden_beside_the_file_and_keeps_the_suffix(tmp_path: Path) -> None:
    assert temp_path(tmp_path / "best.keras") == tmp_path / f".best.{os.getpid()}.tmp.keras"


def test_atomic_copy_keeps_bytes_and_modification_time(tmp_path: Path) -> None:
    source = tmp_path / "a.jpg"
    source.write_bytes(b"jpeg bytes")
    os.utime(source, ns=(1_000_000_000, 1_000_000_000))
    atomic_copy(source, tmp_path / "copy" / "a.jpg")
    copied = tmp_path / "copy" / "a.jpg"
    assert copied.read_bytes() == b"jpeg bytes" and copied.stat().st_mtime_ns == 1_000_000_000


def test_remove_temp_files_deletes_only_leftovers(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    leftovers = [tmp_path / "a" / ".x.123.tmp.jpg", tmp_path / "b" / ".y.9.tmp.json"]
    kept = [tmp_path / "a" / "x.jpg", tmp_path / "a" / ".hidden.jpg", tmp_path / "b" / "tmp.json"]
    for path in leftovers + kept:
        path.write_bytes(b"x")
    assert remove_temp_files(tmp_path / "a", tmp_path / "b") == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)


def test_read_image_gives_bgr_and_names_an_unreadable_file(tmp_path: Path) -> None:
    gray = np.full((6, 8), 77, np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8 and (image == 77).all()
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(FaceTrackerError) as error:
        read_image(tmp_path / "bad.jpg")
    assert str(error.value) == f"{tmp_path / 'bad.jpg'}: cannot be read as an image; re-save it as JPEG or remove it."


def test_write_image_overwrites_unless_told_not_to(tmp_path: Path) -> None:
    path = tmp_path / "frame.jpg"
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    assert write_image(path, black) is True
    assert write_image(path, white) is True
    assert read_image(path).min() > 200
    assert write_image(path, black, overwrite=False) is False
    assert read_image(path).min() > 200


def test_unpaired_files_are_named_three_at_most(tmp_path: Path) -> None:
    no_label = [Path(f"i{n}.jpg") for n in range(4)]
    error = unpaired_error(Path("imgs"), Path("labs"), no_label, [Path("l.json")])
    assert str(error) == ("imgs and labs do not pair up by name (4 images without a label: i0.jpg, i1.jpg, i2.jpg, "
                          "...; 1 labels without an image: l.json); run `facetracker augment` again to complete "
                          "them, or delete the unpaired files.")
    three = unpaired_error(Path("imgs"), Path("labs"), no_label[:3], [])
    assert str(three).startswith("imgs and labs do not pair up by name (3 images without a label: i0.jpg, i1.jpg, "
                                 "i2.jpg); run")


def test_write_image_encodes_by_the_suffix(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    write_image(tmp_path / "exact.png", noise)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "exact.png")), noise)  # PNG keeps every pixel
    write_image(tmp_path / "no-suffix", noise)
    assert (tmp_path / "no-suffix").read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    with pytest.raises(FaceTrackerError) as caught:
        write_image(tmp_path / "frame.xyz", noise)
    assert str(caught.value) == (f"{tmp_path / 'frame.xyz'}: OpenCV cannot encode this image type; use a .jpg or "
                                 ".png name.")
    assert not (tmp_path / "frame.xyz").exists()


def test_load_labels_names_both_folders_and_an_empty_pair(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    with pytest.raises(FaceTrackerError) as caught:
        load_labels(labels, images)
    assert str(caught.value) == f"{images}: no samples; run `facetracker augment` first."
    (images / "a.0.jpg").write_bytes(b"")
    with pytest.raises(FaceTrackerError, match=f"^{images} and {labels} do not pair up by name"):
        load_labels(labels, images)


def test_publish_without_hard_links_still_keeps_an_existing_file(tmp_path: Path, monkeypatch) -> None:
    """On a file system without hard links (FAT, some network shares) `overwrite=False` still never overwrites."""
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "a.txt"
    assert publish(path, lambda temp: temp.write_text("first"), overwrite=False) is True
    assert path.read_text() == "first"
    assert publish(path, lambda temp: temp.write_text("second"), overwrite=False) is False
    assert path.read_text() == "first" and list(tmp_path.iterdir()) == [path]
