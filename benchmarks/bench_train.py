"""Training: where an epoch's time goes (the quick preset as `facetracker train` runs it), throughput, peak memory.

First the quick preset as `facetracker train` runs it: `facetracker.train.train_from_paths` (its
pipeline, EMA, validation, best.keras, CSV log, backup and TensorBoard callbacks) trains on the run's
aug_data, once with the crop cache off (every epoch decodes every JPEG: the code before the cache)
and once with it on (`--cache auto`), runs alternating, round by round. A callback placed after all
of the run's own callbacks times each epoch's parts: the wait for the first batch, the training
steps, validation (EMA weights swapped in), and the epoch-end callbacks (from the end of validation
to the end of the last callback). The first epoch (tracing, and with the cache, decoding into it) is
reported apart; later epochs as the median over epochs and rounds. The training steps are then split,
in the same process, by training the same model on batches held in memory (no input pipeline), with
and without the EMA update: forward and backward pass, EMA update, and the rest, the input pipeline's
share (decoding competes with training for the cores). JPEG decode and resize alone is timed as the
pipeline's parallel map over the training crops, with nothing else running.

Then throughput per backbone: in-memory input, heads Dense(2048) as in the tutorial, Adam, random
weights; each backbone and batch size in a fresh subprocess so that peak memory (RSS) is its own.
The first fit (tracing the train step and two steps) is reported apart.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import breakdown
from common import fit_rate, fmt, log, maxrss_mb, stats, synthetic, tracker

SETTINGS = {True: {"runs": [("small", 8), ("small", 16)], "steps": 15, "vgg_steps": 5},
            False: {"runs": [("small", 8), ("small", 16), ("mobilenetv2", 8), ("vgg16", 8)], "steps": 40,
                    "vgg_steps": 8}}


def measure(backbone: str, batch: int, steps: int) -> dict:
    """Images/s and peak RSS of one backbone at one batch size (run in its own process)."""
    import keras  # noqa: F401
    import tensorflow as tf  # noqa: F401

    import facetracker.train  # noqa: F401

    base = maxrss_mb()
    tick = time.perf_counter()
    model = tracker(backbone, batch)
    data = synthetic(batch)
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    warm = time.perf_counter() - tick
    rates = [fit_rate(model, data, steps, batch) for _ in range(2 if backbone == "vgg16" else 3)]
    return {"backbone": backbone, "batch": batch, "params": model.detector.count_params(), "rates": stats(rates),
            "warmup_s": warm, "rss_after_import_mb": base, "peak_rss_mb": maxrss_mb()}


def run(quick: bool) -> dict:
    """The breakdown of the quick preset's epochs, then one subprocess per (backbone, batch)."""
    epochs = breakdown.measure(quick)
    cfg = SETTINGS[quick]
    results = []
    for backbone, batch in cfg["runs"]:
        steps = cfg["vgg_steps"] if backbone == "vgg16" else cfg["steps"]
        code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_train; "
                f"print('RESULT', json.dumps(bench_train.measure({backbone!r}, {batch}, {steps})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{backbone} batch {batch} failed: {done.stderr[-500:]}")
        results.append(json.loads(line[7:]))
        log(f"{backbone} batch {batch}: {results[-1]['rates']['median']:.1f} img/s")
    rows = [[r["backbone"], r["batch"], f"{r['params']:,}", fmt(r["rates"]), f"{r['warmup_s']:.0f}",
             f"{r['rss_after_import_mb']:.0f}", f"{r['peak_rss_mb']:.0f}"] for r in results]
    return {
        **epochs,
        "title": "Training: where the time goes, throughput and peak memory",
        "tables": [*epochs["tables"], {
            "caption": "Throughput per backbone, in memory (tutorial heads, random weights):",
            "columns": ["backbone", "batch", "parameters", "images/s", "first fit s", "RSS after import MiB",
                        "peak RSS MiB"], "rows": rows}],
        "runs": results,
        "breakdown_runs": epochs["runs"],
    }
