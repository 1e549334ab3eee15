"""FaceTracker benchmarks: our implementation against the tutorial's approach, on this machine, in one run.

    .venv/bin/python benchmarks/run.py [--quick]      (or: make bench)

Not part of the test suite. Everything is written below a temporary folder (never the repo's data/),
and the results go to BENCHMARKS.md (and benchmarks/results.json). Each measurement runs in its own
subprocess (`run.py --worker NAME`), so that memory, Keras' global policy and TensorFlow's thread pools
do not leak from one item to the next. Methods compared with each other run interleaved, round by
round, in the same process on the same inputs: the machine is shared and noisy, so ratios measured
side by side are what counts, reported as medians with their min-max over rounds.

Items:
 1. real-time frame latency (VGG16-120: per-frame `model.predict` vs our Detector, jit, TFLite; light
    backbones; OpenCV's Haar cascade);
 2. input pipeline (the tutorial's `tf.py_function` labels vs ours; training on our pipeline vs in memory);
 3. augmentation throughput (the tutorial's serial loop vs `augment_split` with 1 and 2 workers);
 4. training throughput and peak memory per backbone;
 5. accuracy of the "quick" preset vs the Haar cascade;
 6. bf16 (mixed_bfloat16) on this CPU.
All models use weights="none": the machine is offline, and speed does not depend on weight values.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

# ----------------------------------------------------------------------------- settings

FULL = {
    "frames": 20, "rounds": 3, "light_frames": 60,
    "aug_per_image": 60, "aug_rounds": 2, "data_per_image": 15,
    "pipe_rounds": 3, "train_steps": 40, "vgg_steps": 5, "train_rounds": 3,
    "throughput": [("small", 8), ("small", 16), ("mobilenetv2", 8), ("vgg16", 8)],
    "tflite_vgg16": True, "pipeline_vgg16": True, "epochs": 8, "check_frames": 200,
    # VGG16 under mixed_bfloat16 did not finish 3 warm-up training steps in 9 minutes on this CPU (no bf16
    # instructions): only the small backbone's bf16 training is timed.
    "bf16_train": ["small"],
}
QUICK = {
    "frames": 8, "rounds": 2, "light_frames": 20,
    "aug_per_image": 10, "aug_rounds": 1, "data_per_image": 8,
    "pipe_rounds": 2, "train_steps": 15, "vgg_steps": 3, "train_rounds": 2,
    "throughput": [("small", 8), ("small", 16)],
    "tflite_vgg16": False, "pipeline_vgg16": False, "epochs": 2, "check_frames": 60,
    "bf16_train": ["small"],
}
SAMPLE_FRAMES = 90
BATCH = 16  # the quick preset's batch, used for the pipeline comparison
WORKER_TIMEOUT = 900  # seconds; a worker running longer is stopped and reported as failed


# ----------------------------------------------------------------------------- small helpers


def stats(values: list[float]) -> dict:
    """median, min, max and count of a list of numbers."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def maxrss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(message: str) -> None:
    print(f">> {message}", flush=True)


def frames_of(root: Path, count: int):
    """The first `count` 640x480 BGR frames of the sample session."""
    import cv2

    files = sorted((root / "data" / "images").glob("*.jpg"))[:count]
    return [cv2.imread(str(f)) for f in files]


def interleave(methods: dict, frames: list, rounds: int, warmup: int = 2) -> dict:
    """Time each method on every frame, method after method, round after round.

    Returns {name: {"ms": stats of every per-frame time, "round_ms": per-round medians}}.
    """
    for fn in methods.values():
        for frame in frames[:warmup]:
            fn(frame)
    times = {name: [] for name in methods}
    rounds_ms = {name: [] for name in methods}
    for r in range(rounds):
        for name, fn in methods.items():
            this = []
            for frame in frames:
                tick = time.perf_counter()
                fn(frame)
                this.append(1000 * (time.perf_counter() - tick))
            times[name] += this
            rounds_ms[name].append(statistics.median(this))
        log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {rounds_ms[n][-1]:.1f} ms" for n in methods))
    return {name: {"ms": stats(times[name]), "round_ms": stats(rounds_ms[name])} for name in methods}


# ----------------------------------------------------------------------------- workers (each in a subprocess)


def w_data(root: Path, cfg: dict) -> dict:
    """Sample session (90 frames), split, and a separate check set of frames (all in 'test')."""
    from facetracker.config import Paths
    from facetracker.sample_data import make_sample_data
    from facetracker.split import split_dataset

    paths = Paths(root)
    tick = time.perf_counter()
    make_sample_data(paths, count=SAMPLE_FRAMES, seed=0)
    splits = split_dataset(paths)
    check = Paths(root / "check")
    make_sample_data(check, count=cfg["check_frames"], seed=1)
    for kind in ("images", "labels"):
        target = check.data / "test" / kind
        target.mkdir(parents=True, exist_ok=True)
        for f in (check.data / kind).iterdir():
            shutil.copy2(f, target / f.name)
    return {"splits": {k: len(v) for k, v in splits.items()}, "check_frames": cfg["check_frames"],
            "seconds": time.perf_counter() - tick}


