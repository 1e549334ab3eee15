"""The `facetracker` command line: one subcommand per step of the tutorial.

Parsing and printing only; each step's logic lives in its module, which the notebook calls too.
Modules are imported inside the handlers, so the data steps start without loading TensorFlow.
"""

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

# TensorFlow's C++ start-up lines would bury our one-line messages; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from facetracker import config  # noqa: E402
from facetracker.cluster import JOIN_TIMEOUT  # noqa: E402
from facetracker.config import Paths  # noqa: E402
from facetracker.demo import CHECK_FRAMES, DEMO_FRAMES, DEMO_PER_IMAGE  # noqa: E402
from facetracker.errors import FaceTrackerError  # noqa: E402
from facetracker.quiet import tensorflow_imported_quietly  # noqa: E402

GRID_FRAMES = 12  # evaluate's default --grid
# Flags that only act together with another: (step, option, its flag, the test that it is in effect, what to add).
DEPENDENT_FLAGS = (
    ("train", "worker_index", "--worker-index", lambda a: a.workers is not None, "it needs --workers"),
    ("train", "join_timeout", "--join-timeout", lambda a: a.workers is not None, "it needs --workers"),
    ("train", "strategy", "--strategy", lambda a: a.workers is None, "--workers always trains multiworker"),
    ("evaluate", "grid", "--grid", lambda a: a.frames is None, "--frames draws no grid"),
    ("annotate", "model", "--model", lambda a: a.prelabel == "model", "it needs --prelabel model"),
    ("annotate", "threshold", "--threshold", lambda a: a.prelabel == "model", "it needs --prelabel model"),
)


