"""Helpers shared by the benchmark items: timing statistics, interleaved timing, the sample data, training models.

Nothing here runs at import time; TensorFlow is imported inside the functions that need it.
"""

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

SAMPLE_FRAMES = 90  # the tutorial's session size: three runs of 30
BATCH = 16  # the quick preset's batch
ROOT_ENV = "FACETRACKER_BENCH_ROOT"  # the harness shares one data folder with all items of a run


def stats(values: list[float]) -> dict:
    """median, min, max and count of a list of numbers."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s: dict | None, spec: str = ".1f") -> str:
    """'median (min-max)' of a `stats` dict, '-' for none."""
    if not s:
        return "-"
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def maxrss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(message: str) -> None:
    """A progress line (the harness echoes lines starting with '>> ')."""
    print(f">> {message}", flush=True)


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


def data_root() -> Path:
    """The run's data folder: the harness's (environment variable), else a fresh temporary one."""
    root = os.environ.get(ROOT_ENV)
    if root:
        return Path(root)
    root = Path(tempfile.mkdtemp(prefix="facetracker-bench-"))
    os.environ[ROOT_ENV] = str(root)
    return root


def sample_session(root: Path | None = None) -> Path:
    """A 90-frame synthetic sample session, split 70/15/15, made once per run; returns its root."""
    from facetracker.config import Paths
    from facetracker.sample_data import make_sample_data
    from facetracker.split import split_dataset

    root = root or data_root()
    paths = Paths(root)
    if not (paths.split_images("test")).is_dir():
        make_sample_data(paths, count=SAMPLE_FRAMES, seed=0)
        split_dataset(paths)
    return root


def augmented_session(per_image: int, root: Path | None = None) -> Path:
    """The sample session with aug_data (`per_image` copies of each frame), made once per run."""
    from facetracker.augment import augment_dataset
    from facetracker.config import Paths

    root = sample_session(root)
    paths = Paths(root)
    if not paths.aug_images("train").is_dir():
        augment_dataset(paths, per_image=per_image, seed=0, progress=False)
    return root


def frames_of(root: Path, count: int) -> list:
    """The first `count` 640x480 BGR frames of the sample session."""
    import cv2

    files = sorted((root / "data" / "images").glob("*.jpg"))[:count]
    return [cv2.imread(str(f)) for f in files]


def machine() -> dict:
    """CPU model, cores, relevant CPU flags, library versions, load."""
    import platform
    import subprocess

    info = {"python": platform.python_version(), "cores": os.cpu_count()}
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name") and "cpu" not in info:
            info["cpu"] = line.split(":", 1)[1].strip()
        if line.startswith("flags") and "flags" not in info:
            flags = set(line.split(":", 1)[1].split())
            names = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")
            info["flags"] = {f: f in flags for f in names}
    info["mem_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    code = (
        "import tensorflow as tf, keras, albumentations, cv2, numpy; "
        "print(tf.__version__, keras.__version__, albumentations.__version__, cv2.__version__, numpy.__version__)"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    versions = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split()
    info["versions"] = dict(zip(("tensorflow", "keras", "albumentations", "opencv", "numpy"), versions, strict=False))
    try:
        import ai_edge_litert  # noqa: F401

        info["tflite_runtime"] = "LiteRT (ai_edge_litert)"
    except ImportError:
        info["tflite_runtime"] = "tf.lite (TensorFlow)"
    info["onednn"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1 (facetracker's default)")
    return info


def batch_times_callback():
    """A Keras callback recording when each training batch ends (its `.t` list)."""
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.t = []

        def on_train_batch_end(self, batch, logs=None):
            self.t.append(time.perf_counter())

    return Timer()


def fit_rate(tracker, dataset, steps: int, batch: int, skip: int = 2) -> float:
    """Training images/s over `steps` batches of one fit() call, not counting the first `skip` batches."""
    timer = batch_times_callback()
    tracker.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    t = timer.t
    return batch * (len(t) - 1 - skip) / (t[-1] - t[skip])


def synthetic(batch: int, size: int = 120):
    """An in-memory dataset repeating one random batch (no decoding)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    cls = (rng.random((batch, 1)) > 0.3).astype(np.float32)
    box = np.sort(rng.random((batch, 2, 2)), axis=1).reshape(batch, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    return tf.data.Dataset.from_tensors((x, (cls, box))).repeat()


def quick_preset():
    """The quick preset's TrainConfig, as `facetracker train --preset quick` resolves it."""
    from facetracker.train import resolve_preset

    return resolve_preset("quick")


def training_precision(config) -> str:
    """The dtype policy a TrainConfig trains under on this machine ("float32" without mixed precision)."""
    from facetracker.train import training_policy

    return training_policy(config.mixed_precision) or "float32"


def tracker(backbone: str, batch: int, batches_per_epoch: int = 100, head_units: int | None = None):
    """The package's training wrapper around an untrained (weights="none") model of `backbone`."""
    import tensorflow as tf

    from facetracker.model import HEAD_UNITS
    from facetracker.train import TrainConfig, build_tracker

    # mixed_precision "off": the caller's global dtype policy decides (the bf16 item sets it), not the CPU's units.
    config = TrainConfig(
        backbone=backbone, weights="none", batch_size=batch, learning_rate=1e-4, head_units=head_units or HEAD_UNITS,
        mixed_precision="off",
    )
    return build_tracker(config, 120, batches_per_epoch, tf.distribute.get_strategy())


def train_quick(root: Path, epochs: int, policy: str = "float32") -> dict:
    """Train the quick preset on the session's aug_data into root/run_<policy>; returns the train summary."""
    import keras

    from facetracker.config import Paths
    from facetracker.dataset import make_dataset
    from facetracker.train import resolve_preset, train

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(policy)
    run = root / f"run_{policy}"
    run.mkdir(exist_ok=True)
    for name in ("data", "aug_data"):
        if not (run / name).exists():
            (run / name).symlink_to(root / name)
    paths = Paths(run)
    if paths.model.is_file() and (run / "train.json").is_file():
        import json

        return json.loads((run / "train.json").read_text())
    config = resolve_preset("quick", epochs=epochs)
    train_ds = make_dataset(paths.aug_images("train"), paths.aug_labels("train"), config.batch_size, True, seed=0)
    val_ds = make_dataset(paths.aug_images("val"), paths.aug_labels("val"), config.batch_size, False)
    tick = time.perf_counter()
    result = train(paths, train_ds, val_ds, preset="quick", epochs=epochs, verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    summary = {
        "model": str(result.model_path) if result.model_path else None,
        "config": {k: getattr(config, k) for k in ("backbone", "epochs", "batch_size", "learning_rate", "head_units")},
        "train_seconds": time.perf_counter() - tick,
        "best_epoch": result.best_epoch,
        "history": result.history,
    }
    import json

    (run / "train.json").write_text(json.dumps(summary, default=float))
    return summary
