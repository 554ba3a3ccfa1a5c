"""SQLite faults at the origin: a database locked by another connection, a full disk.

Both must answer 503 with a message that says what is wrong, acknowledge nothing, and leave
no part of the refused batch in the log; the origin serves again once the fault is gone.
"""

from __future__ import annotations

import sqlite3

import pytest
from starlette.testclient import TestClient

from model_export.policy import decide
from origin.app import create_app
from origin.clock import ManualClock
from origin.services import Settings
from origin.storage import EVENT
from origin.storage.sqlite import SqliteStorage

SECRET = b"faults-test-secret"


def views(n: int, tag: str) -> dict:
    return {
        "events": [
            {"type": "view", "session_id": f"{tag}-{i}", "path": f"/{tag}/{i}"} for i in range(n)
        ]
    }


def paths_in_log(db) -> list[str]:
    store = SqliteStorage(str(db))
    try:
        return [
            e.record["path"] for e in store.read_log("fault-reader", 100_000) if e.kind == EVENT
        ]
    finally:
        store.close()


@pytest.fixture
def origin_on(tmp_path):
    """(client, storage, db path) of an origin whose SQLite waits at most 200 ms for a lock."""
    db = tmp_path / "origin.db"
    storage = SqliteStorage(str(db), busy_timeout_ms=200)
    settings = Settings(db=str(db), token_secret=SECRET, clock=ManualClock(), learner="manual")
    with TestClient(create_app(settings, storage=storage)) as client:
        yield client, storage, db


def test_a_locked_database_is_503_and_nothing_is_written(origin_on):
    client, _, db = origin_on
    assert client.post("/v1/events", json=views(3, "before")).status_code == 202
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        response = client.post("/v1/events", json=views(5, "locked"))
        assert response.status_code == 503
        assert (
            response.json()["error"]
            == "storage unavailable: SQLite commit failed: database is locked"
        )
        assert client.get("/healthz").status_code in (200, 503)  # answers, whatever it says
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert client.post("/v1/events", json=views(2, "after")).status_code == 202
    assert [p.split("/")[1] for p in paths_in_log(db)] == ["before"] * 3 + ["after"] * 2


def test_a_full_disk_is_503_and_no_partial_batch_is_written(origin_on):
    """SQLITE_FULL for real: the database may not grow past its current pages."""
    client, storage, db = origin_on
    assert client.post("/v1/events", json=views(3, "before")).status_code == 202
    pages = storage._db.execute("PRAGMA page_count").fetchone()[0]
    storage._db.execute(
        f"PRAGMA max_page_count = {pages + 2}"
    )  # room for a little, not for 400 rows
    big = views(400, "full")
    for event in big["events"]:
        event["category"] = "x" * 200
    response = client.post("/v1/events", json=big)
    assert response.status_code == 503
    message = response.json()["error"]
    assert message.startswith("storage unavailable: SQLite commit failed:") and "full" in message, (
        message
    )
    assert [p.split("/")[1] for p in paths_in_log(db)] == ["before"] * 3
    storage._db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    assert client.post("/v1/events", json=views(2, "after")).status_code == 202
    assert [p.split("/")[1] for p in paths_in_log(db)] == ["before"] * 3 + ["after"] * 2


def test_a_client_decision_refused_by_a_locked_database_is_logged_when_sent_again(origin_on):
    """A 503 logged nothing, so the snippet's next try (its pagehide beacon) must log it."""
    client, _, db = origin_on
    model = client.app.state.origin.holder.model
    made = decide(model, {"url": "/hiking"}, "hero", "v1", "client-locked").to_dict()
    record = {k: made[k] for k in ("decision_id", "slot", "variant", "propensity", "model_version")}
    record.update(visitor_id="v1", context={"url": "/hiking"}, ts_ms=1)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        refused = client.post("/v1/decisions/client", json={"decisions": [record]})
        assert refused.status_code == 503
    finally:
        other.execute("ROLLBACK")
        other.close()
    again = client.post("/v1/decisions/client", json={"decisions": [record]})
    assert again.status_code == 200 and "client-locked" in again.json()["tokens"]
    store = SqliteStorage(str(db))
    try:
        logged = [e.record["decision_id"] for e in store.read_log("fault-reader", 1000)]
    finally:
        store.close()
    assert logged == ["client-locked"]


def test_a_corrupt_model_file_stops_the_origin_at_start(tmp_path):
    from origin.services import ConfigError

    good = Settings(db=str(tmp_path / "a.db"), token_secret=SECRET, learner="manual")
    with TestClient(create_app(good)) as client:
        body = client.get("/v1/model").content
    corrupt = tmp_path / "model.json"
    corrupt.write_bytes(body.replace(b'"bias":{', b'"bias":{"injected":9,', 1))
    settings = Settings(
        db=str(tmp_path / "b.db"), token_secret=SECRET, learner="manual", model_path=str(corrupt)
    )
    with pytest.raises(ConfigError, match="sha256"):
        create_app(settings)
