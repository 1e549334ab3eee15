"""FaceTracker benchmarks: a small harness that runs the items and writes BENCHMARKS.md from their results.

    .venv/bin/python benchmarks/run.py [--quick] [ITEM ...]      (make bench: all items)
    .venv/bin/python benchmarks/run.py quantize                   (one item; the others keep their results)
    .venv/bin/python benchmarks/run.py --report                   (only re-write BENCHMARKS.md)
    BENCH_TRAIN_EPOCHS=5 make bench                               (a shorter run: see bench_speedup.py)

Each item is a file `benchmarks/bench_<name>.py` exposing `run(quick: bool) -> dict`. Its result is
JSON-able and may hold (all optional, rendered by `report.py` in this order):

    {"title": "...",                                           # the section's heading
     "tables": [{"caption": "...", "columns": [...], "rows": [[cell, ...], ...]}],
     "findings": ["a sentence built from measured numbers", ...],
     "targets": [{"target": "...", "measured": "...", "met": True | False | None, "reason": "..."}],
     ...}                                                      # anything else: raw data, kept in results.json

The module docstring of the item (after its first line) is the section's fixed explanation. Each item
runs in a fresh Python (memory, Keras' global policy and TensorFlow's thread pools do not leak between
items); all items of one harness run share one temporary data folder (the sample session and its
augmented copies, made by the first item that needs them). Items run in the report's order. Results
go to benchmarks/results.json, merged with earlier results of items not run this time, each stamped
with the git commit (and whether the work tree had uncommitted changes) and the package version it
ran on; BENCHMARKS.md is rendered from that file and says so when its items come from different commits.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import REPO, ROOT_ENV, machine  # noqa: E402

RESULTS = HERE / "results.json"
ITEM_TIMEOUT = 7200  # seconds; an item running longer is stopped and reported as failed (accuracy: about 50 min)


def items() -> list[str]:
    """The names of all items (benchmarks/bench_<name>.py), in the report's order (others after, by name)."""
    from report import ORDER

    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def code_version() -> dict:
    """The git commit the items run on, whether the work tree differs from it, and the package version."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    from facetracker import __version__

    commit = git("rev-parse", "--short=12", "HEAD")
    # results.json, BENCHMARKS.md and docs/web.png are this harness's own output: they do not make the code dirty.
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not line.endswith(("benchmarks/results.json", "BENCHMARKS.md", "docs/web.png"))]
    return {"commit": commit or "unknown", "dirty": bool(changed), "version": __version__}


def run_item(name: str, quick: bool, root: Path) -> dict:
    """Run one item in a fresh Python; its result, or {"error": ...} when it failed."""
    out = root / f"result_{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--item", name, "--result", str(out)]
    command += ["--quick"] if quick else []
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
    tick = time.perf_counter()
    # PYTHONPATH: the item and the `facetracker` commands it starts run this checkout's code, whatever the venv holds.
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore", PYTHONPATH=path, **{ROOT_ENV: str(root)})
    log_file = root / f"{name}.log"
    with log_file.open("w") as sink:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(ITEM_TIMEOUT, proc.kill)
        watchdog.start()
        for line in proc.stdout:
            sink.write(line)
            if line.startswith(">> "):
                print("   ", line[3:], end="", flush=True)
        proc.wait()
        watchdog.cancel()
    seconds = time.perf_counter() - tick
    if proc.returncode != 0 or not out.is_file():
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-15:])
        print(tail, f"    FAILED ({name}, exit {proc.returncode}, {seconds:.0f} s)", flush=True)
        return {"error": f"exit {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
                "seconds": seconds}
    print(f"    done in {seconds:.0f} s", flush=True)
    return {**json.loads(out.read_text()), "seconds": seconds}


def run_one(name: str, quick: bool, result: Path) -> None:
    """Inside the item's own Python: import bench_<name> and save what `run(quick)` returns."""
    module = __import__(f"bench_{name}")
    result.write_text(json.dumps(module.run(quick), default=float, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="ITEM", help=f"items to run (default: all of {items()})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, frames and steps")
    parser.add_argument("--report", action="store_true", help="only re-write BENCHMARKS.md from results.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--item", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.item:
        run_one(args.item, args.quick, args.result)
        return
    import report

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results = results if "items" in results else {}  # a results file of the old single-script format
    if not args.report:
        unknown = sorted(set(args.names) - set(items()))
        if unknown:
            parser.error(f"unknown item(s) {unknown}; known: {items()}")
        root = Path(tempfile.mkdtemp(prefix="facetracker-bench-"))
        print(f"benchmarks ({'quick' if args.quick else 'full'}), data under {root}", flush=True)
        results.setdefault("items", {})
        for earlier in results["items"].values():  # items from before machines were recorded per item
            earlier.setdefault("machine", results.get("machine", {}))
        results["machine"] = machine()
        try:
            for name in args.names or items():
                load, code = os.getloadavg()[0], code_version()
                result = run_item(name, args.quick, root)
                result.update(mode="quick" if args.quick else "full", date=time.strftime("%Y-%m-%d %H:%M"),
                              load_start=load, load_end=os.getloadavg()[0], machine=results["machine"], **code)
                results["items"][name] = result
                RESULTS.write_text(json.dumps(results, indent=1, default=str))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    args.output.write_text(report.render(results))
    print(f"wrote {args.output} from {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