def w_augment(root: Path, cfg: dict) -> dict:
    """Item 3: the tutorial's serial loop vs augment_split (workers 1 and 2), images written per second."""
    from tutorial import tutorial_augment

    from facetracker.augment import augment_dataset, augment_split
    from facetracker.config import Paths

    paths = Paths(root)
    per = cfg["aug_per_image"]
    src_images, src_labels = paths.split_images("train"), paths.split_labels("train")
    bench = root / "bench_aug"
    rates = {"tutorial serial": [], "ours workers=1": [], "ours workers=2": []}
    ratios = []
    for r in range(cfg["aug_rounds"]):
        out = {}
        shutil.rmtree(bench, ignore_errors=True)
        tick = time.perf_counter()
        n = tutorial_augment(src_images.parent, bench / "tutorial", per)
        out["tutorial serial"] = n / (time.perf_counter() - tick)
        for workers in (1, 2):
            target = bench / f"w{workers}"
            tick = time.perf_counter()
            summary = augment_split(src_images, src_labels, target / "images", target / "labels", per_image=per,
                                    workers=workers, seed=r, progress=False)
            out[f"ours workers={workers}"] = summary.written / (time.perf_counter() - tick)
            if summary.failed:
                raise RuntimeError(f"augment failed: {summary.failed[:3]}")
        for k, v in out.items():
            rates[k].append(v)
        ratios.append(out["ours workers=2"] / out["tutorial serial"])
        log(f"round {r + 1}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in out.items()))
    shutil.rmtree(bench, ignore_errors=True)
    # The aug_data used by items 2 and 5.
    tick = time.perf_counter()
    summaries = augment_dataset(paths, per_image=cfg["data_per_image"], workers=2, seed=0, progress=False)
    made = {k: v.written for k, v in summaries.items()}
    return {"per_image": per, "sources": len(list(src_images.iterdir())),
            "rates": {k: stats(v) for k, v in rates.items()},
            "ratio_w2_vs_serial": stats(ratios), "aug_data": made, "aug_data_seconds": time.perf_counter() - tick}


def _tflite_detector(path: Path, threads: int | None):
    """A Detector over a .tflite file with an explicit thread count (the package leaves it to TFLite)."""
    import numpy as np
    import tensorflow as tf

    from facetracker.realtime import Detector, split_outputs

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inp, outs = interpreter.get_input_details()[0], interpreter.get_output_details()

    def predict(x):
        interpreter.set_tensor(inp["index"], np.asarray(x, np.float32))
        interpreter.invoke()
        return split_outputs([interpreter.get_tensor(o["index"]) for o in outs])

    return Detector(predict, int(inp["shape"][1]), "crop", path.name)


def _jit_detector(model):
    import tensorflow as tf

    from facetracker.realtime import Detector, split_outputs

    size = model.input_shape[1:]
    fn = tf.function(lambda x: model(x, training=False), jit_compile=True,
                     input_signature=[tf.TensorSpec((None, *size), tf.float32)])
    return Detector(lambda x: split_outputs([t.numpy() for t in fn(tf.constant(x))]), size[0], "crop", "jit")


def _latency_methods(model, name: str, root: Path, tflite: bool) -> dict:
    from facetracker.export import export_model
    from facetracker.realtime import Detector

    methods = {f"{name}: Detector (tf.function)": Detector.from_keras(model).warm_up(),
               f"{name}: Detector, jit_compile=True": _jit_detector(model).warm_up()}
    if tflite:
        keras_path = root / "models" / f"{name}.keras"
        keras_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(keras_path)
        tick = time.perf_counter()
        tfl = export_model(keras_path, "tflite", root / "models")
        log(f"{name}: TFLite export {time.perf_counter() - tick:.0f} s, {tfl.stat().st_size / 1e6:.0f} MB")
        methods[f"{name}: TFLite (Detector.load)"] = Detector.load(tfl).warm_up()
        methods[f"{name}: TFLite, num_threads=2"] = _tflite_detector(tfl, 2).warm_up()
    return methods


def w_latency_vgg16(root: Path, cfg: dict) -> dict:
    """Item 1: VGG16-120, per-frame model.predict (the tutorial) vs our paths, and the Haar cascade."""
    from tutorial import tutorial_frame

    from facetracker.annotations import haar_detector
    from facetracker.evaluate import haar_detection
    from facetracker.model import build_model

    model = build_model("vgg16", weights="none")
    frames = frames_of(root, cfg["frames"])
    methods = {"vgg16: tutorial per-frame model.predict": lambda f: tutorial_frame(model, f)}
    methods.update(_latency_methods(model, "vgg16", root, cfg["tflite_vgg16"]))
    cascade = haar_detector()
    methods["OpenCV Haar cascade (full frame)"] = lambda f: haar_detection(cascade, f)
    return interleave(methods, frames, cfg["rounds"])


def w_latency_light(root: Path, cfg: dict) -> dict:
    """Item 1: the light backbones through our Detector (and jit, TFLite)."""
    from tutorial import tutorial_frame

    from facetracker.model import build_model

    frames = frames_of(root, cfg["light_frames"])
    methods = {}
    for backbone in ("small", "mobilenetv2"):
        model = build_model(backbone, weights="none")
        methods[f"{backbone}: tutorial per-frame model.predict"] = (lambda m: lambda f: tutorial_frame(m, f))(model)
        methods.update(_latency_methods(model, backbone, root, True))
    return interleave(methods, frames, cfg["rounds"])


def _label_rate(make, count: int) -> float:
    """Elements per second until the count-th element arrives (the end of the iterator is not waited for)."""
    tick = time.perf_counter()
    iterator = iter(make())
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - tick)


