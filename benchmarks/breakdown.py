"""Where a training epoch's time goes, the quick preset as `facetracker train` runs it (part of the train item).

See bench_train.py's docstring for the method.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    BATCH,
    augmented_session,
    fit_rate,
    fmt,
    log,
    quick_preset,
    stats,
    synthetic,
    training_precision,
)

SETTINGS = {True: {"rounds": 1, "epochs": 2, "per_image": 8, "steps": 15},
            False: {"rounds": 2, "epochs": 4, "per_image": 15, "steps": 40}}
CACHES = ("off", "auto")  # before (decode every epoch) and after
PARTS = ("wait for the first batch", "training steps", "validation", "epoch-end callbacks", "other")


def timeline_callback():
    """A Keras callback that records, per epoch, when each part of it begins and ends (its `.epochs` list)."""
    import keras

    class Timeline(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def _mark(self, key: str, first_only: bool = False) -> None:
            marks = self.epochs[-1]
            if not (first_only and key in marks):
                marks[key] = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append({"begin": time.perf_counter()})

        def on_train_batch_begin(self, batch, logs=None):
            self._mark("first_batch", first_only=True)

        def on_train_batch_end(self, batch, logs=None):
            self._mark("last_batch")
            self.epochs[-1]["batches"] = batch + 1

        def on_test_begin(self, logs=None):
            self._mark("test_begin")

        def on_test_end(self, logs=None):
            self._mark("test_end")

        def on_epoch_end(self, epoch, logs=None):
            self._mark("end")

    return Timeline()


def epoch_parts(marks: dict) -> dict:
    """Seconds of each part of one epoch from its timeline marks."""
    parts = {
        "wait for the first batch": marks["first_batch"] - marks["begin"],
        "training steps": marks["last_batch"] - marks["first_batch"],
        "validation": marks["test_end"] - marks["test_begin"],
        "epoch-end callbacks": marks["end"] - marks["test_end"],
    }
    total = marks["end"] - marks["begin"]
    return {**parts, "other": total - sum(parts.values()), "total": total, "batches": marks["batches"]}


def train_run(root, cache: str, epochs: int, name: str) -> list[dict]:
    """One `train_from_paths` run of the quick preset; the parts of each epoch."""
    from facetracker.config import Paths
    from facetracker.train import train_from_paths

    timeline = timeline_callback()
    train_from_paths(Paths(root), preset="quick", epochs=epochs, verbose=0, name=name, callbacks=[timeline],
                     cache=cache)
    return [epoch_parts(marks) for marks in timeline.epochs]


def decode_rate(root, count: int) -> float:
    """Crops per second through the pipeline's parallel decode-and-resize map alone."""
    import tensorflow as tf

    from facetracker.config import Paths
    from facetracker.dataset import PARALLEL_CALLS, decode_image, load_labels, pipeline_options, to_pixels

    paths = Paths(root)
    files, _, _ = load_labels(paths.aug_labels("train"), paths.aug_images("train"))
    files = files[:count]
    data = tf.data.Dataset.from_tensor_slices(files).map(lambda f: to_pixels(decode_image(f), 120),
                                                          num_parallel_calls=PARALLEL_CALLS)
    iterator = iter(data.with_options(pipeline_options()))
    tick = time.perf_counter()
    for _ in files:
        next(iterator)
    return len(files) / (time.perf_counter() - tick)


def alternating_rates(runs: dict, rounds: int, label: str) -> dict[object, list[float]]:
    """Training images/s of each run in `runs` ({key: (tracker, dataset, steps, batch)}), rounds alternating.

    Each tracker first fits 3 steps, which traces its train step.
    """
    for tracker, data, _, _ in runs.values():
        tracker.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
    rates = {key: [] for key in runs}
    for r in range(rounds):
        for key, (tracker, data, steps, batch) in runs.items():
            rates[key].append(fit_rate(tracker, data, steps, batch))
        log(f"{label}, round {r + 1}: " + ", ".join(f"{key} {values[-1]:.0f} img/s" for key, values in rates.items()))
    return rates


def in_memory_rates(root, steps: int, rounds: int) -> dict:
    """Training images/s of the quick preset's model on batches held in memory, with and without EMA."""
    import numpy as np
    import tensorflow as tf

    from facetracker.config import Paths
    from facetracker.dataset import make_dataset
    from facetracker.train import build_tracker, resolve_preset

    paths = Paths(root)
    source = make_dataset(paths.aug_images("train"), paths.aug_labels("train"), BATCH, True, seed=0, cache="off")
    batches = list(source.take(8).as_numpy_iterator())
    x = np.concatenate([b[0] for b in batches])
    labels = (np.concatenate([b[1][0] for b in batches]), np.concatenate([b[1][1] for b in batches]))
    memory = tf.data.Dataset.from_tensor_slices((x, labels)).batch(BATCH).repeat()
    strategy = tf.distribute.get_strategy()
    runs = {name: (build_tracker(resolve_preset("quick", ema_momentum=ema), 120, 100, strategy), memory, steps, BATCH)
            for name, ema in (("with EMA", 0.99), ("without EMA", 0.0))}
    return {name: stats(values) for name, values in alternating_rates(runs, rounds, "in memory").items()}


