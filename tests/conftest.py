"""Shared test helpers. Area-specific fixtures live in `tests/support_<area>.py`."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Browser fixtures (dist, chromium, site, edge) for every Playwright test module.
pytest_plugins = ["tests.support_browser"]

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
CHROMIUM = "/usr/bin/chromium"
# Chromium on this closed network: no background connections, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (servers in tests bind only to loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll `predicate()` every 0.1 s until it returns something truthy, and return that; an
    AssertionError naming `what` after `timeout_s` (a bound on waiting, not a timing check)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def golden_model() -> dict:
    return json.loads((GOLDEN / "model.json").read_text())


@pytest.fixture(scope="session")
def golden_cases() -> list[dict]:
    return json.loads((GOLDEN / "cases.json").read_text())
