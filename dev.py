"""Build the environment and run the project's tasks with Python alone (no make): Windows, macOS, Linux.

    python dev.py venv            .venv: requirements.txt, then this package (editable); `pip check`
    python dev.py test [ARGS]     the environment, ruff, then pytest (ARGS go to pytest, e.g. -m "not slow")
    python dev.py test-fast       the same, without the tests marked slow
    python dev.py demo            the demo in demo/ (never mixed with your data/)
    python dev.py mutate [tool|hand] [NAMES]  mutation testing (tests/README.md): mutmut on the modules whose
                                  tests need no trained model, then the hand-written mutations of tests/mutations.toml
    python dev.py lint | style | notebook | bench

The Python that runs this script builds .venv, and must be 3.11, 3.12 or 3.13 (on Windows:
`py -3.13 dev.py test`). A .venv made by another Python version is rebuilt. `make <task>` runs
`python3.x dev.py <task>` with the newest of them it finds.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
WEB = ROOT / "facetracker" / "web"  # the web page; its runtime (LiteRT.js) comes from npm, pinned by package-lock.json
STAMP = VENV / ".installed"
SUPPORTED = ((3, 11), (3, 12), (3, 13))
TASKS = ("venv", "test", "test-fast", "demo", "lint", "style", "notebook", "bench", "mutate")
# What `dev.py mutate tool` mutates (mutmut's names: module.x_function__mutmut_N): every function of the
# modules whose tests need no trained model, evaluate's metrics and capture's source parsing. The parser's
# declarations (cli.build_parser: flag names and help texts) are left to the README flag-table test.
MUTANTS = (
    "facetracker.geometry.*", "facetracker.fileio.*", "facetracker.split.*", "facetracker.annotations.*",
    *(f"facetracker.evaluate.x_{name}__*" for name in ("_ratio", "classification_metrics", "_ground_truth",
                                                         "mean_iou_true_positives", "_interpolated_ap",
                                                         "average_precision", "bootstrap_interval")),
    *(f"facetracker.capture.x_{name}__*" for name in ("parse_source", "is_url", "is_live")),
    *(f"facetracker.cli.x_{name}__*" for name in ("_sample_data", "_collect", "_annotate", "_check", "_split",
                                                    "_augment", "_train", "_evaluate", "_detect", "_export", "_serve",
                                                    "file_size", "_demo", "check_common", "main")),
)


# pytest-xdist: two test processes. Much of a test's time is a fresh Python importing TensorFlow, a browser
# or a window starting, which leaves a core idle; a second process fills it. Whole files go to one process
# (loadfile), so a module's expensive fixture (the notebook's Run All) is built once. `-n 0` after the
# task's name runs everything in one process. Files go out heaviest first (tests/conftest.py), not by
# their number of tests, xdist's default.
PARALLEL = ("-n", "2", "--dist", "loadfile", "--no-loadscope-reorder")


def check_python() -> None:
    """Exit with one clear line when this Python is not a supported version."""
    if sys.version_info[:2] not in SUPPORTED:
        version = ".".join(map(str, sys.version_info[:3]))
        sys.exit(
            f"dev.py: this is Python {version}; FaceTracker needs 3.11, 3.12 or 3.13. Run it with one of "
            "them, e.g. `python3.13 dev.py test` (Windows: `py -3.13 dev.py test`), or `make test PYTHON=python3.12`."
        )


def venv_bin(name: str) -> Path:
    """A program inside .venv (Scripts\\name.exe on Windows, bin/name elsewhere)."""
    if os.name == "nt":
        return VENV / "Scripts" / f"{name}.exe"
    return VENV / "bin" / name


def wanted_stamp() -> str:
    """What .venv must have been built from: this Python's version and the requirement files."""
    digest = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return f"python {sys.version_info.major}.{sys.version_info.minor} {digest.hexdigest()}\n"


def run(*command: str | Path, env: dict[str, str] | None = None) -> int:
    """Run a command in the project folder, echoing it; returns its exit code."""
    print("+", " ".join(str(part) for part in command), flush=True)
    return subprocess.run([str(part) for part in command], cwd=ROOT, env=env, check=False).returncode


def must(*command: str | Path) -> None:
    """Run a command; exit with its code when it fails."""
    code = run(*command)
    if code != 0:
        sys.exit(code)


