"""Start the edge worker (workerd through Miniflare) in front of any origin, for tests.

    from tests.support_edge import edge_worker, cf_header

    with edge_worker("http://127.0.0.1:8787", token_secret=TEST_SECRET,
                     vars={"FP_MODEL_REFRESH_S": "0"}) as edge:
        httpx.get(edge.url + "/", headers={"user-agent": UA, **cf_header("US", "Europe/Paris")})

The worker listens on a free 127.0.0.1 port; `edge.pid` is its process (stopped by PID on exit,
with the workerd child it owns). `cf` sets the default `request.cf`; `cf_header(...)` sets it for
one request. `FP_DEV=1` is on unless `vars` says otherwise, so `edge.status()` can read
`/__fp/status` (model version, refreshes, last error).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import ROOT, free_port

DEV_SERVER = ROOT / "edge" / "dev_server.mjs"


class EdgeStartError(RuntimeError):
    """The worker did not become ready; the message carries its output."""


def cf_header(
    country: str | None = None, timezone: str | None = None, **more: Any
) -> dict[str, str]:
    """Headers that make the worker see `request.cf` = {country, timezone, ...} for one request."""
    cf = {
        k: v for k, v in {"country": country, "timezone": timezone, **more}.items() if v is not None
    }
    return {"MF-CF-Blob": json.dumps(cf)}


@dataclass
class EdgeWorker:
    """A running worker: `url`, `port`, `pid`, the `origin` it fronts and its `output` so far."""

    url: str
    port: int
    origin: str
    process: subprocess.Popen
    lines: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def status(self) -> dict[str, Any]:
        """The worker's model status (needs FP_DEV=1)."""
        return httpx.get(self.url + "/__fp/status", timeout=10).json()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server (it disposes workerd) and wait; then make sure its group is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        # The server runs in its own session (group id = its PID): node and the workerd it
        # spawned, nothing else. Reap a workerd that outlived its parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _pump(stream: Any, lines: list[str], ready: queue.Queue) -> None:
    for line in stream:
        line = line.rstrip("\n")
        lines.append(line)
        if line.startswith("ready "):
            ready.put(line.split(" ", 1)[1])
    ready.put(None)


def start_edge(
    origin_url: str,
    *,
    token_secret: str = "test-secret-not-for-production",
    vars: Mapping[str, str] | None = None,
    cf: Mapping[str, Any] | None = None,
    port: int | None = None,
    ready_timeout_s: float = 90.0,
) -> EdgeWorker:
    """Start the worker in front of `origin_url` and wait until it serves; see `edge_worker`."""
    port = port or free_port()
    settings = {"FP_DEV": "1", **(vars or {})}
    command = ["node", str(DEV_SERVER), "--port", str(port), "--origin", origin_url]
    for name, value in settings.items():
        command += ["--var", f"{name}={value}"]
    if cf is not None:
        command += ["--cf", json.dumps(dict(cf))]
    env = {**os.environ, "FP_TOKEN_SECRET": token_secret}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    ready: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines, ready), daemon=True).start()
    worker = EdgeWorker(url="", port=port, origin=origin_url, process=process, lines=lines)
    deadline = time.monotonic() + ready_timeout_s
    try:
        url = ready.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        url = None
    if url is None:
        worker.stop()
        raise EdgeStartError(
            f"edge worker not ready (exit {process.poll()}):\n{worker.output[-3000:]}"
        )
    worker.url = url
    return worker


@contextlib.contextmanager
def edge_worker(origin_url: str, **options: Any) -> Iterator[EdgeWorker]:
    """`start_edge(origin_url, ...)`, stopped by PID on exit."""
    worker = start_edge(origin_url, **options)
    try:
        yield worker
    finally:
        worker.stop()
