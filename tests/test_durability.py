"""A 202 means durable: events acknowledged by a real origin process survive its `kill -9`.

Writers post batches concurrently; the server is SIGKILLed mid-stream; after a restart every
acknowledged event is in the log (events that were in flight may or may not be: they were
never acknowledged).
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from origin.storage import EVENT
from origin.storage.redis import RedisStorage
from origin.storage.sqlite import SqliteStorage
from tests.support_origin import running_redis, start_origin

WRITERS = 4
BATCH = 20


def _hammer(url: str, acknowledged: set[str], stop: threading.Event, writer: int) -> None:
    """Post batches of view events until the server goes away; remember what got a 202."""
    n = 0
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            ids = [f"w{writer}-{n}-{i}" for i in range(BATCH)]
            events = [{"type": "view", "session_id": sid, "category": "running"} for sid in ids]
            try:
                response = client.post(url + "/v1/events", json={"events": events})
            except httpx.HTTPError:
                return
            if response.status_code == 202:
                acknowledged.update(ids)
            n += 1


def _kill_under_load(origin) -> set[str]:
    acknowledged: set[str] = set()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_hammer, args=(origin.url, acknowledged, stop, w))
        for w in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 50 * BATCH and time.monotonic() < deadline:
        time.sleep(0.02)
    origin.kill()  # SIGKILL while the writers are still posting
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) >= 50 * BATCH, "the server acknowledged too little before the kill"
    return acknowledged


def _stored_sessions(storage) -> set[str]:
    found: set[str] = set()
    while True:
        entries = storage.read_log("durability-check", 5000)
        if not entries:
            return found
        found.update(e.record["session_id"] for e in entries if e.kind == EVENT)
        storage.ack("durability-check", entries)


def test_acknowledged_events_survive_kill_9_sqlite(tmp_path):
    db = tmp_path / "origin.db"
    origin = start_origin(tmp_path, db=db, args=["--learner", "off"])
    acknowledged = _kill_under_load(origin)
    restarted = start_origin(tmp_path, db=db, args=["--learner", "off"])
    try:
        assert httpx.get(restarted.url + "/healthz").json()["ok"] is True
        storage = SqliteStorage(str(db))
        stored = _stored_sessions(storage)
        storage.close()
    finally:
        restarted.stop()
    print(f"sqlite: {len(acknowledged)} events acknowledged before kill -9, {len(stored)} stored")
    assert acknowledged <= stored


@pytest.mark.redis
def test_acknowledged_events_survive_kill_9_of_origin_and_redis(tmp_path):
    with running_redis(tmp_path / "redis") as redis_server:
        origin = start_origin(tmp_path, redis_url=redis_server.url, args=["--learner", "off"])
        acknowledged = _kill_under_load(origin)
        redis_server.process.kill()  # Redis too: appendfsync always brings every write back
        redis_server.process.wait(timeout=10)
    with running_redis(tmp_path / "redis") as redis_server:
        restarted = start_origin(tmp_path, redis_url=redis_server.url, args=["--learner", "off"])
        try:
            storage = RedisStorage(redis_server.url)
            stored = _stored_sessions(storage)
            storage.close()
        finally:
            restarted.stop()
    print(f"redis: {len(acknowledged)} events acknowledged before kill -9, {len(stored)} stored")
    assert acknowledged <= stored
