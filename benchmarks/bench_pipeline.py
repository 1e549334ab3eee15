"""Input pipeline: the tutorial's labels read per element inside `tf.py_function` against labels read up front.

Elements per second until the last element of one pass arrives (the end of the iterator is not
waited for: with autotune on, TF 2.21 sometimes stalls there for seconds, which would swamp the
figure). Then training on the package's pipeline against training on one in-memory batch, same model,
same process, fits interleaved: how much the pipeline slows training down.
"""

import time

from common import BATCH, augmented_session, fit_rate, fmt, log, stats, synthetic, tracker

SETTINGS = {True: {"rounds": 2, "per_image": 8, "steps": 15}, False: {"rounds": 3, "per_image": 15, "steps": 40}}


def rate(make, count: int) -> float:
    """Elements per second until the count-th element arrives."""
    tick = time.perf_counter()
    iterator = iter(make())
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - tick)


def run(quick: bool) -> dict:
    """Label and pipeline rates, then training on the pipeline vs in memory (small backbone)."""
    import tensorflow as tf
    from tutorial import tutorial_dataset, tutorial_label_dataset

    from facetracker.config import Paths
    from facetracker.dataset import load_labels, make_dataset

    cfg = SETTINGS[quick]
    root = augmented_session(cfg["per_image"])
    paths = Paths(root)
    images, labels = paths.aug_images("train"), paths.aug_labels("train")
    n = len(list(labels.iterdir()))

    def ours_labels():
        _, classes, boxes = load_labels(labels, images)
        return tf.data.Dataset.from_tensor_slices((classes, boxes))

    split = root / "aug_data" / "train"
    methods = {
        "labels: tutorial tf.py_function(load_labels) per element": (lambda: tutorial_label_dataset(split), n, 1),
        "labels: ours (load_labels up front, from_tensor_slices)": (ours_labels, n, 1),
        "images+labels: tutorial (list_files x2, zip, shuffle 5000, batch 8)": (lambda: tutorial_dataset(split),
                                                                                n // 8, 8),
        "images+labels: ours make_dataset (batch 8)": (lambda: make_dataset(images, labels, 8, seed=0), n // 8, 8),
    }
    rates = {name: [] for name in methods}
    for r in range(cfg["rounds"]):
        for name, (make, count, batch) in methods.items():
            rates[name].append(rate(make, count) * batch)
        log(f"round {r + 1}: " + ", ".join(f"{v[-1]:.0f}/s" for v in rates.values()))
    names = list(rates)

    model = tracker("small", BATCH)
    pipeline = make_dataset(images, labels, BATCH, shuffle=True, seed=0).repeat()
    memory = synthetic(BATCH)
    model.fit(memory, epochs=1, steps_per_epoch=3, verbose=0)  # traces train_step (warm-up)
    model.fit(pipeline, epochs=1, steps_per_epoch=2, verbose=0)
    train = {"our pipeline": [], "in memory": [], "ratio": []}
    for r in range(cfg["rounds"]):
        a, b = fit_rate(model, pipeline, cfg["steps"], BATCH), fit_rate(model, memory, cfg["steps"], BATCH)
        train["our pipeline"].append(a)
        train["in memory"].append(b)
        train["ratio"].append(a / b)
        log(f"training round {r + 1}: pipeline {a:.1f} img/s, in memory {b:.1f} img/s")
    train = {k: stats(v) for k, v in train.items()}
    label_speedup = stats(rates[names[1]])["median"] / stats(rates[names[0]])["median"]
    pipe_speedup = stats(rates[names[3]])["median"] / stats(rates[names[2]])["median"]
    return {
        "title": "Input pipeline",
        "tables": [
            {"caption": f"aug_data/train ({n} samples), {cfg['rounds']} rounds:", "columns": ["pipeline", "elements/s"],
             "rows": [[name, fmt(stats(v), ".0f")] for name, v in rates.items()]},
            {"caption": f"Training the small backbone, batch {BATCH}, {cfg['steps']} steps per fit:",
             "columns": ["input", "images/s"],
             "rows": [["our pipeline (make_dataset)", fmt(train["our pipeline"])],
                      ["in-memory batch", fmt(train["in memory"])],
                      ["pipeline / in memory", fmt(train["ratio"], ".2f")]]},
        ],
        "findings": [f"Labels up front: {label_speedup:.1f}x the per-element `tf.py_function` rate; the whole "
                     f"pipeline at batch 8: {pipe_speedup:.2f}x the tutorial's."],
        "rates": {k: stats(v) for k, v in rates.items()},
        "training": train,
    }
