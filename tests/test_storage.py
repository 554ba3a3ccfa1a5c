"""One storage suite, run against both real backends: SQLite (WAL) and a real redis-server."""

from __future__ import annotations

import time
import uuid

import pytest

from origin.clock import ManualClock
from origin.storage import DECISION, EVENT, StoredModel
from origin.storage.redis import RedisStorage
from origin.storage.sqlite import SqliteStorage
from tests.support_origin import redis_server  # noqa: F401  (fixture)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    """(name, open) where open() returns a new connection to the same store."""
    clock = ManualClock()
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        return "sqlite", clock, lambda: SqliteStorage(str(path), clock=clock)
    server = request.getfixturevalue("redis_server")
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    return "redis", clock, lambda: RedisStorage(server.url, clock=clock, prefix=prefix)


def _decision(i: int) -> dict:
    return {
        "decision_id": f"d{i}",
        "slot": "hero",
        "variant": "running",
        "propensity": 0.5,
        "ts_ms": i,
    }


def test_append_read_ack_in_order(backend):
    _, _, open_store = backend
    store = open_store()
    store.append([(DECISION, _decision(1)), (EVENT, {"type": "click", "decision_id": "d1"})])
    store.append([(DECISION, _decision(2))])
    entries = store.read_log("learner", 10)
    assert [(e.kind, e.record.get("decision_id")) for e in entries] == [
        (DECISION, "d1"),
        (EVENT, "d1"),
        (DECISION, "d2"),
    ]
    assert store.lag("learner") == 3
    store.ack("learner", entries[:2])
    assert [e.record["decision_id"] for e in store.read_log("learner", 10)] == ["d2"]
    assert store.log_count() == 3 and store.log_count(DECISION) == 2 and store.log_count(EVENT) == 1


def test_unacknowledged_entries_are_delivered_again(backend):
    _, _, open_store = backend
    store = open_store()
    store.append([(DECISION, _decision(i)) for i in range(5)])
    first = store.read_log("learner", 3)
    again = store.read_log("learner", 3)
    assert [e.id for e in again] == [e.id for e in first]
    store.ack("learner", first)
    rest = store.read_log("learner", 10)
    assert [e.record["decision_id"] for e in rest] == ["d3", "d4"]


def test_consumers_keep_their_own_positions(backend):
    _, _, open_store = backend
    store = open_store()
    store.append([(DECISION, _decision(i)) for i in range(4)])
    store.ack("a", store.read_log("a", 3))
    assert len(store.read_log("a", 10)) == 1
    assert len(store.read_log("b", 10)) == 4


def test_processed_log_is_what_the_consumer_acknowledged_oldest_first(backend):
    """What a crashed consumer replays: acknowledged entries only, the newest `limit` of them,
    in log order; entries it read and never acknowledged are delivered again instead."""
    _, _, open_store = backend
    store = open_store()
    assert store.processed_log("learner", 10) == []
    store.append([(DECISION, _decision(i)) for i in range(8)])
    read = store.read_log("learner", 6)
    store.ack("learner", read[:4])
    reopened = open_store()  # as after a kill -9: nothing of the old connection survives
    ids = lambda entries: [e.record["decision_id"] for e in entries]  # noqa: E731
    assert ids(reopened.processed_log("learner", 10)) == ["d0", "d1", "d2", "d3"]
    assert ids(reopened.processed_log("learner", 2)) == ["d2", "d3"]
    assert ids(reopened.read_log("learner", 10))[:2] == ["d4", "d5"]
    assert reopened.processed_log("other", 10) == []


def test_claim_once_keeps_the_first_value_until_it_expires(backend):
    name, clock, open_store = backend
    store, other = open_store(), open_store()
    assert store.claim_once("client-decision:d1", "first", ttl_s=60) == ("first", True)
    assert store.claim_once("client-decision:d1", "first", ttl_s=60) == ("first", False)
    assert store.claim_once("client-decision:d1", "second", ttl_s=60) == ("first", False)
    assert store.claim_once("client-decision:d2", "another", ttl_s=60) == ("another", True)
    if name == "redis":  # every origin process shares it; the TTL is the server's
        assert other.claim_once("client-decision:d1", "third", ttl_s=60) == ("first", False)
        assert 0 < other._redis.ttl(other._prefix + "claim:client-decision:d1") <= 60
    else:  # in process, on the injected clock
        clock.advance(60_001)
        assert store.claim_once("client-decision:d1", "later", ttl_s=60) == ("later", True)


def test_log_and_positions_survive_reopening(backend):
    _, _, open_store = backend
    store = open_store()
    store.append([(DECISION, _decision(i)) for i in range(3)])
    store.ack("learner", store.read_log("learner", 2))
    store.close()
    reopened = open_store()
    assert reopened.log_count() == 3
    assert [e.record["decision_id"] for e in reopened.read_log("learner", 10)] == ["d2"]


def test_batches_of_many_entries_commit_whole(backend):
    _, _, open_store = backend
    store = open_store()
    store.append([(EVENT, {"type": "view", "n": i}) for i in range(500)])
    entries = store.read_log("learner", 1000)
    assert [e.record["n"] for e in entries] == list(range(500))


