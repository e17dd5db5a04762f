"""The code passes the project's linter: ruff with the rules in pyproject.toml (pyflakes' unused names and
redefinitions, bugbear, every broad ``except`` marked, lines within 120 columns, ...)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
    beside = pathlib.Path(sys.executable).with_name("ruff")  # the venv's, installed with the dev extra
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_finds_nothing():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    done = subprocess.run([*ruff, "check", "--no-cache", "--output-format", "concise", "human_motion", "tests",
                           "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
