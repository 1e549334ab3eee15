"""Training time before and after the speed levers: the notebook's training cell and `make demo`, side by side.

"Before" is the same code with the levers switched off: `cache="off"` (every epoch decodes every
JPEG crop, as before the cache), TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's oneDNN kernels off: its own
default on CPUs without AVX-512 VNNI, bf16 or AMX, which the code kept before it turned them on),
the small backbone's earlier stem (a stride-1 first convolution, pooled after it: `model.SMALL_STEM_STRIDE`
1 and `SMALL_POOLED_BLOCKS` (1, 2, 3, 4), set in the process before the model is built; the same
parameters), Keras' own BatchNormalization in the small backbone where it now trains through TensorFlow's
fused kernel (`model.SMALL_BATCH_NORM`), float32 training where "auto" mixed precision now trains in
bfloat16 (`train.BF16_CPU_FLAGS` emptied in the process), and the quick preset's earlier 30 epochs.
"After" is the committed defaults.
Both run in this item, one after the other, on the same data:

- the notebook's training cell with its committed settings: the quick preset on 60
  augmented copies of each frame of the 90-frame sample session, through the calls the notebook makes
  (`dataset.datasets`, then `train.train`), in a fresh Python;
- `make demo`: the real `facetracker demo` command in a fresh folder (sample data, split, 30 copies,
  training, evaluation on the test frames and the 200-frame check session), its stage times as it
  reports them.

A full run takes about as long as both trainings twice. `BENCH_TRAIN_EPOCHS=N` (an environment
variable, e.g. `BENCH_TRAIN_EPOCHS=5 make bench`) trains N epochs on both sides instead; the table then
also gives each side's own epochs (30 before, the preset's now after) projected as the measured time plus
the missing epochs at the median time of the epochs after the first.
"""

import functools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import augmented_session, data_root, log, quick_preset, training_precision

NOTEBOOK_PER_IMAGE = 60  # the notebook's PER_IMAGE
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
BEFORE_ONEDNN = {"off": "0", "auto": None}  # by cache setting: oneDNN off before, the code's own default after
SETTINGS = {True: {"per_image": 3, "epochs": 2, "demo": ["--frames", "40", "--per-image", "3", "--check-frames", "40"]},
            False: {"per_image": NOTEBOOK_PER_IMAGE, "epochs": None, "demo": []}}
CACHES = {"before (cache off)": "off", "after (defaults)": "auto"}
EPOCHS_ENV = "BENCH_TRAIN_EPOCHS"
BEFORE_EPOCHS = 30  # the quick preset's epochs before the speed work


def epoch_timer():
    """A Keras callback keeping each epoch's wall time (its `.seconds` list)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.tick = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.tick)

    return EpochTimer()


# Run first in the "before" processes: the small backbone's layout before the strided stem, with Keras' own
# batch norm, and no CPU counted as having bfloat16 units, so that "auto" mixed precision trains in float32 as before.
BEFORE_STEM = ("import facetracker.model as m; m.SMALL_STEM_STRIDE = 1; m.SMALL_POOLED_BLOCKS = (1, 2, 3, 4); "
               "m.SMALL_BATCH_NORM = m.keras.layers.BatchNormalization; "
               "import facetracker.train as t; t.BF16_CPU_FLAGS = frozenset(); ")


def stem_code(cache: str) -> str:
    """Python run before the step: the earlier stem for "before" (cache off), nothing for "after"."""
    return BEFORE_STEM if cache == "off" else ""


def environment_for(cache: str) -> dict[str, str]:
    """This process's environment with TF_ENABLE_ONEDNN_OPTS as before or after (not the shell's setting)."""
    env = {k: v for k, v in os.environ.items() if k != ONEDNN}
    env.update({ONEDNN: BEFORE_ONEDNN[cache]} if BEFORE_ONEDNN[cache] else {})
    return env


def side_epochs(cache: str) -> int:
    """The epochs a full run trains on this side: 30 before, the quick preset's own after."""
    return BEFORE_EPOCHS if cache == "off" else quick_preset().epochs


