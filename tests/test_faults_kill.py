"""`kill -9` of the origin under load: every event answered 202 is in the log after restart.

A real `python -m origin serve` on SQLite takes batches of events from 8 concurrent clients;
once enough have been acknowledged it is killed with SIGKILL while requests are in flight.
Restarted on the same file, the log must hold every acknowledged event, each exactly once.
Bounded: at most 400 batches per client and 60 s.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from origin.storage import EVENT
from origin.storage.sqlite import SqliteStorage
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
