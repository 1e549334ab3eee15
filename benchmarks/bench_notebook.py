"""Run All of FaceDetection.ipynb with its committed settings, as a learner without a webcam runs it.

The committed notebook runs headless in a real Jupyter kernel (nbclient), in a fresh folder (its `ROOT`
setting, set in a cell right after the `parameters` cell, is the only change), with no camera: so it
takes the built-in sample session, 60 augmented copies per frame and the quick preset's 30 epochs.
Each cell's wall time is kept; the table lists the cells that take more than a second, by their first
line. `--quick` lowers the documented size knobs (24 frames, 3 copies, 1 epoch) to check the item runs.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from common import REPO, data_root, log, quick_preset
from nbclient import NotebookClient

sys.path.insert(0, str(REPO / "tests"))
from notebook_settings import with_settings  # noqa: E402  (the notebook tests' way of setting ROOT and knobs)

QUICK_KNOBS = "SAMPLE_FRAMES = 24\nPER_IMAGE = 3\nEPOCHS = 1\n"
RUN_ALL_TARGET_S = 8 * 60  # the target: Run All in at most 8 minutes on 2 cores
# The target: the training cell in at most half of the 948 s it took before the speed work (issue 24's figure,
# on the 2-core machine of that day; the speedup item compares before and after on one machine).
TRAINING_CELL_TARGET_S = 948 / 2


def first_line(cell: nbformat.NotebookNode) -> str:
    tags = cell.metadata.get("tags", [])
    line = next((x for x in cell.source.splitlines() if x.strip()), "")
    return f"[{', '.join(tags)}] {line[:70]}" if tags else line[:80]


def run_all(root: Path, quick: bool) -> tuple[float, list[tuple[str, float, list[str]]]]:
    """Execute every cell in order; (total seconds, [(first line, seconds, tags)] per code cell)."""
    notebook = with_settings(f"ROOT = Path({str(root)!r})\n" + (QUICK_KNOBS if quick else ""))
    env_backup = {k: os.environ.pop(k) for k in ("DISPLAY", "WAYLAND_DISPLAY") if k in os.environ}
    client = NotebookClient(notebook, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(root)}})
    cells = []
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                tick = time.perf_counter()
                client.execute_cell(cell, index)
                if cell.cell_type == "code":
                    cells.append((first_line(cell), time.perf_counter() - tick, cell.metadata.get("tags", [])))
                    log(f"cell {index}: {cells[-1][1]:.1f} s  {cells[-1][0]}")
    finally:
        os.environ.update(env_backup)
    return time.perf_counter() - start, cells


def run(quick: bool) -> dict:
    root = data_root() / "notebook-run-all"
    root.mkdir(parents=True, exist_ok=True)
    total, cells = run_all(root, quick)
    training = sum(seconds for _, seconds, tags in cells if "train" in tags)
    rows = [[line, f"{seconds:.1f}"] for line, seconds, _ in cells if seconds >= 1.0]
    rows.append(["Run All (kernel start included)", f"{total:.0f}"])
    epochs = quick_preset().epochs  # the notebook's EPOCHS = None: the preset's
    settings = "the lowered size knobs of `--quick` (24 frames, 3 copies, 1 epoch)" if quick else \
        f"the committed settings (90 sample frames, 60 copies per frame, the quick preset's {epochs} epochs)"
    return {
        "title": "Run All of the notebook",
        "tables": [{"caption": f"Seconds per cell, with {settings}; cells under a second left out:",
                    "columns": ["cell (its tags, its first line)", "seconds"], "rows": rows}],
        "findings": [f"Run All took {total:.0f} s ({total / 60:.1f} min); the training cell (tag `train`) "
                     f"{training:.0f} s of it, {100 * training / total:.0f}%."],
        "targets": [] if quick else [
            {"target": "Run All with the committed settings in at most 8 minutes",
             "measured": f"{total:.0f} s", "met": total <= RUN_ALL_TARGET_S,
             "reason": "" if total <= RUN_ALL_TARGET_S else "the training cell takes most of it (speedup item)"},
            {"target": f"the notebook's training cell in at most {TRAINING_CELL_TARGET_S:.0f} s (half of 948 s)",
             "measured": f"{training:.0f} s", "met": training <= TRAINING_CELL_TARGET_S,
             "reason": "" if training <= TRAINING_CELL_TARGET_S else "see the breakdown in the training item"}],
        "run_all_seconds": total, "training_cell_seconds": training,
        "cells": [{"cell": line, "seconds": seconds, "tags": tags} for line, seconds, tags in cells],
    }
