"""`python -m origin.demo` (`make demo`): origin and edge worker, a URL, Ctrl-C stops both."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import ROOT, free_port


@pytest.mark.workerd
def test_demo_serves_the_shop_through_the_edge_and_stops_on_ctrl_c(tmp_path):
    origin_port, edge_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "origin.demo",
        "--port",
        str(origin_port),
        "--edge-port",
        str(edge_port),
        "--db",
        str(tmp_path / "demo.db"),
    ]
    secret = "demo-secret-never-printed"
    env = {**os.environ, "FP_TOKEN_SECRET": secret}
    demo = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        url = None
        while time.monotonic() < deadline and url is None and demo.poll() is None:
            found = [re.search(r"open (http://\S+)", line) for line in list(lines)]
            url = next((m.group(1) for m in found if m), None)
            time.sleep(0.2)
        assert url == f"http://127.0.0.1:{edge_port}/", "".join(lines)
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and page.headers.get("x-fp-model")  # the edge decided
        assert 'data-fp-slot="hero"' in page.text and "data-fp-decision=" in page.text
        assert secret not in "".join(lines)
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(timeout=60)
    for port in (origin_port, edge_port):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
