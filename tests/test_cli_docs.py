"""The command line tells the truth: README's table lists every flag, a flag with no effect is an error,
and a user's mistake prints one line, with no TensorFlow start-up log before it."""

import argparse
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from facetracker import config
from facetracker.cli import build_parser, main

README = Path(__file__).resolve().parent.parent / "README.md"
ENTRY_POINT = Path(sys.executable).with_name("facetracker")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{step: its parser} of the facetracker parser."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def parser_flags(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """{step: every long flag it accepts} (--help left out)."""
    return {step: {s for action in sub._actions for s in action.option_strings if s.startswith("--")} - {"--help"}
            for step, sub in subcommands(parser).items()}


def readme_flags(text: str) -> dict[str, set[str]]:
    """{step: the flags its row of README's command table names}: the table under "| step | what it does |"."""
    table = text.split("| step | what it does |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        first = re.split(r"(?<!\\)\|", line)[1].strip() if line.startswith("| `") else ""
        if first:
            rows[first.strip("`").split()[0]] = set(re.findall(r"--[a-z][a-z0-9-]*", first))
    return rows


def undocumented(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """'step --flag' for every flag (or step) the parser has and README's table lacks, and the reverse."""
    ours, documented = parser_flags(parser), readme_flags(text)
    missing = [f"{step} {flag}" for step, flags in ours.items() for flag in sorted(flags - documented.get(step, set()))]
    missing += [f"{step} (no row)" for step in ours if step not in documented]
    stale = [f"{step} {flag} (not a flag)" for step, flags in documented.items()
             for flag in sorted(flags - ours.get(step, set()))]
    return missing + stale


def test_readme_table_lists_every_flag_of_every_step():
    assert undocumented(build_parser(), README.read_text()) == []


def test_the_table_check_catches_a_new_flag_without_a_row():
    parser = build_parser()
    subcommands(parser)["train"].add_argument("--warmup-epochs", type=int)
    steps = parser._subparsers._group_actions[0]
    steps.add_parser("serve-nothing")
    assert undocumented(parser, README.read_text()) == ["train --warmup-epochs", "serve-nothing (no row)"]


def test_help_lists_the_presets_and_masked_has_a_negative():
    train = subcommands(build_parser())["train"]
    assert all(name in train.format_help() for name in config.PRESET_NAMES)
    assert train.parse_args(["--no-masked"]).masked is False and train.parse_args(["--masked"]).masked is True
    assert train.parse_args([]).masked is None  # the preset's setting
    with pytest.raises(SystemExit):
        train.parse_args(["--preset", "fast"])


@pytest.mark.parametrize(("argv", "flag"), [
    (["train", "--worker-index", "1"], "--worker-index"),
    (["train", "--join-timeout", "30"], "--join-timeout"),
    (["train", "--workers", "localhost:1,localhost:2", "--worker-index", "0", "--strategy", "mirrored"],
     "--strategy"),
    (["evaluate", "--frames", "elsewhere", "--grid", "4"], "--grid"),
    (["annotate", "--no-gui", "--model", "m.keras"], "--model"),
    (["annotate", "--no-gui", "--prelabel", "haar", "--threshold", "0.3"], "--threshold"),
])
def test_a_flag_without_effect_is_an_error_naming_it(argv, flag, tmp_path, capsys):
    assert main(["--root", str(tmp_path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert f"{flag} has no effect" in captured.err
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


def bare_env() -> dict[str, str]:
    """The environment of a user's shell: no TensorFlow log settings."""
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["evaluate"],  # no model
    ["export"],  # no model
    ["train", "--preset", "quick"],  # no augmented data: TensorFlow is loaded before the error
    ["evaluate", "--model", "broken.keras"],  # a zip that is no Keras model: Keras loads it
])
def test_a_mistake_prints_one_line_and_no_tensorflow_log(argv, tmp_path):
    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    done = subprocess.run([str(ENTRY_POINT), *argv], cwd=tmp_path, env=bare_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"facetracker {argv[0]}: error: ")


@pytest.mark.slow
def test_a_missing_model_is_refused_before_tensorflow_loads(tmp_path):
    code = ("import json, sys\nfrom facetracker.cli import main\n"
            "print(json.dumps([main(['evaluate']), main(['export']), 'tensorflow' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=bare_env(), capture_output=True,
                          text=True, timeout=300)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, 2, False], done.stderr
