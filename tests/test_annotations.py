"""annotations: every labelme oddity, on real image and JSON files."""

import base64
import importlib.util
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import save_with_labelme

from facetracker.annotations import (
    CheckReport,
    Sample,
    check,
    image_path_problem,
    inspect,
    labelled_frames,
    labelme_command,
    launch_labelme,
    load_samples,
    read_labelme,
    require_labels,
    shape_points,
    size_problem,
    write_labelme,
)
from facetracker.config import Paths
from facetracker.errors import FaceTrackerError
from facetracker.prelabel import prelabel_haar


def make_image(path: Path, width: int = 640, height: int = 480, gray: bool = False) -> Path:
    """A real noisy image file (format from the suffix)."""
    rng = np.random.default_rng(len(path.name))
    shape = (height, width) if gray else (height, width, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
    return path


def rect(x1: float, y1: float, x2: float, y2: float, label: str = "face", kind: str = "rectangle") -> dict:
    return {"label": label, "points": [[x1, y1], [x2, y2]], "group_id": None, "description": "",
            "shape_type": kind, "flags": {}, "mask": None}  # fmt: skip


def make_label(path: Path, shapes: list, width: int = 640, height: int = 480, **fields: object) -> Path:
    data = {"version": "6.3.1", "flags": {}, "shapes": shapes, "imagePath": f"../images/{path.stem}.jpg",
            "imageData": None, "imageHeight": height, "imageWidth": width, **fields}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """An empty dataset root."""
    return Paths(tmp_path)


def one(paths: Paths, shapes: list, name: str = "frame", **fields: object) -> tuple[Path, Path]:
    """A 640x480 JPEG with one label file."""
    return make_image(paths.images / f"{name}.jpg"), make_label(paths.labels / f"{name}.json", shapes, **fields)


def only_sample(paths: Paths):
    (sample,) = load_samples(paths.images, paths.labels)
    return sample


@pytest.mark.parametrize("points", [(100, 60, 300, 240), (300, 240, 100, 60), (300, 60, 100, 240), (100, 240, 300, 60)])
def test_any_click_order_gives_the_same_box(paths: Paths, points: tuple) -> None:
    image = make_image(paths.images / "frame.jpg")
    paths.labels.mkdir(parents=True)
    save_with_labelme(paths.labels / "frame.json", image, [points[:2], points[2:]])  # labelme's own file
    sample = only_sample(paths)
    assert sample.box == pytest.approx((100 / 640, 60 / 480, 300 / 640, 240 / 480))
    assert sample.warnings == ()


def test_points_outside_the_image_are_clipped_with_a_warning(paths: Paths) -> None:
    _, label = one(paths, [rect(-20, 30, 700, 520)])
    sample = only_sample(paths)
    assert sample.box == pytest.approx((0, 30 / 480, 1, 1))
    assert len(sample.warnings) == 1 and str(label) in sample.warnings[0] and "clipped" in sample.warnings[0]


def test_several_boxes_use_the_largest(paths: Paths) -> None:
    _, label = one(paths, [rect(0, 0, 64, 48), rect(320, 240, 640, 480), rect(10, 10, 20, 20)])
    sample = only_sample(paths)
    assert sample.box == pytest.approx((0.5, 0.5, 1, 1))
    assert any("3 'face' boxes; using the largest" in w and str(label) in w for w in sample.warnings)


def test_two_boxes_use_the_larger_by_area_with_the_whole_warning(paths: Paths) -> None:
    # (50, 50, 60, 60) sorts after (0, 0, 100, 100) as a tuple; by area it is the smaller one.
    _, label = one(paths, [rect(0, 0, 100, 100), rect(50, 50, 60, 60)])
    sample = only_sample(paths)
    assert sample.box == pytest.approx((0, 0, 100 / 640, 100 / 480))
    assert sample.label == label
    assert sample.warnings == (f"{label}: 2 'face' boxes; using the largest (the model predicts one per image). "
                               "Delete the others in labelme.",)


def test_every_shape_is_read_after_a_bad_one(tmp_path: Path) -> None:
    """Each warning and error of a label is reported at once, whatever comes before it."""
    label = make_label(tmp_path / "frame.json", [
        {"label": "face", "points": [[1]]},  # malformed
        rect(10, 10, 10, 90),  # zero area
        {"label": "face", "points": [[0, 0], [50, 50], [0, 50]]},  # no shape_type: labelme's default, a polygon
        rect(10, 10, 50, 50, label=""),
        rect(10, 10, 50, 50, label=None),
        rect(600, 400, 700, 500),
    ])
    reading = read_labelme(label, 640, 480, "face")
    assert reading.box_px is None
    assert reading.errors == (f"{label}: shape 0 has malformed points; redraw it in labelme.",
                              f"{label}: shape 1 has zero area inside the image; redraw the box in labelme.")
    assert reading.warnings == (
        f"{label}: shape 2 is a polygon, not a rectangle: using its bounding box.",
        f"{label}: shape 3 is labelled '', not 'face': ignored, so it does not count as a face. Rename it to "
        "'face' in labelme.",
        f"{label}: shape 4 is labelled None, not 'face': ignored, so it does not count as a face. Rename it to "
        "'face' in labelme.",
        f"{label}: shape 5 reaches outside the 640x480 image: clipped. Redraw it inside the image in labelme.",
        f"{label}: 2 'face' boxes; using the largest (the model predicts one per image). Delete the others in labelme.",
    )


def test_a_box_under_one_pixel_is_still_a_box(tmp_path: Path) -> None:
    label = make_label(tmp_path / "frame.json", [rect(10, 10, 11, 10.5)])
    assert read_labelme(label, 640, 480, "face").box_px == (10, 10, 11, 10.5)


def test_polygon_and_circle_use_their_bounding_box(paths: Paths) -> None:
    polygon = {"label": "face", "points": [[100, 50], [200, 150], [50, 200]], "shape_type": "polygon"}
    one(paths, [polygon], name="poly")
    one(paths, [rect(320, 240, 320 + 30, 240 + 40, kind="circle")], name="circle")
    circle, poly = load_samples(paths.images, paths.labels)
    assert poly.box == pytest.approx((50 / 640, 50 / 480, 200 / 640, 200 / 480))
    assert circle.box == pytest.approx((270 / 640, 190 / 480, 370 / 640, 290 / 480))
    assert "polygon, not a rectangle" in poly.warnings[0] and "circle, not a rectangle" in circle.warnings[0]


def test_other_labels_are_not_the_object(paths: Paths) -> None:
    _, label = one(paths, [rect(10, 10, 100, 100, label="Face")], name="a")
    one(paths, [rect(10, 10, 100, 100, label="person"), rect(200, 200, 300, 300)], name="b")
    a, b = load_samples(paths.images, paths.labels)
    assert a.box is None and str(label) in a.warnings[0] and "--class Face" in a.warnings[0]
    assert b.box == pytest.approx((200 / 640, 200 / 480, 300 / 640, 300 / 480)) and "'person'" in b.warnings[0]
    assert check(paths).negatives == 1


def test_class_name_is_configurable(paths: Paths) -> None:
    one(paths, [rect(10, 10, 100, 100, label="cup")])
    (sample,) = load_samples(paths.images, paths.labels, class_name="cup")
    assert sample.box is not None and sample.warnings == ()
    assert check(paths, class_name="cup").positives == 1 and check(paths).positives == 0


def test_check_without_images_says_where_they_come_from(paths: Paths) -> None:
    with pytest.raises(FaceTrackerError) as caught:
        check(paths)
    assert str(caught.value) == (f"{paths.images}: no images folder; collect frames first (facetracker collect, "
                                 "or facetracker sample-data), or pass --root of the project folder.")


def test_empty_shapes_is_a_negative_with_a_warning(paths: Paths) -> None:
    one(paths, [])
    sample = only_sample(paths)
    assert sample.box is None and "empty 'shapes'" in sample.warnings[0]


def test_label_without_image_is_reported_as_orphaned(paths: Paths) -> None:
    make_image(paths.images / "kept.jpg")
    orphan = make_label(paths.labels / "gone.json", [rect(1, 1, 50, 50)])
    (paths.images / "notes.txt").write_text("not an image")  # other files and folders are not read
    (paths.labels / "old.json").mkdir()
    report = check(paths)
    assert report.ok and report.images == 1
    assert report.warnings == [f"{orphan}: no image gone.jpg/.png in {paths.images} (orphaned label); put the image "
                               "back or delete the label."]
    assert len(load_samples(paths.images, paths.labels)) == 1
    assert report.format().splitlines()[0] == (f"{paths.images}: 1 images, 0 with a box, 1 without (labels from "
                                               f"{paths.labels}).")


def test_image_without_label_is_a_counted_negative(paths: Paths) -> None:
    one(paths, [rect(1, 1, 50, 50)], name="face")
    make_image(paths.images / "empty.jpg")
    report = check(paths)
    assert (report.images, report.positives, report.negatives, report.warnings) == (2, 1, 1, [])


@pytest.mark.parametrize("image_path", ["../../etc/passwd", "/etc/passwd", "C:\\Users\\me\\frame.jpg", "../../x.fifo"])
@pytest.mark.timeout(20)
def test_image_path_is_never_opened_and_escapes_are_reported(paths: Paths, image_path: str) -> None:
    os.mkfifo(paths.root / "x.fifo")  # opening this for reading would block: the test would time out
    _, label = one(paths, [rect(10, 10, 100, 100)], imagePath=image_path)
    report = check(paths)
    assert report.ok and report.positives == 1
    assert len(report.warnings) == 1 and str(label) in report.warnings[0] and "never opened" in report.warnings[0]


def test_image_path_naming_another_image_is_reported(paths: Paths) -> None:
    one(paths, [rect(10, 10, 100, 100)], imagePath="../images/other.jpg")
    assert "names 'other.jpg'" in only_sample(paths).warnings[0]


def test_image_path_problems_name_the_fix(tmp_path: Path) -> None:
    label = tmp_path / "labels" / "frame.json"
    fix = 'set "imagePath" to "../images/frame.jpg" (or re-save in labelme)'
    assert image_path_problem(label, {"imagePath": "..\\images\\frame.jpg"}, "frame.jpg") is None  # Windows
    assert image_path_problem(label, {"imagePath": "C:x.jpg"}, None) == (
        f"{label}: imagePath 'C:x.jpg' is an absolute path; ignored, never opened. To fix, {fix}.")
    assert image_path_problem(label, {"imagePath": "../.."}, "frame.png") == (
        f"{label}: imagePath '../..' points outside the dataset; ignored, never opened. To fix, "
        'set "imagePath" to "../images/frame.png" (or re-save in labelme).')
    assert image_path_problem(label, {"imagePath": "../images/x.jpg"}, "frame.jpg") == (
        f"{label}: imagePath names 'x.jpg' but the label is paired with 'frame.jpg' by name; {fix}.")


def test_size_problem_needs_one_size_field_to_disagree(tmp_path: Path) -> None:
    label = tmp_path / "frame.json"
    assert size_problem(label, {}, 640, 480) is None
    assert size_problem(label, {"imageWidth": 640, "imageHeight": 480}, 640, 480) is None
    assert size_problem(label, {"imageWidth": 640}, 640, 480) == (
        f"{label}: says the image is 640xNone but it is 640x480; using the real size. Re-open the image in "
        "labelme and re-save the box to fix.")


def test_shape_points_refuses_what_is_not_a_shape() -> None:
    assert shape_points([[1, 2], [3, 4]]) is None
    assert shape_points({"points": "1,2"}) is None
    assert shape_points({"points": [[1, 2], [3, 4.5]]}) == [(1.0, 2.0), (3.0, 4.5)]


def test_embedded_image_data_is_never_decoded(paths: Paths) -> None:
    small = cv2.imencode(".png", np.zeros((10, 20), np.uint8))[1].tobytes()
    one(paths, [rect(64, 48, 320, 240)], name="a", imageData=base64.b64encode(small).decode())
    one(paths, [rect(64, 48, 320, 240)], name="b", imageData="@@ not base64 @@" * 1000)
    for sample in load_samples(paths.images, paths.labels):
        assert sample.box == pytest.approx((0.1, 0.1, 0.5, 0.5)) and sample.warnings == ()


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '{"shapes": "nope"}', '{"shapes": [{"points": [[1]]}]}'])
def test_malformed_labels_are_errors(paths: Paths, text: str) -> None:
    make_image(paths.images / "frame.jpg")
    label = paths.labels / "frame.json"
    label.parent.mkdir(parents=True)
    label.write_text(text)
    report = check(paths)
    assert len(report.errors) == 1 and str(label) in report.errors[0] and "labelme" in report.errors[0]