def notebook_cell(root: Path, cache: str, epochs: int | None, name: str) -> dict:
    """The notebook's training cell (datasets, then train) on `root`; its wall time and epoch times."""
    from facetracker import dataset, train
    from facetracker.config import Paths

    paths = Paths(root)
    timer = epoch_timer()
    tick = time.perf_counter()
    settings = train.resolve_preset("quick", epochs=epochs)
    data = dataset.datasets(paths, batch_size=settings.batch_size, seed=settings.seed, splits=("train", "val"),
                            make=functools.partial(dataset.make_dataset, cache=cache))
    result = train.train(paths, data["train"], data["val"], preset="quick", epochs=epochs, verbose=0, name=name,
                         callbacks=[timer])
    seconds = time.perf_counter() - tick
    return {"seconds": seconds, "epochs": timer.seconds, "best_epoch": result.best_epoch,
            "best": float(result.history[settings.monitor][result.best_epoch]),
            "policy": training_precision(settings)}


def notebook_process(root: Path, cache: str, epochs: int | None, name: str) -> dict:
    """`notebook_cell` in a fresh Python with the notebook's TensorFlow environment."""
    code = (f"{stem_code(cache)}import sys, json; from pathlib import Path; "
            f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_speedup; print('RESULT', json.dumps(bench_speedup.notebook_cell("
            f"Path({str(root)!r}), {cache!r}, {epochs!r}, {name!r})))")
    env = environment_for(cache)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the notebook cell with cache {cache} failed: {done.stderr[-2000:]}")
    return {**json.loads(line[7:]), "onednn": env.get(ONEDNN, "the code's default")}


def demo(root: Path, cache: str, epochs: int | None, extra: list[str]) -> dict:
    """`facetracker demo` in a fresh Python and folder; its wall time, its stage times and its epoch times."""
    argv = ["--root", str(root), "demo", "--cache", cache, *extra] + (["--epochs", str(epochs)] if epochs else [])
    # The entry point's own code (console_scripts), after the stem's setting.
    command = [sys.executable, "-c", f"{stem_code(cache)}import sys; from facetracker.cli import main; "
               f"sys.exit(main({argv!r}))"]
    env = environment_for(cache)
    tick = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        raise RuntimeError(f"facetracker demo --cache {cache} failed: {done.stderr[-2000:]}")
    report = done.stdout[done.stdout.index("FaceTracker demo: done"):]
    stages = {m[1]: float(m[2]) for m in re.finditer(r"^  (\S[\w -]*?)\s+([\d.]+) s", report, re.MULTILINE)}
    # Keras' verbose=2 line at each epoch's end: "119/119 - 13s - 109ms/step - loss: ...".
    epoch_seconds = [float(s) for s in re.findall(r"^\d+/\d+ - (\d+)s - ", done.stdout, re.MULTILINE)]
    return {"seconds": seconds, "stages": stages, "epochs": epoch_seconds,
            "onednn": env.get(ONEDNN, "the code's default")}


def projected(train_seconds: float, epochs: list[float], target: int) -> float:
    """Training seconds for `target` epochs: measured, plus the missing epochs at the later epochs' median."""
    missing = target - len(epochs)
    if missing <= 0 or len(epochs) < 2:
        return train_seconds
    return train_seconds + missing * statistics.median(epochs[1:])


def run(quick: bool) -> dict:
    """The notebook cell and the demo, before then after."""
    cfg = SETTINGS[quick]
    epochs = cfg["epochs"] if quick else (int(os.environ[EPOCHS_ENV]) if os.environ.get(EPOCHS_ENV) else None)
    notebook_root = augmented_session(cfg["per_image"], data_root() / "notebook")
    before, after = CACHES
    full = {label: side_epochs(cache) for label, cache in CACHES.items()}
    # Unless told otherwise, each side trains its own epochs; after's None is the preset's, as a user runs it.
    trained = {before: epochs or full[before], after: epochs}
    cells, demos = {}, {}
    for label, cache in CACHES.items():
        cells[label] = notebook_process(notebook_root, cache, trained[label], f"speedup-{cache}")
        log(f"notebook training cell, {label}: {cells[label]['seconds']:.0f} s")
    for label, cache in CACHES.items():
        demos[label] = demo(data_root() / f"demo-{cache}", cache, trained[label], cfg["demo"])
        log(f"make demo, {label}: {demos[label]['stages'].get('total', 0):.0f} s")
    short = epochs is not None and epochs < max(full.values())
    rows = []
    for what, runs, train_of in (
        ("notebook training cell", cells, lambda r: r["seconds"]),
        ("make demo: training", demos, lambda r: r["stages"].get("train", 0.0)),
        ("make demo: whole pipeline (its report's total)", demos, lambda r: r["stages"].get("total", 0.0)),
    ):
        b, a = train_of(runs[before]), train_of(runs[after])
        row = [what, f"{b:.0f}", f"{a:.0f}", f"{b / a:.2f}x"]
        if short:
            extra_b = projected(b, runs[before]["epochs"], full[before]) - b
            extra_a = projected(a, runs[after]["epochs"], full[after]) - a
            row += [f"{b + extra_b:.0f}", f"{a + extra_a:.0f}", f"{(b + extra_b) / (a + extra_a):.2f}x"]
        rows.append(row)
    columns = ["run", "before s", "after s", "speed-up"]
    columns += [f"before s, {full[before]} epochs projected", f"after s, {full[after]} epochs projected",
                "speed-up, projected"] if short else []
    source = "--quick" if quick else EPOCHS_ENV
    trained = (f"{epochs} epochs on both sides ({source})" if epochs else
               f"{full[before]} epochs before, the preset's {full[after]} after")
    demo_size = " ".join(cfg["demo"]) or "its defaults"
    cell_after = cells[after]["seconds"]
    demo_after = demos[after]["stages"].get("total", 0.0)
    return {
        "title": "Training time before and after: the notebook's training cell and `make demo`",
        "tables": [{"caption": f"Seconds, {trained}; the notebook cell on {cfg['per_image']} copies per frame, "
                               f"the demo on {demo_size}; TF_ENABLE_ONEDNN_OPTS before: {cells[before]['onednn']}, "
                               f"after: {cells[after]['onednn']}; the small backbone's first convolution before: "
                               "stride 1 then a 2x2 pool, after: stride 2; its batch norm before: Keras' ops, after: "
                               "TensorFlow's fused kernel; training precision before: float32, after: "
                               f"{cells[after]['policy']}:", "columns": columns, "rows": rows}],
        "findings": [f"Best validation box loss of the notebook cell: {cells[before]['best']:.4f} (epoch "
                     f"{cells[before]['best_epoch'] + 1}) before, {cells[after]['best']:.4f} (epoch "
                     f"{cells[after]['best_epoch'] + 1}) after (the preset's seed both times)."],
        "targets": [] if short or quick else [
            {"target": "the notebook's training cell in at most half its time before",
             "measured": f"{cell_after:.0f} s against {cells[before]['seconds']:.0f} s",
             "met": cell_after <= cells[before]["seconds"] / 2,
             "reason": "" if cell_after <= cells[before]["seconds"] / 2 else
             "the forward and backward pass, not the input, takes most of a training step (breakdown item)"},
            {"target": "`make demo` in at most 4 minutes including evaluation",
             "measured": f"{demo_after:.0f} s", "met": demo_after <= 240,
             "reason": "" if demo_after <= 240 else "see the breakdown item for where training's time goes"},
        ],
        "notebook": cells, "demo": demos, "epochs": epochs,
    }
