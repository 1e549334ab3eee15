"""The benchmark harness's contract: every item exposes run(quick) and an explanation; the report holds only
what results.json holds (no hand-typed figures)."""

import ast
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import report  # noqa: E402


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("bench_*.py")), ids=lambda p: p.stem)
def test_every_item_has_run_and_an_explanation(path):
    tree = ast.parse(path.read_text())
    runs = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "run"]
    assert len(runs) == 1 and [a.arg for a in runs[0].args.args] == ["quick"]
    assert report.explanation(path.stem.removeprefix("bench_"))  # the docstring after its first line


def test_report_renders_results_only():
    results = {
        "machine": {"cpu": "Test CPU", "cores": 2, "versions": {"tensorflow": "9.9"}},
        "items": {
            "quantize": {"title": "Quantized export", "mode": "quick", "seconds": 12.0,
                         "tables": [{"caption": "cap", "columns": ["way", "ms"], "rows": [["int8", "1.234"]]}],
                         "findings": ["found 42"],
                         "targets": [{"target": "T", "measured": "3.1x", "met": False, "reason": "why 7"}]},
            "broken": {"error": "exit 1: boom"},
        },
    }
    text = report.render(results)
    assert "| int8 | 1.234 |" in text and "- found 42" in text and "| T | 3.1x | **not met** | why 7 |" in text
    assert report.explanation("quantize").splitlines()[0] in text  # the fixed explanation
    assert "**This item failed:** exit 1: boom" in text and "Test CPU" in text and "## On a GPU" in text
    assert text.index("## Quantized export") < text.index("## broken")  # fixed order, others after
    assert "FACTS" not in text


def test_each_item_says_which_code_it_ran_on_and_mixed_versions_are_flagged():
    same = {"machine": {}, "items": {name: {"title": name, "commit": "abc123", "dirty": False, "version": "0.1.0"}
                                     for name in ("train", "accuracy")}}
    text = report.render(same)
    assert "commit abc123, facetracker 0.1.0" in text and "different code versions" not in text
    same["items"]["accuracy"].update(commit="def456", dirty=True)
    text = report.render(same)
    assert "**Items below come from different code versions**" in text
    assert "accuracy: commit def456 (with uncommitted changes)" in text


def test_items_run_in_the_report_order():
    import run

    names = run.items()
    assert [n for n in names if n in report.ORDER] == [n for n in report.ORDER if n in names]
    assert names.index("train") < names.index("accuracy")


def test_items_from_different_machines_are_listed_under_each_machine():
    fast = {"cpu": "CPU with avx512", "cores": 2, "flags": {"avx512f": True}}
    slow = {"cpu": "CPU without", "cores": 2, "flags": {"avx512f": False}}
    results = {"machine": fast, "items": {"train": {"title": "train", "machine": fast},
                                          "accuracy": {"title": "accuracy", "machine": slow},
                                          "quantize": {"title": "quantize", "machine": fast}}}
    text = report.render(results)
    machine = text[text.index("## Machine"):text.index("## How to read this")]
    assert "**Items below ran on different machines**" in machine
    assert machine.index("quantize, train:") < machine.index("CPU: CPU with avx512") < machine.index("accuracy:")
    assert machine.index("accuracy:") < machine.index("CPU: CPU without") and "avx512f no" in machine
    results["items"]["accuracy"]["machine"] = fast
    text = report.render(results)
    assert "different machines" not in text and text.count("CPU: CPU with avx512") == 1