def w_pipeline(root: Path, cfg: dict) -> dict:
    """Item 2a: labels via tf.py_function per element vs up front; whole input pipelines, elements/s."""
    import tensorflow as tf
    from tutorial import tutorial_dataset, tutorial_label_dataset

    from facetracker.config import Paths
    from facetracker.dataset import load_labels, make_dataset

    paths = Paths(root)
    split = root / "aug_data" / "train"
    images, labels = paths.aug_images("train"), paths.aug_labels("train")
    n = len(list(labels.iterdir()))

    def ours_labels():
        files, classes, boxes = load_labels(labels, images)
        return tf.data.Dataset.from_tensor_slices((classes, boxes))

    batches8, batches16 = n // 8, n // BATCH
    label_methods = {"labels: tutorial tf.py_function(load_labels) per element":
                         (lambda: tutorial_label_dataset(split), n),
                     "labels: ours (load_labels up front, from_tensor_slices)": (ours_labels, n)}
    pipe_methods = {"images+labels: tutorial (list_files x2, zip, shuffle 5000, batch 8)":
                        (lambda: tutorial_dataset(split), batches8, 8),
                    "images+labels: ours make_dataset (batch 8)":
                        (lambda: make_dataset(images, labels, 8, shuffle=True, seed=0), batches8, 8),
                    f"images+labels: ours make_dataset (batch {BATCH})":
                        (lambda: make_dataset(images, labels, BATCH, shuffle=True, seed=0), batches16, BATCH)}
    rates = {k: [] for k in (*label_methods, *pipe_methods)}
    for r in range(cfg["pipe_rounds"]):
        for name, (make, count) in label_methods.items():
            rates[name].append(_label_rate(make, count))
        for name, (make, count, batch) in pipe_methods.items():
            rates[name].append(_label_rate(make, count) * batch)
        log(f"round {r + 1}: " + ", ".join(f"{v[-1]:.0f}/s" for v in rates.values()))
    return {"elements": n, "rates": {k: stats(v) for k, v in rates.items()}}


