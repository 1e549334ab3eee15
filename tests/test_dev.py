"""dev.py's steps that a fresh clone relies on: the web page's runtime is installed before the tests run."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
dev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dev)

NPM_CI = "ci --ignore-scripts --no-audit --no-fund"


def web_folder(tmp_path: Path, installed_after_lock_s: float | None) -> Path:
    """A page folder with a lock file, and node_modules installed that many seconds after it (None: never)."""
    web = tmp_path / "web"
    web.mkdir()
    (web / "package-lock.json").write_text("{}")
    if installed_after_lock_s is not None:
        hidden_lock = web / "node_modules" / ".package-lock.json"
        hidden_lock.parent.mkdir()
        hidden_lock.write_text("{}")
        when = (web / "package-lock.json").stat().st_mtime + installed_after_lock_s
        os.utime(hidden_lock, (when, when))
    return web


def npm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int = 0) -> Path:
    """An `npm` first on PATH that logs its folder and arguments, then exits with `exit_code`; the log's path."""
    bin_dir, log = tmp_path / "bin", tmp_path / "npm.log"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\necho "$PWD $*" >> {log}\nexit {exit_code}\n')
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.mark.parametrize(("installed_after_lock_s", "installs"), [(None, True), (-60, True), (60, False)],
                         ids=["never installed", "lock file changed since", "up to date"])
def test_npm_ci_runs_when_the_runtime_is_missing_or_older_than_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed_after_lock_s: float | None,
        installs: bool) -> None:
    web = web_folder(tmp_path, installed_after_lock_s)
    monkeypatch.setattr(dev, "WEB", web)
    log = npm_on_path(tmp_path, monkeypatch)
    dev.install_web_runtime()
    ran = log.read_text().splitlines() if log.exists() else []
    assert ran == ([f"{web} {NPM_CI}"] if installs else [])


def test_a_failed_npm_ci_stops_with_its_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "WEB", web_folder(tmp_path, None))
    npm_on_path(tmp_path, monkeypatch, exit_code=3)
    with pytest.raises(SystemExit) as stopped:
        dev.install_web_runtime()
    assert stopped.value.code == 3


def test_without_npm_one_line_says_what_will_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    web = web_folder(tmp_path, None)
    monkeypatch.setattr(dev, "WEB", web)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing here"))
    dev.install_web_runtime()
    assert capsys.readouterr().out == (
        f"dev.py: npm was not found, so the web page's runtime is not installed in {web / 'node_modules'}: "
        "`facetracker export --format web` and its tests will fail. Install Node.js 20 with npm, then run this "
        "again.\n")
