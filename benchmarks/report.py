"""Render BENCHMARKS.md from benchmarks/results.json: generated numbers and fixed explanations only.

The explanation of each item is its module docstring (bench_<name>.py, after the first line); every
figure comes from results.json, so a rerun can never leave a stale number behind.
"""

import ast
from collections.abc import Callable, Hashable
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The order items run and appear in; others follow, by name.
ORDER = ("latency", "quantize", "pipeline", "augment", "train", "speedup", "notebook", "accuracy", "bf16")

INTRO = """\
- Every item runs in its own Python process; methods compared with each other run interleaved, round
  by round, in one process on the same inputs. The machine may be shared and noisy: ratios measured
  side by side are what counts. Figures are medians with (min–max) over rounds.
- Models without a trained version here are built with `weights="none"`: speed does not depend on
  weight values (same layers, same FLOPs), but accuracy does, so accuracy figures come from models
  trained in the run itself (the quick preset, from scratch, on the synthetic sample session).
- The tutorial's way is re-implemented in `benchmarks/tutorial.py` (the video's code shape), so each
  comparison runs both ways on the same machine in the same run.
- Data: the package's synthetic sample session (90 frames 640x480, `make_sample_data`), split 70/15/15,
  in a temporary folder."""

GPU = """\
## On a GPU

Nothing above ran on a GPU. On a machine with one (Linux, `pip install "tensorflow[and-cuda]"` in
place of `tensorflow-cpu`), run the same harness:

    .venv/bin/python -c "import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))"
    .venv/bin/python benchmarks/run.py latency train accuracy

Items `latency` (Keras paths), `train` and `accuracy` then use the GPU, with XLA and mixed precision on
(`--jit-compile` and `--mixed-precision` default to on where a GPU is visible); TFLite files
(`quantize`) still run on the CPU (the LiteRT GPU delegate is for mobile GPUs). Nothing has been
measured on a GPU yet: the table below fills in when these items run on one.

| item | device | figure | value |
|---|---|---|---|
| (not run yet) | | | |
"""


def explanation(name: str) -> str:
    """The fixed explanation of item `name`: its module docstring without the first line."""
    path = HERE / f"bench_{name}.py"
    if not path.is_file():
        return ""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.split("\n", 1)[1].strip() if "\n" in doc else ""


def table(spec: dict) -> list[str]:
    """A markdown table from {"caption", "columns", "rows"}."""
    lines = [spec["caption"], ""] if spec.get("caption") else []
    columns = spec["columns"]
    lines += ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in spec["rows"]]
    return lines + [""]


def verdict(met: bool | str | None) -> str:
    """**met**, **not met**, n/a, or a verdict in words (e.g. one part met, the other not measurable)."""
    if isinstance(met, str):
        return met
    return "n/a" if met is None else ("**met**" if met else "**not met**")


def section(name: str, result: dict) -> list[str]:
    """One item's section."""
    lines = [f"## {result.get('title', name)}", ""]
    about = explanation(name)
    if about:
        lines += [about, ""]
    lines += [
        f"_`benchmarks/run.py {name}{' --quick' if result.get('mode') == 'quick' else ''}`, {result.get('date', '?')}, "
        f"{result.get('seconds', 0):.0f} s, load average {result.get('load_start', 0):.1f} → "
        f"{result.get('load_end', 0):.1f}; {code_stamp(result)}._",
        "",
    ]
    if "error" in result:
        return lines + [f"**This item failed:** {result['error']}", ""]
    for spec in result.get("tables", []):
        lines += table(spec)
    lines += [f"- {finding}" for finding in result.get("findings", [])]
    return lines + ([""] if result.get("findings") else [])


def code_stamp(result: dict) -> str:
    """'commit abc123 (uncommitted changes), facetracker 0.1.0', or a note that the item predates the stamp."""
    if "commit" not in result:
        return "code version not recorded"
    dirty = " (with uncommitted changes)" if result.get("dirty") else ""
    return f"commit {result['commit']}{dirty}, facetracker {result.get('version', '?')}"


def grouped(done: dict, key: Callable[[dict], Hashable]) -> dict[Hashable, list[str]]:
    """The items' names by `key(result)`, keys and names in the items' order."""
    groups: dict[Hashable, list[str]] = {}
    for name, result in done.items():
        groups.setdefault(key(result), []).append(name)
    return groups


def provenance(done: dict) -> list[str]:
    """A line saying which code the items ran on: one commit, or a warning listing the different ones."""
    stamps = grouped(done, code_stamp)
    if len(stamps) == 1:
        only = next(iter(stamps))
        if only == code_stamp({}):
            return ["The items below were run before the harness recorded the code version they ran on.", ""]
        return [f"Every item below ran on one code version: {only}.", ""]
    parts = "; ".join(f"{', '.join(names)}: {stamp}" for stamp, names in stamps.items())
    return [f"**Items below come from different code versions**, so compare them with care: {parts}.", ""]


def machine_lines(m: dict) -> list[str]:
    """The CPU and the library versions of one machine record (common.machine)."""
    v = m.get("versions", {})
    flags = ", ".join(f"{k} {'yes' if f else 'no'}" for k, f in m.get("flags", {}).items())
    return [
        f"- CPU: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('mem_gb')} GB RAM; flags: {flags}",
        f"- Python {m.get('python')}, TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, "
        f"albumentations {v.get('albumentations')}, OpenCV {v.get('opencv')}, NumPy {v.get('numpy')}; "
        f"TFLite runtime: {m.get('tflite_runtime')}; TF_ENABLE_ONEDNN_OPTS {m.get('onednn')}.",
    ]


def machine_section(results: dict, names: list[str]) -> list[str]:
    """## Machine: the one every item ran on, or each machine with the items that ran on it."""
    machines = grouped({name: results["items"][name] for name in names},
                       lambda result: tuple(machine_lines(result.get("machine", results.get("machine", {})))))
    if len(machines) <= 1:
        return ["## Machine", "", *(next(iter(machines)) if machines else machine_lines(results.get("machine", {}))),
                ""]
    lines = ["## Machine", "", "**Items below ran on different machines**: compare times only within one item.", ""]
    for described, on_it in machines.items():
        lines += [f"{', '.join(on_it)}:", "", *described, ""]
    return lines


def render(results: dict) -> str:
    """The whole BENCHMARKS.md."""
    done = results.get("items", {})
    names = [n for n in ORDER if n in done] + sorted(n for n in done if n not in ORDER)
    lines = [
        "# FaceTracker benchmarks",
        "",
        "Generated by `benchmarks/run.py` (`make bench`) from `benchmarks/results.json`; do not edit by hand.",
        "",
        *machine_section(results, names),
        "## How to read this",
        "",
        INTRO,
        "",
    ]
    lines += provenance({name: done[name] for name in names}) if names else []
    for name in names:
        lines += section(name, done[name])
    targets = [t for n in names for t in done[n].get("targets", [])]
    lines += ["## Targets", "", "| target | measured | result | why |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {verdict(t.get('met'))} | {t.get('reason', '')} |" for t in targets]
    lines += ["", GPU]
    return "\n".join(lines)
