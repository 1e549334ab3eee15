"""`facetracker demo` runs every step on sample data and reports what it produced."""

import json

import keras
import pytest

from facetracker.cli import main


@pytest.mark.slow
def test_demo_runs_every_step_and_reports(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "demo", "--frames", "24", "--per-image", "2", "--epochs", "1",
                 "--check-frames", "12"]) == 0
    out = capsys.readouterr().out
    for stage in ("sample-data", "check", "split", "augment", "train", "evaluate", "check session", "total"):
        assert stage in out
    assert len(list((tmp_path / "data" / "images").glob("*.jpg"))) == 24
    assert len(list((tmp_path / "aug_data" / "train" / "labels").glob("*.json"))) > 0
    keras.saving.load_model(tmp_path / "facetracker.keras", safe_mode=True)
    run = tmp_path / "logs" / "train" / "exp"
    report = json.loads((run / "evaluation.json").read_text())
    assert report["split"] == "test"
    check = json.loads((run / "evaluation_check.json").read_text())
    assert [r["images"] for r in check["results"]] == [12, 12]  # the model and Haar on every check frame
    assert all(len(r["ap50_ci"]) == 2 for r in check["results"])
    assert len(list((tmp_path / "check" / "data" / "images").glob("*.jpg"))) == 12
    assert (run / "loss_curves.png").is_file()
    assert (run / "predictions.png").is_file()
