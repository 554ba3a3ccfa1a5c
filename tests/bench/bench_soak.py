"""Soak: five minutes at a fixed rate through the edge worker and the origin, nothing lost.

Real processes on 127.0.0.1: the origin (`python -m origin serve`, SQLite, learner on, rate
limits on but above the soak's rate) and the edge worker in workerd in front of it. An open-loop
asyncio + httpx generator starts requests on a fixed schedule (`RATE` a second, whatever the
answers' latency; at most `MAX_IN_FLIGHT` at once, beyond that a request counts as an error),
cycling through: a personalized page through the edge, `/v1/decide` then a click and a view on
`/v1/events`, a server-rendered category page, and a batch of view events. A warm-up of
`WARMUP_S` runs first and is not measured. Bounded: `RATE * (WARMUP_S + SOAK_S)` requests.

Reported: `error_rate` (unexpected status or no answer), `p99_ms` (all measured requests),
`rss_growth_mb` (origin VmRSS from /proc at the end of the warm-up vs at the end),
`events_lost` (events in batches answered 202 that are not in the SQLite log after the origin
stopped) — must be 0. `FP_SOAK_SECONDS` shortens the run for a smoke test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import httpx

from origin.storage import EVENT
from origin.storage.sqlite import SqliteStorage
from tests.support_edge import cf_header, start_edge
from tests.support_origin import TEST_SECRET, start_origin

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "bench" / "soak"
RATE = 20  # requests started per second (the machine is 2 cores shared with other work)
SOAK_S = float(os.environ.get("FP_SOAK_SECONDS", 300))
WARMUP_S = 15.0
MAX_IN_FLIGHT = 200
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0 Safari/537.36"
)
ZONES = [
    ("US", "America/New_York"),
    ("GB", "Europe/London"),
    ("JP", "Asia/Tokyo"),
    ("BR", "America/Sao_Paulo"),
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Soak:
    """The load generator's state: latencies, errors and what was acknowledged."""

    def __init__(self, origin_url: str, edge_url: str) -> None:
        self.origin_url = origin_url
        self.edge_url = edge_url
        self.measuring = False
        self.latencies_ms: dict[str, list[float]] = {}
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.edge_fallbacks = 0
        self.acknowledged: set[tuple[str, str]] = set()  # (type, decision id or path)
        self.in_flight = 0

    def error(self, what: str) -> None:
        if self.measuring:
            self.errors[what] = self.errors.get(what, 0) + 1

    async def timed(self, send, expected: int, what: str) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await send()
        except httpx.HTTPError as exc:
            self.error(f"{what}: {type(exc).__name__}")
            return None
        if self.measuring:
            self.requests += 1
            self.latencies_ms.setdefault(what, []).append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            self.error(f"{what}: HTTP {response.status_code}")
            return None
        return response

    async def edge_page(self, http: httpx.AsyncClient, i: int) -> None:
        country, zone = ZONES[i % len(ZONES)]
        headers = {
            "user-agent": UA,
            "referer": "https://www.google.com/",
            **cf_header(country, zone),
        }
        response = await self.timed(
            lambda: http.get(f"{self.edge_url}/?utm_source=soak{i % 7}", headers=headers),
            200,
            "edge page",
        )
        if response is not None and response.headers.get("x-fp-fallback") and self.measuring:
            self.edge_fallbacks += 1

    async def decide_and_click(self, http: httpx.AsyncClient, i: int) -> None:
        body = {
            "slots": ["hero"],
            "context": {"url": f"/running?n={i}", "user_agent": UA},
            "visitor_id": f"soak-{i % 500}",
        }
        response = await self.timed(
            lambda: http.post(f"{self.origin_url}/v1/decide", json=body), 200, "decide"
        )
        if response is None:
            return
        decision = response.json()["decisions"][0]
        events = [
            {"type": "click", "token": decision["token"]},
            {
                "type": "view",
                "session_id": f"s{i % 300}",
                "path": f"/soak/{i}",
                "category": "running",
            },
        ]
        answer = await self.timed(
            lambda: http.post(f"{self.origin_url}/v1/events", json={"events": events}),
            202,
            "events",
        )
        if answer is not None:
            self.acknowledged.update({("click", decision["decision_id"]), ("view", f"/soak/{i}")})

    async def origin_page(self, http: httpx.AsyncClient, i: int) -> None:
        await self.timed(
            lambda: http.get(f"{self.origin_url}/{['running', 'camping', 'hiking'][i % 3]}"),
            200,
            "origin page",
        )

    async def views(self, http: httpx.AsyncClient, i: int) -> None:
        paths = [f"/soak/{i}-{k}" for k in range(5)]
        events = [{"type": "view", "session_id": f"s{i % 300}", "path": p} for p in paths]
        answer = await self.timed(
            lambda: http.post(f"{self.origin_url}/v1/events", json={"events": events}), 202, "views"
        )
        if answer is not None:
            self.acknowledged.update(("view", p) for p in paths)

    async def one(self, http: httpx.AsyncClient, i: int) -> None:
        kinds = (self.edge_page, self.decide_and_click, self.origin_page, self.views)
        self.in_flight += 1
        try:
            await kinds[i % len(kinds)](http, i)
        finally:
            self.in_flight -= 1

    async def run(self, on_measuring) -> None:
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)

        async def forget_cookies(response: httpx.Response) -> None:
            http.cookies.clear()  # every request is a new visitor, as far as cookies go

        async with httpx.AsyncClient(
            timeout=10, limits=limits, event_hooks={"response": [forget_cookies]}
        ) as http:
            tasks: set[asyncio.Task] = set()
            start = time.monotonic()
            total = int(RATE * (WARMUP_S + SOAK_S))
            for i in range(total):
                if i == int(RATE * WARMUP_S):
                    on_measuring()
                    self.measuring = True
                delay = start + i / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.in_flight >= MAX_IN_FLIGHT:
                    self.error("generator: too many requests in flight")
                    continue
                task = asyncio.create_task(self.one(http, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=30)


def stored_events(db: Path) -> set[tuple[str, str]]:
    store = SqliteStorage(str(db))
    try:
        found = set()
        while True:
            entries = store.read_log("soak-audit", 50_000)
            if not entries:
                return found
            for entry in entries:
                record = entry.record
                if entry.kind == EVENT and record["type"] == "click":
                    found.add(("click", record["decision_id"]))
                elif entry.kind == EVENT and str(record.get("path") or "").startswith("/soak/"):
                    found.add(("view", record["path"]))
            store.ack("soak-audit", entries)
    finally:
        store.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run() -> dict:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    env = {"FP_RATE_LIMIT_IP": f"{RATE * 5}:{RATE * 10}", "FP_PUBLISH_INTERVAL_S": "5"}
    origin = start_origin(WORK, env=env)
    edge = None
    try:
        edge = start_edge(
            origin.url, token_secret=TEST_SECRET, vars={"FP_MODEL_REFRESH_S": "10", "FP_DEV": "0"}
        )
        soak = Soak(origin.url, edge.url)
        rss: dict[str, float] = {}
        started = time.monotonic()
        asyncio.run(soak.run(lambda: rss.setdefault("start", rss_mb(origin.pid))))
        elapsed = time.monotonic() - started
        rss["end"] = rss_mb(origin.pid)
    finally:
        if edge is not None:
            edge.stop()
        origin.stop()  # SIGTERM: the group committer drains, then the process exits
    stored = stored_events(origin.db)
    lost = soak.acknowledged - stored
    errors = sum(soak.errors.values())
    every = [ms for values in soak.latencies_ms.values() for ms in values]
    attempted = soak.requests + sum(n for k, n in soak.errors.items() if "HTTP" not in k)
    return {
        "duration_s": SOAK_S,
        "rate_per_s": RATE,
        "requests": soak.requests,
        "error_rate": round(errors / attempted, 6) if attempted else 1.0,
        "errors": soak.errors,
        "p50_ms": round(percentile(every, 0.50), 2),
        "p99_ms": round(percentile(every, 0.99), 2),
        "p99_ms_by_request": {
            k: round(percentile(v, 0.99), 2) for k, v in sorted(soak.latencies_ms.items())
        },
        "rss_start_mb": round(rss["start"], 1),
        "rss_end_mb": round(rss["end"], 1),
        "rss_growth_mb": round(rss["end"] - rss["start"], 1),
        "events_acknowledged": len(soak.acknowledged),
        "events_lost": len(lost),
        "edge_fallbacks": soak.edge_fallbacks,
        "elapsed_s": round(elapsed, 1),
    }


def summary(results: dict) -> str:
    return (
        f"{results['duration_s']:.0f} s at {results['rate_per_s']}/s through edge + origin: "
        f"{results['requests']} requests, error_rate {results['error_rate']:.4%}, "
        f"p99 {results['p99_ms']} ms, RSS {results['rss_growth_mb']:+.1f} MB, "
        f"events_lost {results['events_lost']} of {results['events_acknowledged']}"
    )
