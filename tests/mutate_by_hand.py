"""Hand-written mutations for the modules whose tests need a model (tests/mutations.toml), one at a time.

Each mutation replaces one exact snippet of one file in a temporary copy of the project, never in this
folder, then runs the tests it names there (PYTHONPATH points at the copy, so a `facetracker` subprocess
runs the mutated code too). A mutation is caught when those tests fail, and survives when they pass.
A snippet that is missing, or found more than once, is reported as stale: the code moved, retarget it.

    python tests/mutate_by_hand.py            every mutation in tests/mutations.toml
    python tests/mutate_by_hand.py NAME...    only these
    python tests/mutate_by_hand.py --list     names, files and tests

Exit code 0 only when every mutation run was caught.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "tests" / "mutations.toml"
# What the copy leaves out: the environment, caches, the user's data and run outputs.
SKIP = shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", ".pytest_cache", ".ruff_cache", "data",
                              "aug_data", "logs", "runs", "export", "demo", "*.keras")
TIMEOUT_S = 1800


def load(names: list[str]) -> list[dict]:
    """The mutations of tests/mutations.toml, or only those named."""
    mutations = tomllib.loads(LIST.read_text())["mutation"]
    unknown = sorted(set(names) - {m["name"] for m in mutations})
    if unknown:
        sys.exit(f"mutate_by_hand: no mutation named {', '.join(unknown)} in {LIST}")
    return [m for m in mutations if not names or m["name"] in names]


def apply(copy: Path, mutation: dict) -> str | None:
    """Apply `mutation` inside `copy`; None, or why it cannot be applied (a stale snippet)."""
    path = copy / mutation["file"]
    if not path.is_file():
        return f"{mutation['file']} does not exist"
    text = path.read_text()
    found = text.count(mutation["original"])
    if found != 1:
        return f"the original snippet is found {found} times in {mutation['file']} (expected once)"
    path.write_text(text.replace(mutation["original"], mutation["replacement"]))
    return None


def run_one(mutation: dict) -> tuple[str, float, str]:
    """(caught | survived | stale | error, seconds, detail) for one mutation, run in a fresh copy."""
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facetracker-mutant-") as folder:
        copy = Path(folder) / "project"
        shutil.copytree(ROOT, copy, ignore=SKIP)
        problem = apply(copy, mutation)
        if problem:
            return "stale", 0.0, problem
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutation["tests"]]
        try:
            done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "caught", time.perf_counter() - tick, f"timed out after {TIMEOUT_S} s"
    seconds = time.perf_counter() - tick
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode == 0:
        return "survived", seconds, last
    if done.returncode == 1:  # tests ran and failed
        return "caught", seconds, last
    return "error", seconds, f"pytest exit {done.returncode}: {(done.stdout + done.stderr)[-800:]}"


def main(argv: list[str]) -> int:
    """Run the mutations named in argv (all when none) and print one line each, then a summary."""
    if argv[:1] == ["--list"]:
        for m in load([]):
            print(f"{m['name']:34} {m['file']:28} {' '.join(m['tests'])}")
        return 0
    mutations = load(argv)
    results = {}
    for mutation in mutations:
        outcome, seconds, detail = run_one(mutation)
        results[mutation["name"]] = outcome
        print(f"{outcome.upper():8} {mutation['name']:34} {seconds:6.0f} s  {detail}", flush=True)
    counts = {outcome: list(results.values()).count(outcome) for outcome in ("caught", "survived", "stale", "error")}
    print("hand-written mutations: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    return 0 if counts["caught"] == len(mutations) else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # the temporary copy is already gone; this folder was never changed
        sys.exit(130)
