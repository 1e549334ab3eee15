"""The one-command demo: every step of the tutorial on the built-in sample session.

sample-data -> check -> split -> augment -> train -> evaluate, timed stage by stage, ending with a short
report of what was produced and where. It is what `make demo` runs.

The test split of a 90-frame session is a dozen frames, too few to tell two detectors apart, so the
model and the Haar cascade are also scored on a second session made with another seed (200 frames,
in check/data), with 95% bootstrap intervals.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetracker.config import Paths
from facetracker.errors import FaceTrackerError

DEMO_FRAMES = 90
DEMO_PER_IMAGE = 30
CHECK_FRAMES = 200
CHECK_SEED = 1000  # added to the demo's seed: the check session shares no frame with the training session


@dataclass
class DemoReport:
    """Wall time of each stage and the lines each stage reported."""

    paths: Paths
    run_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        width = max(len(stage) for stage in self.seconds)
        rows = [f"  {stage:<{width}}  {seconds:7.1f} s   {self.lines[stage].splitlines()[0]}"
                for stage, seconds in self.seconds.items()]
        total = sum(self.seconds.values())
        run = self.run_dir or self.paths.logs
        return "\n".join([
            "", "FaceTracker demo: done", *rows, f"  {'total':<{width}}  {total:7.1f} s", "",
            f"model:       {self.paths.model} (a copy of {run / 'best.keras'})",
            f"loss curves: {run / 'loss_curves.png'}",
            f"predictions: {run / 'predictions.png'}",
            f"evaluation:  {run / 'evaluation.json'}, {run / 'evaluation_check.json'}",
            f"TensorBoard: tensorboard --logdir {self.paths.train_runs}",
            "", self.lines.get("evaluate", ""), "", self.lines.get("check session", ""),
        ])

    def run(self, stage: str, step: Callable[[], Any]) -> Any:
        """Run one stage, print its report, and keep its time."""
        print(f"== {stage}", flush=True)
        start = time.perf_counter()
        result = step()
        self.seconds[stage] = time.perf_counter() - start
        text = result.format() if hasattr(result, "format") else str(result)
        self.lines[stage] = text
        print(text, flush=True)
        return result


def augment_all(paths: Paths, per_image: int, seed: int) -> str:
    from facetracker.augment import augment_dataset

    summaries = augment_dataset(paths, per_image=per_image, seed=seed)
    failed = [f for s in summaries.values() for f in s.failed]
    if failed:
        raise FaceTrackerError(f"augment failed for {len(failed)} samples, first: {failed[0][0]}: {failed[0][1]}")
    return "  ".join(f"{split}: {s.written + s.skipped} samples" for split, s in summaries.items())


def run_demo(paths: Paths, preset: str = "quick", frames: int = DEMO_FRAMES, per_image: int = DEMO_PER_IMAGE,
             epochs: int | None = None, seed: int = 0, check_frames: int = CHECK_FRAMES,
             cache: str = "auto") -> DemoReport:
    """Run every step on sample data below `paths.root`; re-running reuses what is already there."""
    from facetracker.annotations import check
    from facetracker.sample_data import make_sample_data
    from facetracker.split import split_dataset

    for flag, value in (("--frames", frames), ("--per-image", per_image), ("--check-frames", check_frames)):
        if value < 1:
            raise FaceTrackerError(f"{flag} {value}: give a number >= 1, or leave it out for the default.")
    report = DemoReport(paths)
    report.run("sample-data", lambda: make_sample_data(paths, count=frames, seed=seed))
    checked = report.run("check", lambda: check(paths))
    if checked.errors:
        raise FaceTrackerError(f"check found {len(checked.errors)} errors in {paths.data}; fix them and re-run.")
    report.run("split", lambda: "  ".join(f"{k}: {len(v)}" for k, v in split_dataset(paths, seed=seed).items()))
    report.run("augment", lambda: augment_all(paths, per_image, seed))

    from facetracker.evaluate import evaluate, prediction_grid
    from facetracker.train import train_from_paths

    trained = report.run("train", lambda: train_from_paths(paths, preset=preset, epochs=epochs, verbose=2, seed=seed,
                                                                cache=cache))
    if trained.model_path is None:
        raise FaceTrackerError("training saved no model (no epoch had a finite validation loss); "
                               "try a lower --learning-rate, see the report above.")
    from facetracker.inference import Detector

    report.run_dir = trained.log_dir
    detector = Detector.load(paths.model)
    report.run("evaluate", lambda: evaluate(paths, paths.model, detector=detector))
    prediction_grid(paths, paths.model, detector=detector)
    session = paths.check_session
    report.run("check session", lambda: check_session(paths, session, check_frames, seed + CHECK_SEED, detector))
    return report


def check_session(paths: Paths, session: Paths, frames: int, seed: int, detector: object) -> object:
    """Make the check session (once) and score the model and the Haar cascade on all its frames."""
    from facetracker.evaluate import REPORT_FILE, evaluate, report_path
    from facetracker.sample_data import make_sample_data

    make_sample_data(session, count=frames, seed=seed)
    output = report_path(paths, paths.model, REPORT_FILE, "check")
    return evaluate(paths, paths.model, detector=detector, frames=session.data, output=output)
