"""`kill -9` of the origin: nothing acknowledged is lost, and no decision the learner awaited.

A real `python -m origin serve` on SQLite takes batches of events from 8 concurrent clients;
once enough have been acknowledged it is killed with SIGKILL while requests are in flight.
Restarted on the same file, the log must hold every acknowledged event, each exactly once.
Bounded: at most 400 batches per client and 60 s. And a decision the learner had already
consumed when the origin was killed still has its click joined to it after the restart.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from origin.storage import EVENT
from origin.storage.sqlite import SqliteStorage
from tests.conftest import wait_for
from tests.support_origin import start_origin

BATCH = 10
CLIENTS = 8
KILL_AFTER = 1500  # acknowledged events


async def load_until_killed(origin) -> tuple[set[str], int]:
    """(ids of events answered 202, requests that never got an answer)."""
    acknowledged: set[str] = set()
    unanswered = 0
    killed = asyncio.Event()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        nonlocal unanswered
        for i in range(400):
            if killed.is_set():
                return
            ids = [f"c{n}-{i}-{k}" for k in range(BATCH)]
            body = {
                "events": [{"type": "view", "session_id": f"s{n}", "path": "/" + e} for e in ids]
            }
            try:
                response = await http.post("/v1/events", json=body)
            except httpx.HTTPError:
                unanswered += 1
                return
            if response.status_code == 202:
                acknowledged.update(ids)

    async def killer() -> None:
        deadline = time.monotonic() + 60
        while len(acknowledged) < KILL_AFTER and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        origin.kill()  # SIGKILL: no shutdown hook, no final flush
        killed.set()

    async with httpx.AsyncClient(base_url=origin.url, timeout=10) as http:
        await asyncio.gather(killer(), *(client(n, http) for n in range(CLIENTS)))
    return acknowledged, unanswered


def test_every_acknowledged_event_survives_kill_9(tmp_path):
    origin = start_origin(tmp_path, env={"FP_RATE_LIMIT": "off"}, args=["--learner", "off"])
    try:
        acknowledged, unanswered = asyncio.run(load_until_killed(origin))
    finally:
        origin.kill()
    assert len(acknowledged) >= KILL_AFTER
    assert unanswered >= 1, "the kill should land while requests are in flight"

    restarted = start_origin(
        tmp_path, db=origin.db, env={"FP_RATE_LIMIT": "off"}, args=["--learner", "off"]
    )
    try:
        store = SqliteStorage(str(origin.db))
        try:
            stored = [
                e.record["path"][1:]
                for e in store.read_log("kill-audit", 1_000_000)
                if e.kind == EVENT
            ]
        finally:
            store.close()
    finally:
        restarted.stop()
    print(
        f"\nkill -9: {len(acknowledged)} events acknowledged, {len(stored)} stored,"
        f" {unanswered} requests cut off"
    )
    assert acknowledged <= set(stored), f"lost: {sorted(acknowledged - set(stored))[:10]}"
    assert len(stored) == len(set(stored)), "an event was stored twice"


def _metric(origin, name: str) -> float:
    text = httpx.get(origin.url + "/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_a_decision_waiting_for_its_click_survives_kill_9_of_the_learner(tmp_path):
    origin = start_origin(tmp_path)
    try:
        decided = httpx.post(origin.url + "/v1/decide", json={"slots": ["hero"]}, timeout=10)
        assert decided.status_code == 200, decided.text
        token = decided.json()["decisions"][0]["token"]
        # A 202 for an event sent after it means the decision (queued first) is committed too.
        view = {"events": [{"type": "view", "session_id": "s"}]}
        assert httpx.post(origin.url + "/v1/events", json=view, timeout=10).status_code == 202
        wait_for(lambda: _metric(origin, "fp_learner_lag_entries") == 0, "the learner")
    finally:
        origin.kill()  # the learner had the decision open, in memory only
    restarted = start_origin(tmp_path, db=origin.db)
    try:
        click = {"events": [{"type": "click", "token": token}]}
        assert httpx.post(restarted.url + "/v1/events", json=click, timeout=10).status_code == 202
        wait_for(lambda: _metric(restarted, "fp_learner_lag_entries") == 0, "the learner")
        assert _metric(restarted, "fp_learner_examples") == 1, restarted.log_text()
        assert "1 open decisions reopened" in restarted.log_text()
    finally:
        restarted.stop()
