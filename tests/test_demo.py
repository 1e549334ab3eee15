"""`facetracker demo` runs every step on sample data and reports what it produced."""

import json

import keras
import pytest

from facetracker.cli import main


@pytest.mark.slow
def test_demo_runs_every_step_and_reports(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "demo", "--frames", "24", "--per-image", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    for stage in ("sample-data", "check", "split", "augment", "train", "evaluate", "total"):
        assert stage in out
    assert len(list((tmp_path / "data" / "images").glob("*.jpg"))) == 24
    assert len(list((tmp_path / "aug_data" / "train" / "labels").glob("*.json"))) > 0
    keras.saving.load_model(tmp_path / "facetracker.keras", safe_mode=True)
    report = json.loads((tmp_path / "logs" / "evaluation.json").read_text())
    assert report["split"] == "test"
    assert (tmp_path / "logs" / "loss_curves.png").is_file()
    assert (tmp_path / "logs" / "predictions.png").is_file()