def batch_rates(steps: int, rounds: int) -> dict:
    """In-memory images/s of the quick preset's model at batch 16 and 32 (one random batch, repeated), interleaved.

    In float32: without oneDNN a CPU's bfloat16 is emulated, so the kernels are compared at the one precision.
    """
    import tensorflow as tf

    from facetracker.train import build_tracker, resolve_preset

    strategy = tf.distribute.get_strategy()
    runs = {b: (build_tracker(resolve_preset("quick", batch_size=b, mixed_precision="off"), 120, 100, strategy),
                synthetic(b), max(6, steps * BATCH // b), b)
            for b in (BATCH, 2 * BATCH)}
    return {str(b): statistics.median(v) for b, v in alternating_rates(runs, rounds, "batch size").items()}


def batchnorm_rates(steps: int, rounds: int) -> dict:
    """In-memory images/s of the quick preset's model, batch norm as Keras' ops and as the fused kernel, alternating."""
    import keras
    import tensorflow as tf

    import facetracker.model as models
    from facetracker.train import build_tracker, resolve_preset

    layers = {"Keras' BatchNormalization ops (before)": keras.layers.BatchNormalization,
              "TensorFlow's fused kernel (after)": models.FusedBatchNormalization}
    committed, data, runs = models.SMALL_BATCH_NORM, synthetic(BATCH), {}
    try:
        for name, layer in layers.items():
            models.SMALL_BATCH_NORM = layer
            tracker = build_tracker(resolve_preset("quick"), 120, 100, tf.distribute.get_strategy())
            runs[name] = (tracker, data, steps, BATCH)
    finally:
        models.SMALL_BATCH_NORM = committed
    return {name: stats(values) for name, values in alternating_rates(runs, rounds, "batch norm").items()}


def onednn_rates(steps: int, rounds: int) -> dict:
    """`batch_rates` with TensorFlow's oneDNN kernels off and on (TF_ENABLE_ONEDNN_OPTS), processes alternating."""
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import breakdown; "
            f"print('RESULT', json.dumps(breakdown.batch_rates({steps}, 2)))")
    runs = {"off": [], "on": []}
    for r in range(rounds):
        for name, flag in (("off", "0"), ("on", "1")):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS=flag))
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise RuntimeError(f"oneDNN {name} failed: {done.stderr[-500:]}")
            runs[name].append(json.loads(line[7:]))
            log(f"oneDNN {name}, round {r + 1}: {runs[name][-1]}")
    return {name: {b: stats([run[b] for run in values]) for b in values[0]} for name, values in runs.items()}


def median_parts(runs: list[list[dict]], first: bool) -> dict:
    """Median seconds of each part over the first epochs (first=True) or all later epochs of the runs."""
    epochs = [run[0] for run in runs] if first else [e for run in runs for e in run[1:]]
    return {key: statistics.median(e[key] for e in epochs) for key in (*PARTS, "total", "batches")}


