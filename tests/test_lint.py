"""The Python reads as CONVENTIONS.md says: ruff (lint and format) everywhere, mypy on the packages.

The tools come from the test extra (pyproject.toml), so a clean checkout runs them like any test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

TOOLS = Path(sys.executable).parent


def _passes(*command: str | Path) -> None:
    done = subprocess.run(
        [str(part) for part in command], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}{done.stderr}"


def test_ruff_finds_nothing():
    _passes(TOOLS / "ruff", "check", ".")


def test_ruff_format_changes_nothing():
    _passes(TOOLS / "ruff", "format", "--check", ".")


def test_mypy_passes_on_the_packages():
    _passes(sys.executable, "-m", "mypy", "model_export", "origin")
