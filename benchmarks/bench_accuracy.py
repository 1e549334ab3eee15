"""Accuracy: the quick preset trained from scratch against OpenCV's Haar cascade, on real-size frames.

The quick preset (small backbone) trains on the run's augmented sample session; `facetracker.evaluate`
then scores it and the Haar cascade (no training; any detection is a positive) on the session's test
frames and on a separate check set of sample frames (another seed), threshold 0.5.
"""

import shutil

from common import augmented_session, log, train_quick

SETTINGS = {True: {"per_image": 8, "epochs": 3, "check_frames": 60},
            False: {"per_image": 15, "epochs": 8, "check_frames": 200}}
KEYS = (("images", "d"), ("faces", "d"), ("accuracy", ".3f"), ("precision", ".3f"), ("recall", ".3f"), ("f1", ".3f"),
        ("mean_iou", ".3f"), ("ap50", ".3f"), ("ap50_95", ".3f"), ("ms_per_image", ".1f"))


def check_set(root, count: int):
    """A separate set of sample frames (seed 1), all in its 'test' split."""
    from facetracker.config import Paths
    from facetracker.sample_data import make_sample_data

    check = Paths(root / "check")
    if not check.split_images("test").is_dir():
        make_sample_data(check, count=count, seed=1)
        for kind in ("images", "labels"):
            shutil.copytree(check.data / kind, check.data / "test" / kind)
    return check


def run(quick: bool) -> dict:
    """Train (or reuse the run's trained model), evaluate on the test frames and the check set."""
    from facetracker.config import Paths
    from facetracker.evaluate import evaluate

    cfg = SETTINGS[quick]
    root = augmented_session(cfg["per_image"])
    summary = train_quick(root, cfg["epochs"])
    if not summary.get("model"):
        raise RuntimeError("training saved no model")
    log(f"trained in {summary['train_seconds']:.0f} s")
    columns, values = [], []
    sets = (("test frames", Paths(root / "run_float32")), ("check set", check_set(root, cfg["check_frames"])))
    for name, paths in sets:
        report = evaluate(paths, summary["model"], "test", output=root / f"eval_{name.replace(' ', '_')}.json")
        for r in report.to_dict()["results"]:
            if r["images_from"] == "frames":
                columns.append(f"{'quick model' if r['detector'] == 'model' else 'Haar'}, {name}")
                values.append(r)
    rows = [[key] + [None if r[key] is None else format(r[key], spec) for r in values] for key, spec in KEYS]
    c = summary["config"]
    return {
        "title": "Accuracy: the quick preset against OpenCV's Haar cascade",
        "tables": [{"caption": f"quick preset: {c['backbone']}, {c['epochs']} epochs, batch {c['batch_size']}, "
                               f"lr {c['learning_rate']}, heads {c['head_units']}; trained in "
                               f"{summary['train_seconds']:.0f} s on {cfg['per_image']} copies per frame; check set "
                               f"of {cfg['check_frames']} frames.",
                    "columns": ["", *columns], "rows": rows}],
        "train": summary,
        "results": values,
    }