def measure(quick: bool) -> dict:
    """Timed training runs, cache off and on, then the split of a training step: tables and findings."""
    from facetracker.config import Paths

    cfg = SETTINGS[quick]
    root = augmented_session(cfg["per_image"])
    n_train = len(list(Paths(root).aug_labels("train").glob("*.json")))
    n_val = len(list(Paths(root).aug_labels("val").glob("*.json")))
    runs = {cache: [] for cache in CACHES}
    for r in range(cfg["rounds"]):
        for cache in CACHES:
            runs[cache].append(train_run(root, cache, cfg["epochs"], f"breakdown-{cache}-{r}"))
            later = [e["total"] for e in runs[cache][-1][1:]]
            log(f"round {r + 1}, cache {cache}: first epoch {runs[cache][-1][0]['total']:.1f} s, "
                f"later {statistics.median(later):.1f} s")
    memory = in_memory_rates(root, cfg["steps"], 2 if quick else 3)
    onednn = onednn_rates(cfg["steps"], 1 if quick else 2)
    batchnorm = batchnorm_rates(cfg["steps"], 2 if quick else 4)
    bn_before, bn_after = (r["median"] for r in batchnorm.values())
    decode = decode_rate(root, min(n_train, 480))
    log(f"decode and resize alone: {decode:.0f} crops/s")
    later = {cache: median_parts(runs[cache], first=False) for cache in CACHES}
    first = {cache: median_parts(runs[cache], first=True) for cache in CACHES}

    def share(parts: dict, key: str) -> str:
        return f"{parts[key]:.2f} s ({parts[key] / parts['total']:.0%})"

    epoch_rows = [[part, *(share(later[c], part) for c in CACHES)] for part in PARTS]
    epoch_rows.append(["whole epoch", *(f"{later[c]['total']:.2f} s" for c in CACHES)])
    epoch_rows.append(["first epoch (apart)", *(f"{first[c]['total']:.2f} s" for c in CACHES)])
    ms = {c: 1000 * later[c]["training steps"] / max(1, later[c]["batches"] - 1) for c in CACHES}
    fwd_bwd = 1000 * BATCH / memory["without EMA"]["median"]
    with_ema = 1000 * BATCH / memory["with EMA"]["median"]
    step_rows = [
        ["forward and backward pass (in memory, no EMA)", f"{fwd_bwd:.1f}", f"{fwd_bwd:.1f}"],
        ["EMA update (in memory: with EMA - without)", f"{with_ema - fwd_bwd:.1f}", f"{with_ema - fwd_bwd:.1f}"],
        ["input pipeline (as run - in memory with EMA)", *(f"{ms[c] - with_ema:.1f}" for c in CACHES)],
        ["training step as `facetracker train` runs it", *(f"{ms[c]:.1f}" for c in CACHES)],
        ["JPEG decode and resize of 16 crops, alone (both cores)", f"{1000 * BATCH / decode:.1f}", "(epoch 1 only)"],
    ]
    rates = {c: BATCH * 1000 / ms[c] for c in CACHES}
    epoch_rates = {c: n_train / later[c]["total"] for c in CACHES}
    rate_rows = [
        ["in memory (quick preset's model, EMA on, no pipeline)", fmt(memory["with EMA"], ".0f"), "-"],
        *[[f"as `facetracker train` runs it, cache {c}", f"{rates[c]:.0f}", f"{epoch_rates[c]:.0f}"]
          for c in CACHES],
    ]
    columns = ["part", "cache off (before)", "cache auto (after)"]
    precision = training_precision(quick_preset())
    return {
        "tables": [
            {"caption": f"{n_train} training and {n_val} validation crops, batch {BATCH}, training in {precision} "
                        f"(`--mixed-precision auto` here); {cfg['rounds']} round(s) of "
                        f"{cfg['epochs']} epochs per setting; seconds per epoch (median of the epochs after the "
                        "first) and share of the epoch:", "columns": columns, "rows": epoch_rows},
            {"caption": "A training step split, ms per batch of 16 (later epochs):",
             "columns": ["part of a training step", "cache off (before)", "cache auto (after)"], "rows": step_rows},
            {"caption": "Training images/s:", "columns": ["input", "training steps", "whole epochs (with validation "
                                                          "and callbacks)"], "rows": rate_rows},
            {"caption": "The quick preset's model in memory, images/s, with TensorFlow's oneDNN kernels off and on "
                        "(TF_ENABLE_ONEDNN_OPTS; a fresh process each, alternating) and at batch 16 and 32, in float32 "
                        "(without oneDNN, bfloat16 would be emulated):",
             "columns": ["oneDNN", f"batch {BATCH}", f"batch {2 * BATCH}"],
             "rows": [[name, *(fmt(r[str(b)], ".0f") for b in (BATCH, 2 * BATCH))] for name, r in onednn.items()]},
            {"caption": f"The quick preset's model in memory, batch {BATCH}, in {precision}, images/s with the small "
                        "backbone's batch norm as Keras' own layer computes it in training (separate ops for the "
                        "moments, the normalisation and their gradients) and through TensorFlow's fused kernel "
                        "(`model.FusedBatchNormalization`); one process, alternating:",
             "columns": ["batch norm", "images/s"],
             "rows": [[name, fmt(r, ".0f")] for name, r in batchnorm.items()]},
        ],
        "findings": [
            f"Cache on: an epoch after the first takes {later['auto']['total']:.2f} s against "
            f"{later['off']['total']:.2f} s without ({later['off']['total'] / later['auto']['total']:.2f}x); "
            f"its first epoch {first['auto']['total']:.1f} s against {first['off']['total']:.1f} s.",
            f"Without the cache the input pipeline takes {(ms['off'] - with_ema) / ms['off']:.0%} of a training "
            f"step; with it {(ms['auto'] - with_ema) / ms['auto']:.0%}.",
            f"Fused batch norm: {bn_after:.0f} against {bn_before:.0f} images/s with Keras' ops "
            f"({bn_after / bn_before:.2f}x).",
        ],
        "onednn": onednn, "batchnorm": batchnorm,
        "later": later, "first": first, "memory": memory, "decode_per_s": decode, "step_ms": ms,
        "runs": runs, "n_train": n_train, "n_val": n_val,
    }