def _sample_data(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.sample_data import make_sample_data

    print(make_sample_data(paths, count=args.count, negatives=args.negatives, seed=args.seed, class_name=args.cls))


def _collect(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.capture import collect

    saved = collect(paths.images, source=args.source, count=args.count, interval=args.interval, preview=args.preview)
    print(f"saved {len(saved)} frames to {paths.images}")


def _annotate(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker import annotations

    if args.prelabel == "haar":
        from facetracker.prelabel import prelabel_haar

        written = prelabel_haar(paths, class_name=args.cls)
        print(f"wrote {len(written)} Haar proposals to {paths.labels}")
    elif args.prelabel == "model":
        from facetracker.prelabel import prelabel_with_model

        model = args.model or paths.model
        threshold = config.SCORE_THRESHOLD if args.threshold is None else args.threshold
        written = prelabel_with_model(paths, model, threshold=threshold, class_name=args.cls)
        print(f"wrote {len(written)} model proposals to {paths.labels}")
    if not args.no_gui:
        annotations.launch_labelme(paths, class_name=args.cls)


def _check(args: argparse.Namespace, paths: Paths) -> int:
    from facetracker.annotations import check

    report = check(paths, class_name=args.cls)
    print(report.format())
    return 1 if report.errors else 0


def _split(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.split import orphan_warning, orphaned_copies, split_dataset

    parts = split_dataset(paths, ratios=tuple(args.ratios), seed=args.seed)
    print("  ".join(f"{name}: {len(images)}" for name, images in parts.items()))
    orphans = orphaned_copies(paths)
    if orphans:
        print(f"warning: {orphan_warning(orphans, paths)}")


def _augment(args: argparse.Namespace, paths: Paths) -> int:
    from facetracker.augment import augment_dataset

    summaries = augment_dataset(paths, splits=args.splits, per_image=args.per_image, crop=args.crop,
                                workers=args.workers, seed=args.seed, class_name=args.cls, fresh=args.fresh,
                                prune=args.prune)
    for split, summary in summaries.items():
        print(f"{split}: {summary.format()}")
    first = next(iter(summaries.values()))
    writers = set().union(*(summary.writers for summary in summaries.values()))
    how = "--workers" if args.workers else "automatic"
    print(f"processes: {first.processes} ({how}), {len(writers)} of them wrote samples")
    return 1 if any(summary.failed for summary in summaries.values()) else 0


def _train(args: argparse.Namespace, paths: Paths) -> None:
    names = ("epochs", "batch_size", "backbone", "weights", "learning_rate", "head_units", "masked", "ema_momentum",
             "monitor", "seed", "jit_compile", "mixed_precision", "cache", "patience", "lr_rule")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.workers is None:
        from facetracker.train import train_from_paths

        print(train_from_paths(paths, preset=args.preset, strategy=args.strategy, name=args.name, **overrides).format())
        return
    from facetracker.cluster import train_on_workers

    print(train_on_workers(paths, args.workers, args.worker_index, args.join_timeout, preset=args.preset,
                           name=args.name, **overrides).format())


def _evaluate(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.evaluate import GRID_FILE, evaluate, prediction_grid, report_path

    grid = GRID_FRAMES if args.grid is None else args.grid
    if grid < 0:
        raise FaceTrackerError(f"--grid {grid}: give the number of frames to draw, or 0 for no grid.")
    if args.frames is not None and not (args.frames / "images").is_dir():
        raise FaceTrackerError(f"--frames {args.frames}: expected a folder holding images/ and labels/ "
                               "(as data/ does), e.g. another session's data/")
    from facetracker.inference import Detector

    model = args.model or paths.model
    detector = Detector.load(model)
    report = evaluate(paths, model, split=args.split, threshold=args.threshold, class_name=args.cls,
                      detector=detector, frames=args.frames, output=args.output)
    print(report.format())
    if grid and args.frames is None:
        prediction_grid(paths, model, split=args.split, n=grid, threshold=args.threshold, class_name=args.cls,
                        detector=detector)
        print(f"prediction grid saved to {report_path(paths, model, GRID_FILE, args.split)}")


def _detect(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.realtime import detect

    summary = detect(source=args.source, model=args.model or paths.model, threshold=args.threshold,
                     output=args.output, display=False if args.no_display else None, class_name=args.cls,
                     max_frames=args.max_frames, root=paths.root)
    print(summary.format())


def _export(args: argparse.Namespace, paths: Paths) -> int:
    from facetracker.export import export_project

    result, check = export_project(paths, args.model, fmt=args.format, out_dir=args.out, quantize=args.quantize,
                                   calibration=args.calibration, class_name=args.cls)
    if args.format == "web":
        print(result.format())
    else:
        print(f"exported {args.format} model ({args.quantize}) to {result} ({file_size(result) / 1e6:.2f} MB)")
    print(check.format())
    return 0 if check.ok else 1


def _serve(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.serve import serve

    serve(args.folder or paths.web, host=args.host, port=args.port)


def file_size(path: Path) -> int:
    """Bytes of a file, or of every file below a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _demo(args: argparse.Namespace, paths: Paths) -> None:
    from facetracker.demo import run_demo

    print(run_demo(paths, preset=args.preset, frames=args.frames, per_image=args.per_image,
                   epochs=args.epochs, seed=args.seed, check_frames=args.check_frames, cache=args.cache).format())


def _add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", choices=config.CACHES, default="auto",
                        help="keep the decoded training crops between epochs: auto (memory if they fit in a "
                             "quarter of RAM, else a temporary file), memory, file, or off (decode every epoch)")


def _add_class(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--class", dest="cls", default=config.CLASS_NAME,
                        help="the one kind of object to detect (labelme label), default: %(default)s")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line, like every other error of the command (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: global --root, then one subcommand per step."""
    parser = OneLineParser(prog="facetracker", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="folder holding data/, aug_data/, logs/")
    steps = parser.add_subparsers(dest="step", required=True, metavar="<step>")

    def step(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = steps.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    sub = step("sample-data", _sample_data, "write a synthetic labelled webcam session into data/")
    sub.add_argument("--count", type=int, default=90)
    sub.add_argument("--negatives", type=float, default=0.15, help="share of frames without the object")
    sub.add_argument("--seed", type=int, default=0)
    _add_class(sub)

    sub = step("collect", _collect, "capture frames from a camera, video file or URL into data/images")
    sub.add_argument("--source", default="0", help="camera index, video file or URL (default: 0)")
    sub.add_argument("--count", type=int, default=30)
    sub.add_argument("--interval", type=float, default=0.5, help="seconds between frames")
    sub.add_argument("--preview", action=argparse.BooleanOptionalAction, default=None,
                     help="show the frames (default: when a display exists)")

    sub = step("annotate", _annotate, "draw boxes in labelme (data/images -> data/labels)")
    sub.add_argument("--prelabel", choices=["haar", "model"], help="first propose boxes for unlabelled images")
    sub.add_argument("--model", type=Path, help="model for --prelabel model (default: facetracker.keras)")
    sub.add_argument("--threshold", type=float,
                     help=f"with --prelabel model: smallest score proposed (default: {config.SCORE_THRESHOLD})")
    sub.add_argument("--no-gui", action="store_true", help="write proposals only, do not open labelme")
    _add_class(sub)

    sub = step("check", _check, "report on every image/label pair; changes nothing")
    _add_class(sub)

    sub = step("split", _split, "copy images and labels into data/{train,test,val}")
    sub.add_argument("--ratios", type=float, nargs=3, default=list(config.SPLIT_RATIOS),
                     metavar=("TRAIN", "TEST", "VAL"))
    sub.add_argument("--seed", type=int, default=0)

    sub = step("augment", _augment, "grow each split with Albumentations into aug_data/")
    sub.add_argument("--per-image", type=int, default=config.AUG_PER_IMAGE)
    sub.add_argument("--crop", type=int, default=config.CROP_SIZE)
    sub.add_argument("--workers", type=int, default=None,
                     help="processes (default: one per core from 1000 samples to write, else 1)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--splits", nargs="+", default=list(config.SPLITS), choices=list(config.SPLITS))
    sub.add_argument("--fresh", action="store_true", help="delete earlier augmented files of these splits first")
    sub.add_argument("--prune", action="store_true",
                     help="delete augmented files of images no longer in the split (otherwise only reported)")
    _add_class(sub)

    sub = step("train", _train, "train the two-head detector on aug_data/")
    sub.add_argument("--preset", default="tutorial", choices=config.PRESET_NAMES,
                     help="tutorial (the video's settings) or quick (CPU); default: %(default)s")
    sub.add_argument("--epochs", type=int)
    sub.add_argument("--batch-size", type=int)
    sub.add_argument("--backbone", choices=["vgg16", "mobilenetv2", "small"])
    sub.add_argument("--weights", help="imagenet, none, or the path of a weights file")
    sub.add_argument("--learning-rate", type=float)
    sub.add_argument("--head-units", type=int, help="width of each head's dense layer (tutorial: 2048)")
    sub.add_argument("--masked", action=argparse.BooleanOptionalAction, default=None,
                     help="box loss on images with a face only (default: the preset's; quick: on)")
    sub.add_argument("--ema-momentum", type=float,
                     help="validate and save a moving average of the weights (quick: 0.99; 0: off)")
    sub.add_argument("--monitor", choices=config.MONITORS,
                     help="the validation loss whose best epoch is kept (tutorial: val_loss)")
    sub.add_argument("--patience", type=int,
                     help="stop after this many epochs without a better --monitor loss (default 0: never); "
                          "the saved model is the best epoch's")
    sub.add_argument("--lr-rule", choices=["none", "linear", "sqrt"],
                     help="scale the learning rate with --batch-size against the preset's batch (default none)")
    sub.add_argument("--strategy", choices=["mirrored", "multiworker"], help="train under tf.distribute")
    sub.add_argument("--workers", metavar="HOST:PORT,...",
                     help="train on several machines: every worker's address, the same list on each")
    sub.add_argument("--worker-index", type=int, help="with --workers: this machine's place in the list (0: chief)")
    sub.add_argument("--join-timeout", type=float,
                     help=f"with --workers: seconds to wait for the other workers (default: {JOIN_TIMEOUT:.0f})")
    sub.add_argument("--seed", type=int, help="seeds the weights and the shuffle (default 0)")
    sub.add_argument("--name", help="run folder below logs/train (default: a new exp<N>, or resume the latest)")
    sub.add_argument("--jit-compile", choices=config.SWITCHES, help="XLA; auto: on where a GPU is visible")
    sub.add_argument("--mixed-precision", choices=config.SWITCHES,
                     help="float16 (GPU) or bfloat16 (CPU) compute, float32 weights; auto: on where a GPU is "
                          "visible or the CPU has bfloat16 units (AMX, AVX-512 BF16)")
    _add_cache(sub)

    sub = step("evaluate", _evaluate, "measure the model (and OpenCV's Haar cascade) on the test frames")
    sub.add_argument("--model", type=Path)
    sub.add_argument("--split", default="test", choices=list(config.SPLITS))
    sub.add_argument("--threshold", type=float, default=config.SCORE_THRESHOLD)
    sub.add_argument("--grid", type=int, metavar="N",
                     help=f"draw N predictions (0: none; default: {GRID_FRAMES}); not with --frames")
    sub.add_argument("--frames", type=Path, metavar="DIR",
                     help="score the labelled frames in DIR/images and DIR/labels instead of data/<split>")
    sub.add_argument("--output", type=Path, metavar="FILE",
                     help="the JSON report (default: evaluation.json in the model's training run folder)")
    _add_class(sub)

    sub = step("detect", _detect, "run the detector on a camera, video file, URL, or a folder of images")
    sub.add_argument("--source", default="0", help="camera index, video file, URL, image folder or glob ('a/*.jpg')")
    sub.add_argument("--model", type=Path, help=".keras or .tflite (default: facetracker.keras)")
    sub.add_argument("--threshold", type=float, default=config.SCORE_THRESHOLD)
    sub.add_argument("--output", type=Path,
                     help="annotated video (.mp4/.avi); for images, a folder (default: runs/detect/predictN)")
    sub.add_argument("--no-display", action="store_true")
    sub.add_argument("--max-frames", type=int)
    _add_class(sub)

    sub = step("export", _export, "export the model: SavedModel, TFLite (optionally quantized) or a web page")
    sub.add_argument("--format", choices=["savedmodel", "tflite", "web"], default="tflite",
                     help="web: a static page running the model on the webcam (export/web/; see facetracker serve)")
    sub.add_argument("--quantize", choices=["none", "float16", "dynamic", "int8"], default="none",
                     help="TFLite and web only: float16 or int8 weights (dynamic), or full int8 (default: none)")
    sub.add_argument("--calibration", type=Path,
                     help="int8: folder of training images to calibrate on (default: aug_data/train/images)")
    sub.add_argument("--model", type=Path)
    sub.add_argument("--out", type=Path, help="output folder (default: export/, for --format web export/web/)")
    _add_class(sub)

    sub = step("serve", _serve, "serve the exported web page on this machine (http://127.0.0.1:8000/)")
    sub.add_argument("folder", nargs="?", type=Path, metavar="DIR", help="the page's folder (default: export/web)")
    sub.add_argument("--port", type=int, default=8000, help="default: %(default)s (0: any free port)")
    sub.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: %(default)s; browsers open the camera only on localhost)")

    sub = step("demo", _demo, "sample-data, check, split, augment, train, evaluate in one go")
    sub.add_argument("--preset", default="quick", choices=config.PRESET_NAMES, help="default: %(default)s")
    sub.add_argument("--frames", type=int, default=DEMO_FRAMES, help="frames in the sample session")
    sub.add_argument("--per-image", type=int, default=DEMO_PER_IMAGE, help="augmented copies per frame")
    sub.add_argument("--check-frames", type=int, default=CHECK_FRAMES,
                     help="frames in the second session the model and Haar are also scored on")
    sub.add_argument("--seed", type=int, default=0, help="seeds the sample session, split, crops and training")
    sub.add_argument("--epochs", type=int, help="default: the preset's")
    _add_cache(sub)
    return parser


def check_common(args: argparse.Namespace) -> None:
    """Refuse a --root that is not a folder, an empty --class and a flag that would have no effect, before any
    step runs (and before TensorFlow loads)."""
    for step, option, flag, in_effect, reason in DEPENDENT_FLAGS:
        if args.step == step and getattr(args, option) is not None and not in_effect(args):
            raise FaceTrackerError(f"{flag} has no effect here: {reason}; leave it out.")
    if args.root.exists() and not args.root.is_dir():
        raise FaceTrackerError(f"--root {args.root} is a file; give the project folder (it holds data/).")
    if getattr(args, "cls", None) is not None and not args.cls.strip():
        raise FaceTrackerError("--class is empty; give the labelme label of the object, e.g. --class face.")


def main(argv: list[str] | None = None) -> int:
    """Run one step; a user's mistake prints one line and exits non-zero, with no traceback."""
    args = build_parser().parse_args(argv)
    paths = Paths(args.root)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Inherited from a parent that ignores SIGINT (a Jupyter kernel, nohup): Python then never raises
        # KeyboardInterrupt, and Ctrl+C could not stop a step such as `serve` or `detect`.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    tensorflow_imported_quietly()
    try:
        check_common(args)
        status = args.handler(args, paths)
    except FaceTrackerError as error:
        print(f"facetracker {args.step}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facetracker {args.step}: interrupted; run it again to finish", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
