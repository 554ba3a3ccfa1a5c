"""Origin benchmark: `/v1/decide` against a bare Starlette JSON endpoint, and event ingest.

Both servers run as `uvicorn` subprocesses with the same settings (one worker, asyncio loop,
h11, no access log) on 127.0.0.1; the load comes from a second process (this file run as a
script: a raw keep-alive HTTP/1.1 client on asyncio), bounded in requests and in time.

- CPU: the servers' own CPU time per request (from /proc), which other load on the machine
  does not change: `decide_cpu_ratio` = baseline CPU per request / decide CPU per request,
  `ingest_cpu_us_per_event`
- latency: one connection, sequential requests → `decide_p50_ms`, `decide_p99_ms`
- throughput: `CONCURRENCY` connections, `ROUNDS` alternating phases on the two servers (both
  running throughout, so background load on the machine falls on both alike) → `decide_rps`,
  `baseline_rps`, `decide_ratio`
- ingest: batches of 50 events (impressions and clicks with signed tokens, and views) on
  SQLite → `ingest_events_per_s`; then every acknowledged event is looked up in the database
  → `ingest_lost` (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 16
ROUNDS = 3
PHASE_S = 4.0
MAX_REQUESTS = 60_000
INGEST_BATCH = 50
SECRET = "bench-secret"
UVICORN = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log", "--workers", "1"]


async def _baseline(request):
    return JSONResponse({"ok": True, "slot": "hero", "variant": "default"})


baseline_app = Starlette(routes=[Route("/v1/baseline", _baseline, methods=["POST"])])


# --- the load generator (runs in its own process) ---------------------------------------------


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _connection(host, port, requests, deadline, budget, results) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            index = budget[0] % len(requests)
            started = time.perf_counter()
            writer.write(requests[index])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            results.append((int(head[9:12]), time.perf_counter() - started, index))
    finally:
        writer.close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    requests = [_request(spec["path"], body.encode()) for body in spec["bodies"]]
    results: list[tuple[int, float, int]] = []
    budget = [spec["max_requests"]]
    started = time.perf_counter()
    deadline = started + spec["duration_s"]
    await asyncio.gather(
        *(
            _connection(spec["host"], spec["port"], requests, deadline, budget, results)
            for _ in range(spec["concurrency"])
        )
    )
    elapsed = time.perf_counter() - started
    latencies = sorted(r[1] for r in results)
    return {
        "requests": len(results),
        "elapsed_s": elapsed,
        "statuses": {str(s): sum(1 for r in results if r[0] == s) for s in {r[0] for r in results}},
        "ok_indexes": [r[2] for r in results if r[0] in (200, 202)],
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else None,
    }


def run_load(
    port: int, path: str, bodies: list[str], concurrency: int, duration_s: float, max_requests: int
) -> dict:
    """Run the load generator in a second process; its JSON result."""
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "path": path,
        "bodies": bodies,
        "concurrency": concurrency,
        "duration_s": duration_s,
        "max_requests": max_requests,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    done = subprocess.run(
        [sys.executable, __file__, f.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=duration_s + 120,
    )
    Path(f.name).unlink()
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


# --- the servers --------------------------------------------------------------------------------


def _wait_ready(port: int, process: subprocess.Popen, path: str = "/healthz") -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.request(
                "GET" if path == "/healthz" else "POST", f"http://127.0.0.1:{port}{path}", timeout=2
            )
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server not ready")


def _start(argv: list[str], port: int, log: Path, ready_path: str) -> subprocess.Popen:
    # One client IP generates all the load: the per-IP rate limit is off, as for any load test.
    env = {
        "FP_TOKEN_SECRET": SECRET,
        "FP_RATE_LIMIT": "off",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_ready(port, process, ready_path)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(pid: int, port: int, *load_args: Any) -> dict:
    """`run_load` plus the CPU time the server spent on it."""
    before = _cpu_s(pid)
    result = run_load(port, *load_args)
    result["server_cpu_s"] = _cpu_s(pid) - before
    return result


def _decide_bodies(n: int = 200) -> list[str]:
    from model_export.simulate import Simulator

    sim = Simulator(seed=5)
    bodies = []
    for i in range(n):
        visitor_id, context = sim.visitor(1_764_000_000_000 + i * 1000)
        context["user_agent"] = context.get("user_agent", "")
        bodies.append(
            json.dumps(
                {
                    "slots": ["hero"],
                    "context": context,
                    "visitor_id": visitor_id,
                    "session_id": f"bench-s{i % 50}",
                }
            )
        )
    return bodies


def _ingest_bodies(n_batches: int) -> list[str]:
    from origin.tokens import sign

    now = int(time.time() * 1000)
    bodies = []
    for b in range(n_batches):
        events = []
        for i in range(INGEST_BATCH):
            marker = f"b{b}-e{i}"
            if i % 5 == 4:
                events.append(
                    {
                        "type": "view",
                        "session_id": marker,
                        "category": "running",
                        "price": 89.0,
                        "path": "/running",
                    }
                )
            else:
                decision = {
                    "decision_id": f"d{b}-{i}",
                    "slot": "hero",
                    "variant": "running",
                    "propensity": 0.9,
                    "model_version": "bench",
                }
                kind = "click" if i % 5 == 3 else "impression"
                events.append(
                    {
                        "type": kind,
                        "token": sign(SECRET.encode(), decision, now),
                        "session_id": marker,
                    }
                )
        bodies.append(json.dumps({"events": events}))
    return bodies


def _stored_markers(db: Path) -> set[str]:
    from origin.storage.sqlite import SqliteStorage

    storage = SqliteStorage(str(db))
    found: set[str] = set()
    while entries := storage.read_log("bench-check", 20_000):
        found.update(e.record["session_id"] for e in entries if e.record.get("session_id"))
        storage.ack("bench-check", entries)
    storage.close()
    return found


def run() -> dict:
    from tests.conftest import free_port

    results: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "rounds": ROUNDS,
        "phase_s": PHASE_S,
        "server": "uvicorn h11 asyncio, 1 worker, each",
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base_port, port = free_port(), free_port()
        db = tmp_path / "bench.db"
        base = _start(
            ["-m", "uvicorn", "tests.bench.bench_origin:baseline_app", *UVICORN],
            base_port,
            tmp_path / "baseline.log",
            "/v1/baseline",
        )
        origin = _start(
            [
                "-m",
                "origin",
                "serve",
                "--host",
                "127.0.0.1",
                "--db",
                str(db),
                "--log-level",
                "warning",
            ],
            port,
            tmp_path / "origin.log",
            "/healthz",
        )
        try:
            baseline_body = [json.dumps({"slots": ["hero"]})]
            bodies = _decide_bodies()
            run_load(base_port, "/v1/baseline", baseline_body, CONCURRENCY, 1.0, 2000)  # warm-up
            run_load(port, "/v1/decide", bodies, CONCURRENCY, 1.0, 2000)
            latency = run_load(port, "/v1/decide", bodies, 1, PHASE_S, 3000)
            # Alternate the two servers, so that other load on the machine hits both alike.
            baseline_runs, decide_runs = [], []
            for _ in range(ROUNDS):
                baseline_runs.append(
                    _measured(
                        base.pid,
                        base_port,
                        "/v1/baseline",
                        baseline_body,
                        CONCURRENCY,
                        PHASE_S,
                        MAX_REQUESTS,
                    )
                )
                decide_runs.append(
                    _measured(
                        origin.pid, port, "/v1/decide", bodies, CONCURRENCY, PHASE_S, MAX_REQUESTS
                    )
                )
            ingest_bodies = _ingest_bodies(600)
            ingest = _measured(
                origin.pid, port, "/v1/events", ingest_bodies, 8, PHASE_S, len(ingest_bodies)
            )
        finally:
            _stop(origin)
            _stop(base)
        acknowledged = {
            f"b{b}-e{i}" for b in set(ingest["ok_indexes"]) for i in range(INGEST_BATCH)
        }
        stored = _stored_markers(db)

    def rps(runs: list[dict]) -> float:
        return sum(len(r["ok_indexes"]) for r in runs) / sum(r["elapsed_s"] for r in runs)

    results["baseline_rps"] = round(rps(baseline_runs), 1)
    results["decide_rps"] = round(rps(decide_runs), 1)
    results["decide_ratio"] = round(results["decide_rps"] / results["baseline_rps"], 3)
    results["decide_ratio_rounds"] = [
        round(len(d["ok_indexes"]) / d["elapsed_s"] / (len(b["ok_indexes"]) / b["elapsed_s"]), 3)
        for b, d in zip(baseline_runs, decide_runs, strict=True)
    ]

    # CPU per request does not depend on what else the machine runs, unlike throughput.
    def cpu_us(runs: list[dict]) -> float:
        return 1e6 * sum(r["server_cpu_s"] for r in runs) / sum(len(r["ok_indexes"]) for r in runs)

    results["baseline_cpu_us_per_request"] = round(cpu_us(baseline_runs), 1)
    results["decide_cpu_us_per_request"] = round(cpu_us(decide_runs), 1)
    results["decide_cpu_ratio"] = round(
        results["baseline_cpu_us_per_request"] / results["decide_cpu_us_per_request"], 3
    )
    results["decide_p50_ms"] = round(latency["p50_ms"], 3)
    results["decide_p99_ms"] = round(latency["p99_ms"], 3)
    results["decide_loaded_p50_ms"] = round(statistics.median(r["p50_ms"] for r in decide_runs), 3)
    results["decide_loaded_p99_ms"] = round(max(r["p99_ms"] for r in decide_runs), 3)
    results["decide_errors"] = sum(r["requests"] - len(r["ok_indexes"]) for r in decide_runs)
    results["ingest_batches"] = ingest["requests"]
    results["ingest_statuses"] = ingest["statuses"]
    results["ingest_events_per_s"] = round(
        len(ingest["ok_indexes"]) * INGEST_BATCH / ingest["elapsed_s"], 1
    )
    results["ingest_cpu_us_per_event"] = round(
        1e6 * ingest["server_cpu_s"] / max(1, len(ingest["ok_indexes"]) * INGEST_BATCH), 1
    )
    results["ingest_acknowledged"] = len(acknowledged)
    results["ingest_lost"] = len(acknowledged - stored)
    results["load_average"] = list(os.getloadavg())
    results["targets_met"] = (
        results["decide_ratio"] >= 0.6
        and results["ingest_events_per_s"] >= 5000
        and results["ingest_lost"] == 0
    )
    return results


def summary(results: dict) -> str:
    return (
        f"decide p50 {results['decide_p50_ms']} ms p99 {results['decide_p99_ms']} ms, "
        f"{results['decide_rps']} rps = {results['decide_ratio']}x bare Starlette "
        f"({results['baseline_rps']} rps; "
        f"target >= 0.6); ingest {results['ingest_events_per_s']} events/s (target >= 5000), "
        f"lost {results['ingest_lost']}; CPU per request {results['decide_cpu_us_per_request']} µs "
        f"vs {results['baseline_cpu_us_per_request']} µs (ratio {results['decide_cpu_ratio']}), "
        f"{results['ingest_cpu_us_per_event']} µs per event"
    )


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_load(json.loads(Path(sys.argv[1]).read_text())))))