def build_venv() -> None:
    """Create or update .venv so that it matches this Python and the requirement files."""
    stamp = wanted_stamp()
    if STAMP.is_file() and STAMP.read_text() == stamp:
        return
    print(f"dev.py: building {VENV} with Python {sys.version.split()[0]}", flush=True)
    # A fresh folder: a .venv of another Python version or an older pin set would leave stale packages behind.
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    python = venv_bin("python")
    must(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
    must(python, "-m", "pip", "install", "-q", "-r", "requirements.txt")
    must(python, "-m", "pip", "install", "-q", "--no-deps", "-e", ".")
    must(python, "-m", "pip", "check")
    STAMP.write_text(stamp)


def install_web_runtime() -> None:
    """`npm ci` in the web page's folder when its node_modules is missing or older than package-lock.json.

    The export of the web page, and its tests, copy the runtime from there. Without npm, one line says so.
    """
    installed = WEB / "node_modules" / ".package-lock.json"  # npm writes it last, on every install
    if installed.is_file() and installed.stat().st_mtime >= (WEB / "package-lock.json").stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        print(f"dev.py: npm was not found, so the web page's runtime is not installed in {WEB / 'node_modules'}: "
              "`facetracker export --format web` and its tests will fail. Install Node.js 20 with npm, then run "
              "this again.", flush=True)
        return
    print(f"dev.py: installing the web page's runtime into {WEB / 'node_modules'} (npm ci)", flush=True)
    code = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=WEB, check=False).returncode
    if code != 0:
        sys.exit(code)


def task(name: str, args: list[str]) -> int:
    """Run one task (after building .venv); returns its exit code."""
    build_venv()
    python = venv_bin("python")
    if name == "venv":
        return 0
    if name in ("test", "test-fast", "bench"):
        install_web_runtime()
    if name in ("test", "test-fast"):
        code = run(venv_bin("ruff"), "check", ".")
        fast = ["-m", "not slow"] if name == "test-fast" else []
        # pytest exits 5 when no test ran: that is a failure here too, as every non-zero code.
        return code or run(python, "-m", "pytest", "-q", "--timeout=900", *PARALLEL, *fast, *args)
    if name == "mutate":
        part, names = (args[0], args[1:]) if args[:1] in (["tool"], ["hand"]) else ("all", args)
        if part == "all" and names:
            print("dev.py mutate: name mutants after `tool` or `hand`, e.g. dev.py mutate hand no-display-ignored")
            return 2
        code = mutate_tool(names) if part in ("tool", "all") else 0
        hand = run(python, "tests/mutate_by_hand.py", *names) if part in ("hand", "all") else 0
        return code or hand
    if name == "demo":
        return run(venv_bin("facetracker"), "--root", "demo", "demo", *args)
    if name == "lint":
        return run(venv_bin("ruff"), "check", ".") or run(venv_bin("ruff"), "format", "--check", ".")
    if name == "style":
        return run(venv_bin("ruff"), "check", "--fix", ".") or run(venv_bin("ruff"), "format", ".")
    if name == "notebook":
        return run(venv_bin("jupyter"), "lab", "FaceDetection.ipynb")
    return run(python, "benchmarks/run.py", *args)


def mutate_tool(names: list[str]) -> int:
    """mutmut on MUTANTS (or on the mutant names given), two at a time; then its counts per module."""
    if os.name == "nt":
        print("dev.py mutate tool: mutmut needs fork(); run it on Linux, macOS or WSL (`dev.py mutate hand` runs here)")
        return 2
    code = run(venv_bin("mutmut"), "run", "--max-children", "2", *(names or MUTANTS))
    results = subprocess.run([str(venv_bin("mutmut")), "results", "--all", "true"], cwd=ROOT,
                             capture_output=True, text=True, check=False).stdout
    counts: dict[str, dict[str, int]] = {}
    for line in results.splitlines():
        mutant, _, status = line.strip().partition(": ")
        if "__mutmut_" in mutant and status != "not checked":
            module = mutant.rsplit(".", 1)[0]
            counts.setdefault(module, {})[status] = counts.setdefault(module, {}).get(status, 0) + 1
    for module, by_status in sorted(counts.items()):
        total = sum(by_status.values())
        print(f"{module:26} {total:4} mutants: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
    print("survivors: `.venv/bin/mutmut results`, one with `.venv/bin/mutmut show NAME`")
    return code


def main(argv: list[str]) -> int:
    """Parse `dev.py TASK [ARGS...]` and run it."""
    if not argv or argv[0] not in TASKS:
        print(__doc__)
        return 2
    check_python()
    return task(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
