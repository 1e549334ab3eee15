"""Training throughput and peak memory per backbone.

In-memory input (the pipeline item shows what the pipeline costs), heads Dense(2048) as in the
tutorial, Adam, random weights; each backbone and batch size in a fresh subprocess so that peak
memory (RSS) is its own. The first fit (tracing the train step and two steps) is reported apart.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

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
    """One subprocess per (backbone, batch)."""
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
        "title": "Training throughput and peak memory",
        "tables": [{"columns": ["backbone", "batch", "parameters", "images/s", "first fit s", "RSS after import MiB",
                                "peak RSS MiB"], "rows": rows}],
        "runs": results,
    }