def test_a_jpeg_padded_with_zero_bytes_is_whole(paths: Paths) -> None:
    whole = make_image(paths.images / "padded.jpg").read_bytes()
    (paths.images / "padded.jpg").write_bytes(whole + b"\x00" * 64)  # some cameras pad their files
    assert check(paths).errors == []


def test_truncated_and_fake_images_are_errors(paths: Paths) -> None:
    whole = make_image(paths.images / "whole.jpg").read_bytes()
    (paths.images / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (paths.images / "fake.jpg").write_bytes(b"GIF89a not really")
    png = make_image(paths.images / "short.png", 64, 48).read_bytes()
    (paths.images / "short.png").write_bytes(png[:-20])
    report = check(paths)
    assert report.images == 1
    assert sorted(Path(e.split(":")[0]).name for e in report.errors) == ["cut.jpg", "fake.jpg", "short.png"]
    assert "truncated JPEG" in " ".join(report.errors) and "not a JPEG or PNG" in " ".join(report.errors)


def test_png_grayscale_and_other_sizes_are_normalised_by_the_real_size(paths: Paths) -> None:
    make_image(paths.images / "small.png", 320, 240, gray=True)
    make_label(paths.labels / "small.json", [rect(32, 24, 160, 120)], 320, 240, imagePath="../images/small.png")
    make_image(paths.images / "wide.jpg", 1280, 720)
    make_label(paths.labels / "wide.json", [rect(128, 72, 640, 360)], 640, 480, imagePath="../images/wide.jpg")
    small, wide = load_samples(paths.images, paths.labels)
    assert (small.width, small.height, small.warnings) == (320, 240, ())
    assert small.box == pytest.approx((0.1, 0.1, 0.5, 0.5)) == wide.box
    assert (wide.width, wide.height) == (1280, 720)
    assert wide.warnings[0].startswith(f"{paths.labels / 'wide.json'}: says the image is 640x480 but it is 1280x720")


@pytest.mark.parametrize("box", [(100, 100, 100, 200), (100, 100, 300, 100), (700, 10, 800, 100)])
def test_zero_area_boxes_are_errors(paths: Paths, box: tuple) -> None:
    _, label = one(paths, [rect(*box)])
    report = check(paths)
    assert len(report.errors) == 1 and str(label) in report.errors[0] and "zero area" in report.errors[0]


def test_load_samples_lists_every_error_at_once(paths: Paths) -> None:
    one(paths, [rect(10, 10, 10, 50)], name="flat")
    make_image(paths.images / "broken.jpg")
    (paths.labels / "broken.json").write_text("{")
    (paths.images / "fake.jpg").write_bytes(b"nope")
    one(paths, [rect(10, 10, 60, 60)], name="fine")
    with pytest.raises(FaceTrackerError) as caught:
        load_samples(paths.images, paths.labels)
    message = str(caught.value)
    assert message.startswith("3 problem(s)") and all(n in message for n in ("flat.json", "broken.json", "fake.jpg"))
    listed = message.splitlines()[1:]
    assert len(listed) == 3 and all(line.startswith("  - ") for line in listed)
    report = check(paths)
    assert report.format().splitlines()[-1] == "Fix the errors above, then run the check again."


def test_two_images_with_one_name_are_an_error(paths: Paths) -> None:
    make_image(paths.images / "x.jpg")
    make_image(paths.images / "x.png")
    assert check(paths).errors[0] == f"{paths.images}: x.jpg, x.png share the name 'x'; rename or remove all but one."


def test_check_changes_nothing_and_formats_a_report(sample_paths: Paths, file_hashes) -> None:
    (sample_paths.labels / "orphan.json").write_text("{")
    before = file_hashes(sample_paths.root)
    report = check(sample_paths)
    assert file_hashes(sample_paths.root) == before
    assert (report.images, report.positives, report.negatives, report.errors) == (20, 17, 3, [])
    text = report.format()
    assert "20 images, 17 with a box, 3 without" in text and "orphan.json" in text


def test_write_labelme_matches_labelme_and_keeps_click_order(tmp_path: Path) -> None:
    from labelme import LabelFile

    image = make_image(tmp_path / "images" / "a.jpg")
    label = tmp_path / "labels" / "a.json"
    write_labelme(label, image, (300, 200, 100, 50), 640, 480)
    assert LabelFile(str(label)).shapes[0]["points"] == [[300.0, 200.0], [100.0, 50.0]]
    assert [p.name for p in label.parent.iterdir()] == ["a.json"]  # no temporary file left behind
    theirs = save_with_labelme(tmp_path / "labels" / "b.json", image, [(300, 200), (100, 50)])
    assert label.read_bytes() == theirs.read_bytes()  # the very bytes labelme's writer produces


def test_write_labelme_keeps_a_non_ascii_name_the_class_and_the_overwrite_rule(tmp_path: Path) -> None:
    image = make_image(tmp_path / "images" / "café.jpg")
    label = tmp_path / "labels" / "café.json"
    assert write_labelme(label, image, (10, 20, 110, 120), 640, 480, class_name="cat") is True
    theirs = save_with_labelme(tmp_path / "labels" / "b.json", image, [(10, 20), (110, 120)], label="cat")
    assert label.read_bytes() == theirs.read_bytes()  # UTF-8 as labelme writes it, not \u escapes
    assert '"imagePath": "../images/café.jpg"'.encode() in label.read_bytes()

    assert write_labelme(label, image, (1, 2, 3, 4), 640, 480) is True  # the default overwrites
    kept = label.read_bytes()
    assert json.loads(kept)["shapes"][0]["points"] == [[1.0, 2.0], [3.0, 4.0]]
    assert write_labelme(label, image, (5, 6, 7, 8), 640, 480, overwrite=False) is False
    assert label.read_bytes() == kept


def test_require_labels_stops_on_errors_first_then_on_no_box(tmp_path: Path, sample_paths: Paths) -> None:
    require_labels(check(sample_paths))  # 17 boxes, no error: training may go on
    images, labels = tmp_path / "images", tmp_path / "labels"
    with_box = Sample(images / "a.jpg", labels / "a.json", 640, 480, (0.1, 0.1, 0.5, 0.5))
    broken = CheckReport(images, labels, samples=[with_box], errors=["one", "two"])
    with pytest.raises(FaceTrackerError) as caught:
        require_labels(broken)
    assert str(caught.value) == (f"{images}: 2 error(s) listed above; fix them (each line says how), then run the "
                                 "check again.")
    no_box = CheckReport(images, labels, samples=[Sample(images / "b.jpg", None, 640, 480, None)])
    with pytest.raises(FaceTrackerError) as caught:
        require_labels(no_box, class_name="cat")
    assert str(caught.value) == (
        f"no image in {images} has a 'cat' box yet: draw one rectangle labelled 'cat' on each image in labelme "
        f"(saved to {labels}), or set USE_SAMPLE_DATA = True to use the built-in sample session; then run this "
        "cell again.")


def test_labelled_frames_gives_each_box_in_the_centre_square(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    make_image(images / "face.jpg")
    make_image(images / "none.jpg")
    write_labelme(labels / "face.json", images / "face.jpg", (200, 100, 320, 280), 640, 480, class_name="cat")
    samples, truth = labelled_frames(images, labels, "cat")
    assert [s.image.name for s in samples] == ["face.jpg", "none.jpg"]
    # The centre square of a 640x480 frame starts at x = 80 and is 480 px wide: ((200 - 80) / 480, 100 / 480, ...).
    assert truth[0] == pytest.approx((120 / 480, 100 / 480, 240 / 480, 280 / 480)) and truth[1] is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceTrackerError) as caught:
        labelled_frames(tmp_path / "empty", labels, "face")
    assert str(caught.value) == (f"{tmp_path / 'empty'}: no images; run `facetracker split` first, or point to a "
                                 "folder holding images/ and labels/.")


def test_prelabel_proposes_boxes_only_where_no_label_exists(sample_paths: Paths, file_hashes) -> None:
    labels = sorted(sample_paths.labels.glob("*.json"))
    truth = {p.stem: json.loads(p.read_text()) for p in labels[:3]}
    for p in labels[:3]:
        p.unlink()
    images_before, labels_before = file_hashes(sample_paths.images), file_hashes(sample_paths.labels)
    written = prelabel_haar(sample_paths)
    assert file_hashes(sample_paths.images) == images_before
    labels_after = file_hashes(sample_paths.labels)
    assert {k: labels_after[k] for k in labels_before} == labels_before
    assert {p.stem for p in written} <= {p.stem for p in sample_paths.images.glob("*.jpg")} - {
        Path(k).stem for k in labels_before
    }
    assert len(set(truth) & {p.stem for p in written}) >= 2
    assert prelabel_haar(sample_paths) == []  # never overwrites its own proposals either
    assert check(sample_paths).ok


def test_launch_labelme_needs_a_display(monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(FaceTrackerError) as caught:
        launch_labelme(paths)
    assert str(caught.value) == (
        "no display: labelme needs a display (DISPLAY/WAYLAND_DISPLAY is not set); run `facetracker annotate` on "
        "a desktop session, or `facetracker annotate --prelabel haar --no-gui` for automatic proposals.")


def test_labelme_command_uses_flags_labelme_knows(paths: Paths) -> None:
    command = labelme_command(paths, class_name="cat")
    assert command == [sys.executable, "-m", "labelme", str(paths.images), "--output", str(paths.labels),
                       "--labels", "cat", "--validate-label", "exact"]
    # labelme's argument parser, read as text (running `labelme --help` costs seconds: it loads Qt)
    parser_source = (Path(importlib.util.find_spec("labelme").origin).parent / "__main__.py").read_text()
    assert all(f'"{flag}"' in parser_source for flag in command if flag.startswith("--"))
    assert '"--no-auto-save"' in parser_source  # auto-save is on unless switched off
    assert '"exact"' in parser_source  # a choice of --validate-label


def test_launch_labelme_waits_for_it_and_names_each_failure(monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    """labelme itself opens under Xvfb in test_gui.py; here real programs stand in for its exit."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    with pytest.raises(FaceTrackerError, match=f"^{paths.images}: no images folder; collect images first"):
        launch_labelme(paths)
    paths.images.mkdir(parents=True)
    # A script that notes its arguments and exits 0 stands in for labelme closed normally.
    recorder = paths.root / "labelme-args.sh"
    recorder.write_text(f'#!/bin/sh\necho "$@" > {paths.root / "args.txt"}\n')
    recorder.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(recorder))
    assert launch_labelme(paths, class_name="cat") == 0 and paths.labels.is_dir()
    assert "--labels cat " in (paths.root / "args.txt").read_text()
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(FaceTrackerError) as caught:
        launch_labelme(paths)
    assert str(caught.value) == (
        "labelme failed: it exited with code 1 (its messages are above). 'Could not load the Qt platform plugin "
        "\"xcb\"' means a second OpenCV build (opencv-python) is installed: `pip uninstall opencv-python`, then "
        "`pip install --force-reinstall opencv-python-headless` (see README, Troubleshooting).")
    monkeypatch.setattr(sys, "executable", str(paths.root / "no-such-python"))
    with pytest.raises(FaceTrackerError, match=r"^labelme failed: cannot start it .*pip install labelme"):
        launch_labelme(paths)


def test_inspect_works_on_split_folders(sample_paths: Paths) -> None:
    report = inspect(sample_paths.images, sample_paths.root / "nowhere")
    assert (report.images, report.positives) == (20, 0)
