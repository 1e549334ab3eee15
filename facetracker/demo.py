"""The one-command demo: every step of the tutorial on the built-in sample session.

sample-data -> check -> split -> augment -> train -> evaluate, timed stage by stage, ending with a short
report of what was produced and where. It is what `make demo` runs.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facetracker.config import Paths
from facetracker.errors import FaceTrackerError

DEMO_FRAMES = 90
DEMO_PER_IMAGE = 12


@dataclass
class DemoReport:
    """Wall time of each stage and the lines each stage reported."""

    paths: Paths
    seconds: dict[str, float] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        width = max(len(stage) for stage in self.seconds)
        rows = [f"  {stage:<{width}}  {seconds:7.1f} s   {self.lines[stage].splitlines()[0]}"
                for stage, seconds in self.seconds.items()]
        total = sum(self.seconds.values())
        return "\n".join([
            "", "FaceTracker demo: done", *rows, f"  {'total':<{width}}  {total:7.1f} s", "",
            f"model:       {self.paths.model}",
            f"loss curves: {self.paths.logs / 'loss_curves.png'}",
            f"predictions: {self.paths.logs / 'predictions.png'}",
            f"evaluation:  {self.paths.logs / 'evaluation.json'}",
            f"TensorBoard: tensorboard --logdir {self.paths.logs}",
            "", self.lines.get("evaluate", ""),
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
             epochs: int | None = None, seed: int = 0) -> DemoReport:
    """Run every step on sample data below `paths.root`; re-running reuses what is already there."""
    from facetracker.annotations import check
    from facetracker.sample_data import make_sample_data
    from facetracker.split import split_dataset

    for flag, value in (("--frames", frames), ("--per-image", per_image)):
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

    trained = report.run("train", lambda: train_from_paths(paths, preset=preset, epochs=epochs, verbose=2))
    if trained.model_path is None:
        raise FaceTrackerError("training saved no model (no epoch had a finite validation loss); "
                               "try a lower --learning-rate, see the report above.")
    from facetracker.realtime import Detector

    detector = Detector.load(paths.model)
    report.run("evaluate", lambda: evaluate(paths, paths.model, detector=detector))
    prediction_grid(paths, paths.model, detector=detector)
    return report
