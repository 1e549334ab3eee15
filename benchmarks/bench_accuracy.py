"""Accuracy: the quick preset against OpenCV's Haar cascade, median of 3 training seeds, with 95% intervals.

Everything runs through the `facetracker` command as a user runs it. `facetracker demo` makes the
sample session (90 frames, split 70/15/15, augmented), trains the quick preset with seed 0 and scores
it and the Haar cascade on the session's test frames and on a 200-frame check session made with
another seed. `facetracker train --seed 1` and `--seed 2` then train again on the same data, and
`facetracker evaluate` scores each model the same way. The table gives the median over the three
seeds (min-max beside it) and, in brackets, the 95% bootstrap interval of the median seed's run.
The Haar cascade does not train: its figures are the same for every seed.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import data_root, log

SEEDS = (0, 1, 2)
DEMO_TARGET_S = 4 * 60  # the target: `make demo` in at most 4 minutes on 2 cores, evaluation included
# Size knobs of the quick mode (a check that the item runs); the full mode runs the demo as committed.
DEMO_ARGS = {True: ["--frames", "40", "--per-image", "3", "--epochs", "2", "--check-frames", "40"], False: []}
TRAIN_ARGS = {True: ["--epochs", "2"], False: []}
FIGURES = (("f1", "F1"), ("mean_iou", "mean IoU"), ("ap50", "AP@0.5"), ("ap50_95", "AP@[.5:.95]"))
SETS = (("test frames", "evaluation.json"), ("check session", "evaluation_check.json"))


def facetracker(root: Path, *args: str) -> str:
    """Run the real command line on `root`; its output (raises with its error output when it fails)."""
    entry = Path(sys.executable).with_name("facetracker")
    command = [str(entry)] if entry.is_file() else [sys.executable, "-m", "facetracker.cli"]
    done = subprocess.run([*command, "--root", str(root), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"facetracker {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def figures(run: Path) -> dict:
    """{set name: {"model": result, "haar": result}} from a run folder's two evaluation files."""
    out = {}
    for name, file in SETS:
        results = json.loads((run / file).read_text())["results"]
        out[name] = {r["detector"]: r for r in results if r["images_from"] == "frames"}
    return out


def train_seed(root: Path, seed: int, quick: bool) -> tuple[dict, float]:
    """Train with `seed` on the demo's data and score it on the test frames and the check session."""
    tick = time.perf_counter()
    facetracker(root, "train", "--preset", "quick", "--seed", str(seed), "--name", f"seed{seed}", *TRAIN_ARGS[quick])
    seconds = time.perf_counter() - tick
    run = root / "logs" / "train" / f"seed{seed}"
    # The test frames with no prediction grid (--grid 0); the check session's frames, which draw none.
    for (_, file), where in zip(SETS, (["--grid", "0"], ["--frames", str(root / "check" / "data")]), strict=True):
        facetracker(root, "evaluate", "--model", str(run / "best.keras"), "--output", str(run / file), *where)
    return figures(run), seconds


def interval(result: dict, key: str) -> str:
    """' [low, high]', the 95% interval of a figure, or '' without one."""
    low, high = result.get(f"{key}_ci") or (None, None)
    return f" [{low:.2f}, {high:.2f}]" if low is not None else ""


def run(quick: bool) -> dict:
    """The demo (seed 0), two more training seeds, and the table of medians against Haar."""
    root = data_root() / "seeds"
    tick = time.perf_counter()
    demo_output = facetracker(root, "demo", *DEMO_ARGS[quick])
    demo_seconds = time.perf_counter() - tick
    log(f"demo in {demo_seconds:.0f} s")
    runs = {0: figures(root / "logs" / "train" / "exp")}
    train_seconds = {}
    for seed in SEEDS[1:]:
        runs[seed], train_seconds[seed] = train_seed(root, seed, quick)
        log(f"seed {seed} trained in {train_seconds[seed]:.0f} s")
    tables, targets, medians = [], [], {}
    for name, _ in SETS:
        rows = []
        for key, label in FIGURES:
            values = [runs[s][name]["model"][key] for s in SEEDS]
            median_seed = sorted(SEEDS, key=lambda s: runs[s][name]["model"][key])[len(SEEDS) // 2]
            haar = runs[0][name]["haar"]
            medians[(name, key)] = (statistics.median(values), haar[key])
            spread = f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"
            rows.append([label, spread + interval(runs[median_seed][name]["model"], key),
                         f"{haar[key]:.3f}" + interval(haar, key)])
        model = runs[0][name]["model"]
        tables.append({"caption": f"{name}: {model['images']} frames, {model['faces']} with a face",
                       "columns": ["", "quick model: median of 3 seeds (min–max) [95%]", "Haar [95%]"],
                       "rows": rows})
        beaten = [label for key, label in FIGURES if medians[(name, key)][0] > medians[(name, key)][1]]
        targets.append({"target": f"beats Haar on F1, mean IoU, AP@0.5 and AP@[.5:.95] on the {name}",
                        "measured": f"beats it on {', '.join(beaten) or 'none'}",
                        "met": len(beaten) == len(FIGURES) if not quick else None,
                        "reason": "" if not quick else "quick mode: too little training to judge"})
    stages = [line.strip() for line in demo_output.splitlines() if line.strip().startswith(("total", "train "))]
    if not quick:  # the demo with its defaults is what `make demo` runs; its wall time includes Python's start
        targets.append({"target": f"`make demo` in at most {DEMO_TARGET_S} s including evaluation",
                        "measured": f"{demo_seconds:.0f} s (`facetracker demo`, seed 0, start to end)",
                        "met": demo_seconds <= DEMO_TARGET_S,
                        "reason": "" if demo_seconds <= DEMO_TARGET_S else "training takes most of it (speedup item)"})
    return {
        "title": "Accuracy: the quick preset against OpenCV's Haar cascade (3 seeds)",
        "tables": tables,
        "targets": targets,
        "findings": [f"`facetracker demo` (seed 0) took {demo_seconds:.0f} s end to end here; seeds 1 and 2 "
                     f"trained in {', '.join(f'{v:.0f} s' for v in train_seconds.values())}.",
                     *(f"demo report: {line}" for line in stages)],
        "runs": {str(k): v for k, v in runs.items()},
        "demo_report": demo_output[demo_output.index("FaceTracker demo: done"):] if "FaceTracker demo" in demo_output
        else demo_output[-6000:],
    }
