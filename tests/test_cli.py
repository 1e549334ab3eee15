"""The command line's wiring, through `facetracker.cli.main` as the entry point calls it: each flag reaches its
step and its result is what the user gets (the steps themselves are tested in their own files)."""

import json
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from conftest import CONSTANT_FRAME_BOX

from facetracker.cli import main
from facetracker.config import Paths

PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def session(root: Path) -> Paths:
    """data/images: the portrait pasted at (160, 40) into a grey 640x480 frame, an empty frame, and a frame
    labelled by hand already."""
    paths = Paths(root)
    paths.images.mkdir(parents=True)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[40:392, 160:460] = cv2.resize(cv2.imread(str(PORTRAIT)), (300, 352))
    cv2.imwrite(str(paths.images / "face.jpg"), frame)
    cv2.imwrite(str(paths.images / "empty.jpg"), np.full((480, 640, 3), 90, np.uint8))
    cv2.imwrite(str(paths.images / "done.jpg"), frame)
    paths.labels.mkdir(parents=True)
    (paths.labels / "done.json").write_text('{"hand": "made"}')
    return paths


def points(label: Path) -> list[list[float]]:
    data = json.loads(label.read_text())
    assert [shape["label"] for shape in data["shapes"]] == ["face"]
    return data["shapes"][0]["points"]


def test_annotate_prelabel_haar_writes_the_cascades_box(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Pinned: the cascade finds the portrait at (242, 96, 386, 240) px after JPEG; the empty frame gets no file
    and the hand-made label is left alone."""
    paths = session(tmp_path)
    assert main(["--root", str(tmp_path), "annotate", "--prelabel", "haar", "--no-gui"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 1 Haar proposals to {paths.labels}"
    assert sorted(p.name for p in paths.labels.iterdir()) == ["done.json", "face.json"]
    assert points(paths.labels / "face.json") == [[242.0, 96.0], [386.0, 240.0]]
    assert (paths.labels / "done.json").read_text() == '{"hand": "made"}'


@pytest.mark.slow  # over 3 s on 2 cores
def test_annotate_prelabel_model_writes_the_models_box_above_the_threshold(
        tmp_path: Path, constant_model: Path, capsys: pytest.CaptureFixture) -> None:
    """The constant model scores 0.8 with the box (235, 100, 385, 222) px on every 640x480 frame."""
    paths = session(tmp_path)
    argv = ["--root", str(tmp_path), "annotate", "--prelabel", "model", "--model", str(constant_model), "--no-gui"]
    assert main([*argv, "--threshold", "0.81"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 0 model proposals to {paths.labels}"
    assert main([*argv, "--threshold", "0.79"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 2 model proposals to {paths.labels}"
    x1, y1, x2, y2 = CONSTANT_FRAME_BOX
    for name in ("empty.json", "face.json"):
        assert json.loads((paths.labels / name).read_text())["shapes"][0]["points"] == [[x1, y1], [x2, y2]]
    assert (paths.labels / "done.json").read_text() == '{"hand": "made"}'