class _BatchTimes:
    """A Keras callback recording when each training batch ends."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.t = []

            def on_train_batch_end(self, batch, logs=None):
                self.t.append(time.perf_counter())

        return Timer()


def _fit_rate(tracker, dataset, steps: int, batch: int, skip: int = 2) -> float:
    """Training images/s over `steps` batches of one fit() call, not counting the first `skip` batches."""
    timer = _BatchTimes()
    tracker.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    t = timer.t
    return batch * (len(t) - 1 - skip) / (t[-1] - t[skip])


def _synthetic(batch: int, size: int = 120):
    """An in-memory dataset repeating one random batch (no decoding)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    cls = (rng.random((batch, 1)) > 0.3).astype(np.float32)
    box = np.sort(rng.random((batch, 2, 2)), axis=1).reshape(batch, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    return tf.data.Dataset.from_tensors((x, (cls, box))).repeat()


def _tracker(backbone: str, batch: int, batches_per_epoch: int = 100, head_units: int | None = None):
    import tensorflow as tf

    from facetracker.model import HEAD_UNITS
    from facetracker.train import TrainConfig, build_tracker

    config = TrainConfig(backbone=backbone, weights="none", batch_size=batch, learning_rate=1e-4,
                         head_units=head_units or HEAD_UNITS)
    return build_tracker(config, 120, batches_per_epoch, tf.distribute.get_strategy())


def w_train_pipeline(root: Path, cfg: dict, backbone: str) -> dict:
    """Item 2b: training images/s on our pipeline vs on an in-memory batch, same model, interleaved."""
    from facetracker.config import Paths
    from facetracker.dataset import make_dataset

    paths = Paths(root)
    batch = BATCH if backbone == "small" else 8
    steps = cfg["train_steps"] if backbone == "small" else cfg["vgg_steps"] + 2
    rounds = cfg["train_rounds"] if backbone == "small" else 2
    tracker = _tracker(backbone, batch)
    ours = make_dataset(paths.aug_images("train"), paths.aug_labels("train"), batch, shuffle=True, seed=0).repeat()
    synthetic = _synthetic(batch)
    tick = time.perf_counter()
    tracker.fit(synthetic, epochs=1, steps_per_epoch=3, verbose=0)  # traces train_step (warm-up)
    warm = time.perf_counter() - tick
    tracker.fit(ours, epochs=1, steps_per_epoch=2, verbose=0)
    rates = {"our pipeline (make_dataset)": [], "in-memory synthetic batch": []}
    ratios = []
    for r in range(rounds):
        a = _fit_rate(tracker, ours, steps, batch)
        b = _fit_rate(tracker, synthetic, steps, batch)
        rates["our pipeline (make_dataset)"].append(a)
        rates["in-memory synthetic batch"].append(b)
        ratios.append(a / b)
        log(f"{backbone} round {r + 1}: pipeline {a:.1f} img/s, in memory {b:.1f} img/s ({a / b:.0%})")
    return {"backbone": backbone, "batch": batch, "steps": steps, "warmup_s": warm,
            "rates": {k: stats(v) for k, v in rates.items()}, "ratio": stats(ratios)}


def w_throughput(root: Path, cfg: dict, backbone: str, batch: int) -> dict:
    """Item 4: training images/s (in-memory input) and peak RSS of one backbone at one batch size."""
    import keras  # noqa: F401
    import tensorflow as tf  # noqa: F401

    import facetracker.train  # noqa: F401

    base = maxrss_mb()
    tick = time.perf_counter()
    tracker = _tracker(backbone, batch)
    params = tracker.detector.count_params()
    synthetic = _synthetic(batch)
    tracker.fit(synthetic, epochs=1, steps_per_epoch=2, verbose=0)
    warm = time.perf_counter() - tick
    steps = cfg["vgg_steps"] + 3 if backbone == "vgg16" else cfg["train_steps"]
    rates = [_fit_rate(tracker, synthetic, steps, batch) for _ in range(2 if backbone == "vgg16" else 3)]
    log(f"{backbone} batch {batch}: {', '.join(f'{r:.1f}' for r in rates)} img/s, peak RSS {maxrss_mb():.0f} MiB")
    return {"backbone": backbone, "batch": batch, "params": params, "rates": stats(rates), "warmup_s": warm,
            "rss_after_import_mb": base, "peak_rss_mb": maxrss_mb()}


def w_bf16(root: Path, cfg: dict, backbone: str) -> dict:
    """Item 6: float32 vs mixed_bfloat16 models of one backbone, side by side: frame latency, outputs, training."""
    import keras
    import numpy as np

    from facetracker.model import build_model
    from facetracker.realtime import Detector, frame_to_input

    keras.mixed_precision.set_global_policy("float32")
    m32 = build_model(backbone, weights="none")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    m16 = build_model(backbone, weights="none")
    keras.mixed_precision.set_global_policy("float32")
    m16.set_weights(m32.get_weights())
    frames = frames_of(root, cfg["frames"] if backbone == "vgg16" else cfg["light_frames"])
    d32, d16 = Detector.from_keras(m32).warm_up(), Detector.from_keras(m16).warm_up()
    x = np.stack([frame_to_input(f)[0] for f in frames])
    (s32, b32), (s16, b16) = d32.predict(x), d16.predict(x)
    out = {"backbone": backbone, "max_score_diff": float(np.max(np.abs(s32 - s16))),
           "max_box_diff": float(np.max(np.abs(b32 - b16)))}
    out["latency"] = interleave({f"{backbone} float32": d32, f"{backbone} mixed_bfloat16": d16}, frames, cfg["rounds"])
    if backbone in cfg["bf16_train"]:
        batch = BATCH if backbone == "small" else 8
        steps = cfg["train_steps"] if backbone == "small" else cfg["vgg_steps"] + 2
        trackers = {}
        for policy in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            trackers[policy] = _tracker(backbone, batch)
        keras.mixed_precision.set_global_policy("float32")
        data = _synthetic(batch)
        for t in trackers.values():
            t.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
        rates = {p: [] for p in trackers}
        for r in range(2):
            for p, t in trackers.items():
                rates[p].append(_fit_rate(t, data, steps, batch))
            log(f"{backbone} training round {r + 1}: " + ", ".join(f"{p} {v[-1]:.1f} img/s" for p, v in rates.items()))
        out["training"] = {"batch": batch, "rates": {p: stats(v) for p, v in rates.items()}}
    return out


def w_accuracy(root: Path, cfg: dict, policy: str) -> dict:
    """Item 5 (and 6): train the quick preset on the sample data's aug_data, evaluate against Haar."""
    import keras

    from facetracker.config import Paths
    from facetracker.dataset import make_dataset
    from facetracker.evaluate import evaluate
    from facetracker.train import resolve_preset, train

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(policy)
    run = root / f"run_{policy}"
    run.mkdir(exist_ok=True)
    for name in ("data", "aug_data"):
        if not (run / name).exists():
            (run / name).symlink_to(root / name)
    paths = Paths(run)
    config = resolve_preset("quick", epochs=cfg["epochs"])
    train_ds = make_dataset(paths.aug_images("train"), paths.aug_labels("train"), config.batch_size, True, seed=0)
    val_ds = make_dataset(paths.aug_images("val"), paths.aug_labels("val"), config.batch_size, False)
    tick = time.perf_counter()
    result = train(paths, train_ds, val_ds, preset="quick", epochs=cfg["epochs"], verbose=0)
    seconds = time.perf_counter() - tick
    log(result.format().replace("\n", " | "))
    keras.mixed_precision.set_global_policy("float32")
    if result.model_path is None:
        return {"policy": policy, "train_seconds": seconds, "error": "no model saved"}
    test = evaluate(paths, result.model_path, "test", output=run / "eval_test.json").to_dict()
    check = evaluate(Paths(root / "check"), result.model_path, "test", output=run / "eval_check.json").to_dict()
    # bf16 inference copy of the same trained weights (package training cannot run under mixed_bfloat16).
    from facetracker.model import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16 = build_model(config.backbone, weights="none", head_units=config.head_units)
    keras.mixed_precision.set_global_policy("float32")
    bf16.set_weights(keras.saving.load_model(result.model_path, compile=False).get_weights())
    bf16_path = run / "facetracker_bf16.keras"
    bf16.save(bf16_path)
    check_bf16 = evaluate(Paths(root / "check"), bf16_path, "test", output=run / "eval_check_bf16.json").to_dict()
    return {"check_bf16": check_bf16, "policy": policy,
            "config": {k: getattr(config, k) for k in ("backbone", "epochs", "batch_size",
                                                                           "learning_rate", "head_units")},
            "train_seconds": seconds, "best_epoch": result.best_epoch, "history": result.history,
            "test": test, "check": check}


WORKERS = {
    "data": w_data, "augment": w_augment, "latency_vgg16": w_latency_vgg16, "latency_light": w_latency_light,
    "pipeline": w_pipeline, "train_pipeline": w_train_pipeline, "throughput": w_throughput, "bf16": w_bf16,
    "accuracy": w_accuracy,
}


# ----------------------------------------------------------------------------- orchestration


def run_worker(name: str, root: Path, quick: bool, results: Path, *args) -> dict | None:
    """Run one worker in a fresh Python; its result, or None (and the error printed) when it failed."""
    out = results / f"{name}_{'_'.join(map(str, args))}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--root", str(root), "--result", str(out)]
    cmd += ["--quick"] if quick else []
    cmd += [a for arg in args for a in ("--arg", str(arg))]
    label = " ".join([name, *map(str, args)])
    print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
    tick = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    worker_log = results / f"{out.stem}.log"
    with worker_log.open("w") as sink:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(WORKER_TIMEOUT, proc.kill)
        watchdog.start()
        for line in proc.stdout:
            sink.write(line)
            if line.startswith(">> "):
                print("   ", line[3:], end="", flush=True)
        proc.wait()
        watchdog.cancel()
    if proc.returncode != 0:
        print("".join(worker_log.read_text().splitlines(keepends=True)[-15:]), flush=True)
    elapsed = time.perf_counter() - tick
    if proc.returncode != 0 or not out.is_file():
        print(f"    FAILED ({label}, exit {proc.returncode}, {elapsed:.0f} s)", flush=True)
        return None
    print(f"    done in {elapsed:.0f} s", flush=True)
    data = json.loads(out.read_text())
    data["_seconds"] = elapsed
    return data