def test_records_come_back_exactly_as_written(backend):
    """Quotes, backslashes, control characters, non-ASCII, a lone surrogate (the stdlib
    encoder's fallback), NaN and shortest-round-trip floats, in one batch and in order."""
    _, _, open_store = backend
    store = open_store()
    records = [
        {"text": 'say "hi" \\ back\\slash', "n": 0.4366352773427504},
        {"text": "tab\tnew\nline\u0000nul", "big": 1e300, "tiny": 5e-324, "neg": -0.0},
        {"text": "Grüße, 東京, 😀", "nested": {"list": [1, "two", None, True]}},
        {"text": "lone \ud800 surrogate", "nan": float("nan")},
    ]
    store.append([(DECISION if i % 2 else EVENT, r) for i, r in enumerate(records)])
    entries = store.read_log("learner", 10)
    assert [e.kind for e in entries] == [EVENT, DECISION, EVENT, DECISION]
    assert [e.record for e in entries[:3]] == records[:3]
    assert repr(entries[1].record["neg"]) == "-0.0"
    assert entries[3].record["text"] == records[3]["text"]
    assert entries[3].record["nan"] != entries[3].record["nan"]  # NaN


def test_models_publish_atomically_newest_first(backend):
    _, _, open_store = backend
    store = open_store()
    assert store.current_model() is None and store.current_model_sha256() is None
    first = StoredModel("v1", "a" * 64, '{"model_version":"v1"}', 1000)
    second = StoredModel("v2", "b" * 64, '{"model_version":"v2"}', 2000)
    store.publish_model(first)
    store.publish_model(second)
    assert store.current_model() == second
    assert store.current_model_sha256() == "b" * 64
    assert store.model_history(10) == [second, first]
    store.close()
    assert open_store().current_model() == second


def test_state_increments_assigns_and_renews(backend):
    _, _, open_store = backend
    store = open_store()
    store.update_state("session:s1", {"pages": 1, "cat:running": 1}, {"last_event": "view"}, 60)
    store.update_state("session:s1", {"pages": 1, "price_sum": 89.5}, {"last_event": "click"}, 60)
    state = store.get_state("session:s1")
    assert float(state["pages"]) == 2 and float(state["cat:running"]) == 1
    assert float(state["price_sum"]) == 89.5 and state["last_event"] == "click"
    assert store.get_state("session:none") == {}


def test_state_expires_after_its_ttl(backend):
    name, clock, open_store = backend
    store = open_store()
    store.update_state("session:short", {"pages": 1}, {}, 1)
    store.update_state("session:long", {"pages": 1}, {}, 3600)
    if name == "sqlite":
        clock.advance(1500)  # in-process sessions expire on the injected clock
        assert store.get_state("session:short") == {}
    else:  # Redis expires keys itself; wait for it, bounded
        deadline = time.monotonic() + 10
        while store.get_state("session:short") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.get_state("session:short") == {}
    assert store.get_state("session:long") != {}


def test_a_checkpoint_is_taken_once(backend):
    _, _, open_store = backend
    store = open_store()
    assert store.take_checkpoint("learner") is None
    store.save_checkpoint("learner", '{"open": [1]}')
    store.save_checkpoint("learner", '{"open": [2]}')
    store.close()
    reopened = open_store()
    assert reopened.take_checkpoint("learner") == '{"open": [2]}'
    assert reopened.take_checkpoint("learner") is None


def test_sqlite_serves_its_own_recent_entries_from_memory_as_the_table_holds_them(tmp_path):
    """Entries this process committed are read back as the records it appended (the learner
    reads each one within a second) until a consumer acknowledges them: the same ids, kinds and
    records another connection reads from the table, across a batch of two INSERT statements,
    another process's entry in between, and a record only the stdlib encoder could write."""
    path = str(tmp_path / "store.db")
    store, other = SqliteStorage(path), SqliteStorage(path)
    first = [(DECISION, _decision(i)) for i in range(300)]
    store.append(first)
    other.append([(EVENT, {"type": "view", "n": 1})])
    fallback, last = {"type": "view", "text": "lone \ud800"}, _decision(300)
    store.append([(EVENT, fallback), (DECISION, last)])
    mine = store.read_log("learner", 1000)
    table = other.read_log("learner", 1000)
    assert [(e.id, e.kind, e.record) for e in mine] == [(e.id, e.kind, e.record) for e in table]
    assert [int(e.id) for e in mine] == list(range(1, 304))
    assert all(e.record is record for e, (_, record) in zip(mine[:300], first, strict=True))
    # From the first entry it did not commit itself on, the rest of the read is the table's.
    assert mine[-2].record is not fallback and mine[-2].record == fallback
    assert mine[-1].record is not last and mine[-1].record == last
    page = store.read_log("paged", 250)  # a count that ends among the recent entries
    store.ack("paged", page)
    assert [e.id for e in page + store.read_log("paged", 1000)] == [e.id for e in table]
    store.ack("learner", mine)  # acknowledged: no longer kept, a late consumer reads the table
    late = store.read_log("dashboard", 1000)
    assert [(e.id, e.record) for e in late] == [(e.id, e.record) for e in table]
    assert late[0].record is not first[0][1]