def machine() -> dict:
    """CPU model, cores, relevant CPU flags, library versions, load."""
    info = {"python": platform.python_version(), "cores": os.cpu_count()}
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name") and "cpu" not in info:
            info["cpu"] = line.split(":", 1)[1].strip()
        if line.startswith("flags") and "flags" not in info:
            flags = set(line.split(":", 1)[1].split())
            info["flags"] = {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile",
                                                     "avx_vnni")}
    info["mem_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    code = ("import tensorflow as tf, keras, albumentations, cv2, numpy; "
            "print(tf.__version__, keras.__version__, albumentations.__version__, cv2.__version__, numpy.__version__)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    versions = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split()
    info["versions"] = dict(zip(("tensorflow", "keras", "albumentations", "opencv", "numpy"), versions, strict=False))
    info["onednn"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    return info


def orchestrate(quick: bool, output: Path, keep: bool) -> None:
    cfg = QUICK if quick else FULL
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="facetracker-bench-"))
    results_dir = root / "results"
    results_dir.mkdir()
    print(f"benchmarks ({'quick' if quick else 'full'}), data under {root}", flush=True)
    res: dict = {"mode": "quick" if quick else "full", "machine": machine(), "load_start": os.getloadavg()}
    try:
        res["data"] = run_worker("data", root, quick, results_dir)
        if res["data"] is None:
            raise SystemExit("could not make the sample data")
        res["augment"] = run_worker("augment", root, quick, results_dir)
        res["latency_vgg16"] = run_worker("latency_vgg16", root, quick, results_dir)
        res["latency_light"] = run_worker("latency_light", root, quick, results_dir)
        res["pipeline"] = run_worker("pipeline", root, quick, results_dir)
        res["train_pipeline"] = [run_worker("train_pipeline", root, quick, results_dir, b)
                                 for b in (["small", "vgg16"] if cfg["pipeline_vgg16"] else ["small"])]
        res["throughput"] = [run_worker("throughput", root, quick, results_dir, b, n) for b, n in cfg["throughput"]]
        res["bf16"] = [run_worker("bf16", root, quick, results_dir, b) for b in ("vgg16", "small")]
        res["accuracy"] = [run_worker("accuracy", root, quick, results_dir, "float32")]
    finally:
        res["load_end"] = os.getloadavg()
        res["total_seconds"] = time.perf_counter() - start
        (HERE / "results.json").write_text(json.dumps(res, indent=1, default=str))
        output.write_text(report(res, cfg))
        print(f"wrote {output} and {HERE / 'results.json'} ({res['total_seconds'] / 60:.1f} min)", flush=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- the report


def fmt(s: dict | None, spec: str = ".1f") -> str:
    if not s:
        return "-"
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def verdict_range(s: dict, target: float) -> str:
    """Met / not met by the median; 'within noise' when the rounds fall on both sides of the target."""
    if s["min"] < target <= s["max"]:
        return f"{'**met**' if s['median'] >= target else '**not met**'} by the median, within noise (rounds span it)"
    return verdict(s["median"] >= target)


def latency_rows(block: dict | None, baseline: str | None) -> list[str]:
    if not block:
        return ["| (failed) | | | | |"]
    base = block[baseline]["ms"]["median"] if baseline and baseline in block else None
    rows = []
    for name, v in block.items():
        med = v["ms"]["median"]
        speedup = f"{base / med:.1f}x" if base else "-"
        rows.append(f"| {name} | {med:.1f} | {v['round_ms']['min']:.1f}–{v['round_ms']['max']:.1f} | "
                    f"{1000 / med:.0f} | {speedup} |")
    return rows


def report(res: dict, cfg: dict) -> str:
    m = res["machine"]
    v = m.get("versions", {})
    flags = m.get("flags", {})
    L = ["# FaceTracker benchmarks", "",
         f"Generated by `.venv/bin/python benchmarks/run.py{' --quick' if res['mode'] == 'quick' else ''}` "
         f"(`make bench`) on {time.strftime('%Y-%m-%d %H:%M')}; {res['mode']} run, "
         f"{res['total_seconds'] / 60:.1f} min. Raw numbers: `benchmarks/results.json`.", "",
         "## Machine", "",
         f"- CPU: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('mem_gb')} GB RAM; flags: "
         + ", ".join(f"{k} {'yes' if f else 'no'}" for k, f in flags.items()),
         f"- Python {m.get('python')}, TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, "
         f"albumentations {v.get('albumentations')}, OpenCV {v.get('opencv')}, NumPy {v.get('numpy')}; "
         f"TF_ENABLE_ONEDNN_OPTS {m.get('onednn')}.",
         f"- Load average at start / end: {res['load_start'][0]:.2f} / {res['load_end'][0]:.2f} "
         "(the machine is shared: other jobs ran tests during the run).", "",
         "## How to read this", "",
         "- Every model is built with `weights=\"none\"`: the machine is offline, and speed does not depend on weight "
         "values (same layers, same FLOPs). Accuracy (item 5) uses the \"quick\" preset, which trains from scratch.",
         "- Each item runs in its own subprocess; methods compared with each other run interleaved, round by round, "
         "in one process on the same inputs. Figures are medians with (min–max); for latency, the median over all "
         "frames and the min–max of the per-round medians. Warm-up (tracing, the first fit batches) is not counted.",
         "- The tutorial's code is re-implemented in `benchmarks/tutorial.py` (clearly labelled, "
         "the video's code shape).",
         "- Data: the package's synthetic sample session (90 frames 640x480, `make_sample_data`), split 63/14/13, "
         "in a temporary folder.", ""]
    L += [f"- Note: {note}" for note in res.get("notes", [])] + ([""] if res.get("notes") else [])
    targets = []

    # 1 ---------------------------------------------------------------------------------------------
    L += ["## 1. Real-time frame latency (640x480 frame in, box out; preprocessing included)", ""]
    lv, ll = res.get("latency_vgg16"), res.get("latency_light")
    hdr = ["| method | ms / frame (median) | round medians min–max | frames/s | speed-up vs per-frame predict |",
           "|---|---:|---:|---:|---:|"]
    L += [f"VGG16-120, {cfg['frames']} frames x {cfg['rounds']} rounds:", ""] + hdr
    L += latency_rows({k: x for k, x in (lv or {}).items() if not k.startswith("_")},
                      "vgg16: tutorial per-frame model.predict")
    L += ["", f"Light backbones, {cfg['light_frames']} frames x {cfg['rounds']} rounds:", ""] + hdr[:1]
    L[-1] = hdr[0].replace("per-frame predict", "its per-frame predict")
    L += [hdr[1]]
    if ll:
        for bb in ("small", "mobilenetv2"):
            L += latency_rows({k: x for k, x in ll.items() if k.startswith(bb)},
                              f"{bb}: tutorial per-frame model.predict")
    L += [""]
    if lv:
        base = lv["vgg16: tutorial per-frame model.predict"]["ms"]["median"]
        ours = lv["vgg16: Detector (tf.function)"]["ms"]["median"]
        best_name = min((k for k in lv if k.startswith("vgg16:") and "predict" not in k),
                        key=lambda k: lv[k]["ms"]["median"])
        best = lv[best_name]["ms"]["median"]
        targets.append(("1. VGG16 frame >= 4x faster than per-frame predict",
                        f"Detector {base / ours:.1f}x; best ({best_name.split(': ')[1]}) {base / best:.1f}x",
                        base / ours >= 4))
    if ll:
        light = {k: 1000 / x["ms"]["median"] for k, x in ll.items()
                 if not k.startswith("_") and "predict" not in k}
        bname = max(light, key=light.get)
        small = light.get("small: Detector (tf.function)", 0)
        targets.append(("1. light backbone >= 60 frames/s",
                        f"small Detector {small:.0f}/s; best {bname} {light[bname]:.0f}/s", light[bname] >= 60))

    # 2 ---------------------------------------------------------------------------------------------
    L += ["## 2. Input pipeline", ""]
    p = res.get("pipeline")
    if p:
        L += [f"Over aug_data/train ({p['elements']} samples), elements/s until the last element arrives "
              "(iterator end not waited for, see FACTS: TF 2.21 autotune can stall there), "
              f"{cfg['pipe_rounds']} rounds:",
              "", "| pipeline | elements/s |", "|---|---:|"]
        L += [f"| {k} | {fmt(x, '.0f')} |" for k, x in p["rates"].items()]
        names = list(p["rates"])
        L += ["", f"Labels up front vs `tf.py_function` per element: "
              f"{p['rates'][names[1]]['median'] / p['rates'][names[0]]['median']:.1f}x. Whole pipeline at batch 8: "
              f"{p['rates'][names[3]]['median'] / p['rates'][names[2]]['median']:.2f}x the tutorial's.", ""]
    L += ["Training on our pipeline vs on one in-memory batch (same model, same process, interleaved fits):", "",
          "| backbone, batch | our pipeline img/s | in-memory img/s | pipeline / in-memory |", "|---|---:|---:|---:|"]
    for t in res.get("train_pipeline") or []:
        if t:
            r = t["rates"]
            L.append(f"| {t['backbone']}, {t['batch']} | {fmt(r['our pipeline (make_dataset)'])} | "
                     f"{fmt(r['in-memory synthetic batch'])} | {fmt(t['ratio'], '.2f')} |")
    small_tp = next((t for t in res.get("train_pipeline") or [] if t and t["backbone"] == "small"), None)
    if small_tp:
        targets.append(("2. training on our pipeline >= 95% of in-memory speed (small, batch 16)",
                        f"{small_tp['ratio']['median']:.0%} (rounds {small_tp['ratio']['min']:.0%}–"
                        f"{small_tp['ratio']['max']:.0%})", verdict_range(small_tp["ratio"], 0.95)))
    L += [""]

    # 3 ---------------------------------------------------------------------------------------------
    a = res.get("augment")
    L += ["## 3. Augmentation throughput", ""]
    if a:
        L += [f"{a['sources']} train frames x {a['per_image']} copies, images written (JPEG + JSON) per second, "
              f"{cfg['aug_rounds']} round(s); worker start-up (spawn) counted:", "",
              "| method | images/s |", "|---|---:|"]
        L += [f"| {k} | {fmt(x, '.0f')} |" for k, x in a["rates"].items()]
        L += ["", f"workers=2 vs the tutorial's serial loop: {fmt(a['ratio_w2_vs_serial'], '.2f')}x.", ""]
        targets.append(("3. augmentation >= 1.8x the serial loop", f"{a['ratio_w2_vs_serial']['median']:.2f}x",
                        verdict_range(a["ratio_w2_vs_serial"], 1.8)))

    # 4 ---------------------------------------------------------------------------------------------
    L += ["## 4. Training throughput and peak memory", "",
          "In-memory input (item 2 shows the pipeline costs little), heads Dense(2048) as in the tutorial, "
          "Adam; each row a fresh process. RSS after `import tensorflow, keras, facetracker` is the baseline.", "",
          "| backbone | batch | parameters | images/s | first fit (trace + 2 steps) s | RSS after import MiB | "
          "peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for t in res.get("throughput") or []:
        if t:
            L.append(f"| {t['backbone']} | {t['batch']} | {t['params']:,} | {fmt(t['rates'])} | {t['warmup_s']:.0f} | "
                     f"{t['rss_after_import_mb']:.0f} | {t['peak_rss_mb']:.0f} |")
    L += [""]

    # 5 ---------------------------------------------------------------------------------------------
    L += ["## 5. Accuracy: the quick preset vs OpenCV's Haar cascade", ""]
    acc = [x for x in res.get("accuracy") or [] if x and "test" in x]
    if acc:
        a0 = acc[0]
        c = a0["config"]
        L += [f"Sample data: 90 frames, aug_data with {cfg['data_per_image']} copies per frame "
              f"({res['augment']['aug_data'] if res.get('augment') else '?'}); preset quick: {c['backbone']}, "
              f"{c['epochs']} epochs, batch {c['batch_size']}, lr {c['learning_rate']}, heads {c['head_units']}; "
              f"trained in {a0['train_seconds']:.0f} s (best epoch {a0['best_epoch'] + 1}). "
              f"`evaluate` on the 14 test frames and on a separate check set of {cfg['check_frames']} "
              "frames (sample data, seed 1). Threshold 0.5; Haar: any detection is a positive.", ""]
        L += accuracy_table(acc)
    L += [""]

    # 6 ---------------------------------------------------------------------------------------------
    L += ["## 6. bf16 (mixed_bfloat16)", "",
          f"CPU flags: avx512_bf16 {'yes' if flags.get('avx512_bf16') else 'no'}, "
          f"amx_bf16 {'yes' if flags.get('amx_bf16') else 'no'}, avx512f {'yes' if flags.get('avx512f') else 'no'}. "
          "float32 and mixed_bfloat16 copies of the same model (same weights), side by side in one process:", "",
          "| backbone | float32 ms/frame | bf16 ms/frame | bf16 speed-up | max abs diff score / box | "
          "float32 train img/s | bf16 train img/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for b in res.get("bf16") or []:
        if not b:
            continue
        lat = b["latency"]
        f32, f16 = lat[f"{b['backbone']} float32"]["ms"], lat[f"{b['backbone']} mixed_bfloat16"]["ms"]
        tr = b.get("training", {}).get("rates", {})
        L.append(f"| {b['backbone']} | {fmt(f32)} | {fmt(f16)} | {f32['median'] / f16['median']:.2f}x | "
                 f"{b['max_score_diff']:.3f} / {b['max_box_diff']:.3f} | {fmt(tr.get('float32'))} | "
                 f"{fmt(tr.get('mixed_bfloat16'))} |")
    L += ["", "VGG16 training under mixed_bfloat16 is not in the table: in the first full run its warm-up (3 steps, "
          "about 15 s in float32) had not finished after 9 minutes and was stopped. Without avx512_bf16/AMX, "
          "TensorFlow emulates bf16 matrix products on this CPU."]
    if acc and "check_bf16" in acc[0]:
        f32 = next(r for r in acc[0]["check"]["results"] if r["detector"] == "model" and r["images_from"] == "frames")
        b16 = next(r for r in acc[0]["check_bf16"]["results"] if r["detector"] == "model"
                   and r["images_from"] == "frames")
        L += ["", "The quick model of item 5 (trained in float32) run as a mixed_bfloat16 copy with the same weights, "
              f"on the {cfg['check_frames']}-frame check set:", "",
              "| | float32 | mixed_bfloat16 |", "|---|---:|---:|"]
        for key in ("accuracy", "precision", "recall", "f1", "mean_iou", "ap50", "ap50_95", "ms_per_image"):
            L.append(f"| {key} | {_num(f32[key])} | {_num(b16[key])} |")
        L += ["", "Training under mixed_bfloat16 runs the package's own `FaceTracker` (its losses are computed in "
              "float32 under any policy; tests/test_train.py::test_trains_under_mixed_bfloat16)."]
    L += [""]

    # targets ---------------------------------------------------------------------------------------
    L += ["## Targets", "", "| target | measured (median) | result |", "|---|---|---|"]
    L += [f"| {name} | {value} | {ok if isinstance(ok, str) else verdict(ok)} |" for name, value, ok in targets]
    L += ["", "## Why the targets that are missed are missed", "", *WHY, ""]
    return "\n".join(L) + "\n"


WHY = [
    "- **VGG16 4x over per-frame predict.** The forward pass itself bounds the ratio: `predict` adds a roughly "
    "constant overhead per call (it builds a data adapter and a step function; see the small model: ~100-250 ms "
    "per frame through `predict`, under 10 ms through the Detector), while VGG16-120's 8.7 GFLOPs take 70-250 ms on "
    "these two cores depending on load. (overhead + compute) / compute stays near 2-3x whatever runs the graph: "
    "tf.function, XLA (jit gave nothing for VGG16 here) and TFLite all land in 1.8-2.3x. Reaching 4x needs less "
    "compute per frame (the light backbones: 21-83x and 88-350 frames/s), not a faster caller. bf16 does not help "
    "on this CPU (item 6).",
    "- **Pipeline at 95% of in-memory.** The per-round ratio moves by +-15% on this shared machine, so a 95% "
    "target cannot be resolved with a few rounds; the medians are within a few percent and the pipeline is not the "
    "bottleneck (decode + resize runs at ~1,100 images/s, training at ~45-80). For VGG16 it is irrelevant (4 img/s).",
    "- **Augmentation 1.8x with 2 workers.** Two processes need two idle cores, and the run shares 2 cores with "
    "other jobs (load average 4-6 during this item). `augment_split` also pays fixed costs per call: a spawn pool "
    "(~3.3 s to start two workers that each import albumentations/scipy, measured on this machine) plus shutdown, "
    "and `augment_dataset` starts a fresh pool for each of the three splits. With `workers=None` (one per core) a "
    "small job (e.g. 63 frames x 10 copies: 10.9 s with 2 workers vs 5.7 s with 1, measured standalone) is slower "
    "than serial. On an idle machine the 60-copy job should approach 2x; it could not be shown here.",
]


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def accuracy_table(acc: list[dict], by_policy: bool = False) -> list[str]:
    cols = []
    for a in acc:
        for where in ("test", "check"):
            for r in a[where]["results"]:
                if r["images_from"] != "frames" or (by_policy and r["detector"] == "haar"):
                    continue
                if r["detector"] == "haar" and any(c[0].startswith("Haar") and c[1] == where for c in cols):
                    continue
                name = "Haar cascade" if r["detector"] == "haar" else f"quick ({a['policy']})"
                cols.append((name, where, r))
    keys = [("images", "d"), ("faces", "d"), ("accuracy", ".3f"), ("precision", ".3f"), ("recall", ".3f"),
            ("f1", ".3f"), ("mean_iou", ".3f"), ("ap50", ".3f"), ("ap50_95", ".3f"), ("ms_per_image", ".1f")]
    rows = ["| | " + " | ".join(f"{n}, {w} frames" for n, w, _ in cols) + " |",
            "|---|" + "---:|" * len(cols)]
    for key, spec in keys:
        rows.append(f"| {key} | " + " | ".join("-" if r[key] is None else format(r[key], spec) for _, _, r in cols)
                    + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (about 5 minutes)")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--from-results", type=Path, help="only re-write the report from a results.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--arg", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        cfg = QUICK if args.quick else FULL
        extra = [int(a) if a.isdigit() else a for a in args.arg]
        result = WORKERS[args.worker](args.root, cfg, *extra)
        args.result.write_text(json.dumps(result, default=float))
        return
    if args.from_results:
        res = json.loads(args.from_results.read_text())
        args.output.write_text(report(res, QUICK if res["mode"] == "quick" else FULL))
        return
    orchestrate(args.quick, args.output, args.keep)


if __name__ == "__main__":
    main()
