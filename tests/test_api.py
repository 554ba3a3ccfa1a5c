"""The origin's HTTP contract, in process (Starlette TestClient) on a real SQLite file."""

from __future__ import annotations

import json
import uuid

import pytest
from starlette.testclient import TestClient

from model_export.policy import decide, load_model, model_sha256
from origin.app import create_app
from origin.clock import ManualClock
from origin.services import ConfigError, Settings
from origin.storage import DECISION, EVENT, StorageError
from origin.storage.sqlite import SqliteStorage
from origin.tokens import sign, verify
from origin.validation import Limits

SECRET = b"api-test-secret"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def settings(tmp_path, clock):
    return Settings(
        db=str(tmp_path / "origin.db"),
        token_secret=SECRET,
        clock=clock,
        learner="manual",
        limits=Limits(max_body_bytes=64 * 1024, max_batch=50),
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def origin_of(client):
    return client.app.state.origin


def logged(settings, kind=None):
    """What a separate connection finds committed in the log."""
    store = SqliteStorage(settings.db)
    try:
        return [e.record for e in store.read_log("test-reader", 10_000) if kind in (None, e.kind)]
    finally:
        store.close()


def decide_one(client, slot="hero", **body):
    response = client.post("/v1/decide", json={"slots": [slot], "context": {}, **body})
    assert response.status_code == 200, response.text
    return response.json()["decisions"][0]


def test_decide_returns_signed_decisions_with_site_html(client):
    response = client.post(
        "/v1/decide",
        json={
            "slots": ["hero", "promo"],
            "context": {"url": "/running?utm_source=google"},
            "session_id": "s1",
            "visitor_id": "v1",
        },
    )
    assert response.status_code == 200
    origin = origin_of(client)
    for decision in response.json()["decisions"]:
        claims = verify(SECRET, decision["token"])
        assert (claims.decision_id, claims.slot, claims.variant) == (
            decision["decision_id"],
            decision["slot"],
            decision["variant"],
        )
        assert decision["html"] == origin.site.slots[decision["slot"]].variants[decision["variant"]]
        assert decision["model_version"] == origin.holder.version
        assert 0 < decision["propensity"] <= 1


def test_decisions_made_by_decide_are_logged(client, settings):
    decision = decide_one(client, visitor_id="v9")
    client.post("/v1/events", json={"events": [{"type": "click", "token": decision["token"]}]})
    records = logged(settings, DECISION)
    assert [r["decision_id"] for r in records] == [decision["decision_id"]]
    assert records[0]["visitor_id"] == "v9" and records[0]["propensity"] == decision["propensity"]


def test_decision_ids_are_distinct_random_uuid4s(client):
    """Ids come from os.urandom in batches of 256: 300 decisions cross a refill."""
    ids = [
        d["decision_id"]
        for _ in range(150)
        for d in client.post("/v1/decide", json={"slots": ["hero", "promo"]}).json()["decisions"]
    ]
    assert len(set(ids)) == len(ids) == 300
    for decision_id in ids:
        parsed = uuid.UUID(hex=decision_id)
        assert parsed.hex == decision_id and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_events_are_committed_before_202(client, settings):
    token = decide_one(client)["token"]
    events = [
        {"type": "impression", "token": token, "ts_ms": 1},
        {"type": "click", "token": token},
        {"type": "conversion", "token": token, "value": 49.9, "session_id": "s1"},
        {
            "type": "view",
            "session_id": "s1",
            "category": "running",
            "price": 89.0,
            "path": "/running/x",
        },
    ]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 202 and response.json() == {"accepted": 4}
    stored = logged(settings, EVENT)
    assert [e["type"] for e in stored] == ["impression", "click", "conversion", "view"]
    assert (
        stored[2]["value"] == 49.9 and stored[2]["decision_id"] == verify(SECRET, token).decision_id
    )
    assert stored[3]["category"] == "running"


def test_send_beacon_text_plain_bodies_are_accepted(client):
    token = decide_one(client)["token"]
    body = json.dumps({"events": [{"type": "click", "token": token}]})
    response = client.post(
        "/v1/events", content=body, headers={"content-type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 202


def test_wrong_content_type_is_415(client):
    response = client.post(
        "/v1/events",
        content=b"events=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([{"type": "view", "session_id": "s"}, {"type": "click"}], "events[1].token: missing"),
        ([{"token": "x"}], "events[0].type: missing"),
        ([{"type": "purchase"}], "events[0].type: must be one of"),
        ([{"type": "view"}], "events[0].session_id: missing"),
        (
            [{"type": "view", "session_id": "s", "price": "cheap"}],
            "events[0].price: must be a finite number",
        ),
        (
            [{"type": "view", "session_id": "s", "price": -5}],
            "events[0].price: must not be negative",
        ),
        ([{"type": "view", "session_id": 7}], "events[0].session_id: must be a string"),
        ([], "events: empty"),
        ("nope", "events: must be a list"),
    ],
)
def test_bad_events_are_400_naming_the_field(client, events, message):
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_a_bad_event_rejects_the_whole_batch(client, settings):
    token = decide_one(client)["token"]
    response = client.post(
        "/v1/events", json={"events": [{"type": "click", "token": token}, {"type": "click"}]}
    )
    assert response.status_code == 400
    assert logged(settings, EVENT) == []


def test_invalid_json_is_400(client):
    response = client.post(
        "/v1/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


def test_oversized_batches_and_bodies_are_413(client):
    token = decide_one(client)["token"]
    too_many = {"events": [{"type": "click", "token": token}] * 51}
    assert client.post("/v1/events", json=too_many).status_code == 413
    huge = {"events": [{"type": "view", "session_id": "s", "path": "x" * 2000}] * 40}
    response = client.post("/v1/events", json=huge)
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_unreadable_tokens_are_401_and_forged_ones_403(client):
    decision = decide_one(client)
    forged = sign(b"someone-else", decision, 1)
    payload, signature = decision["token"].split(".")
    tampered = sign(SECRET, {**decision, "variant": "sale"}, 1).split(".")[0] + "." + signature
    cases = [("garbage", 401), ("a.b.c", 401), ("!!!.???", 401), (forged, 403), (tampered, 403)]
    for token, status in cases:
        response = client.post("/v1/events", json={"events": [{"type": "click", "token": token}]})
        assert response.status_code == status, (token, response.text)
        assert response.json()["error"].startswith("events[0].token:")


def test_expired_tokens_are_403(client, clock, settings):
    token = decide_one(client)["token"]
    clock.advance(settings.token_max_age_ms + 1)
    response = client.post("/v1/events", json={"events": [{"type": "click", "token": token}]})
    assert response.status_code == 403 and "expired" in response.json()["error"]


def edge_decision(origin, clock, **overrides):
    model = origin.holder.model
    decision = decide(model, {"url": "/camping"}, "hero", "v1", "edge-1").to_dict()
    record = {
        "decision_id": decision["decision_id"],
        "slot": "hero",
        "variant": decision["variant"],
        "propensity": decision["propensity"],
        "model_version": decision["model_version"],
        "visitor_id": "v1",
        "context": {"url": "/camping"},
        "ts_ms": clock.now_ms(),
        "holdout": False,
    }
    record["token"] = sign(SECRET, record, clock.now_ms())
    return {**record, **overrides}


def test_edge_decisions_are_committed_with_a_matching_token(client, clock, settings):
    record = edge_decision(origin_of(client), clock)
    response = client.post("/v1/decisions", json={"decisions": [record]})
    assert response.status_code == 202
    assert [r["decision_id"] for r in logged(settings, DECISION)] == ["edge-1"]


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"propensity": 0}, 400, "decisions[0].propensity: must be in (0, 1]"),
        ({"slot": "footer"}, 400, "decisions[0].slot: unknown slot"),
        ({"variant": "nope"}, 400, "decisions[0].variant: not a variant"),
        ({"decision_id": None}, 400, "decisions[0].decision_id: missing"),
        ({"context": []}, 400, "decisions[0].context: must be an object"),
        ({"token": None}, 400, "decisions[0].token: missing"),
        ({"decision_id": "another"}, 403, "decisions[0].token: does not match"),
    ],
)
def test_bad_edge_decisions(client, clock, overrides, status, message):
    record = edge_decision(origin_of(client), clock, **overrides)
    response = client.post("/v1/decisions", json={"decisions": [record]})
    assert response.status_code == status
    assert response.json()["error"].startswith(message)


def test_bad_decide_requests_name_the_field(client):
    cases = [
        ({}, "slots: missing"),
        ({"slots": ["footer"]}, "slots[0]: unknown slot"),
        ({"slots": ["hero"], "context": 3}, "context: must be an object"),
        ({"slots": ["hero"], "session_id": 5}, "session_id: must be a string"),
    ]
    for body, message in cases:
        response = client.post("/v1/decide", json=body)
        assert response.status_code == 400 and response.json()["error"].startswith(message)


def test_client_decisions_are_rechecked_then_signed(client, settings):
    origin = origin_of(client)
    made = decide(origin.holder.model, {"url": "/hiking"}, "hero", "v2", "client-1").to_dict()
    honest = {k: made[k] for k in ("decision_id", "slot", "variant", "propensity", "model_version")}
    honest.update(visitor_id="v2", context={"url": "/hiking"}, ts_ms=1)
    other = next(v for v in origin.site.slots["hero"].variants if v != made["variant"])
    lying = {**honest, "decision_id": "client-2", "variant": other}
    stale = {**honest, "decision_id": "client-3", "model_version": "19990101T000000Z-00000000"}
    response = client.post("/v1/decisions/client", json={"decisions": [honest, lying, stale]})
    assert response.status_code == 200
    body = response.json()
    assert list(body["tokens"]) == ["client-1"]
    assert verify(SECRET, body["tokens"]["client-1"]).variant == made["variant"]
    assert set(body["rejected"]) == {"client-2", "client-3"}
    assert [r["decision_id"] for r in logged(settings, DECISION)] == ["client-1"]


def test_client_decision_sent_again_with_held_events_is_logged_once(client, settings):
    """The pagehide beacon repeats a decision whose token request was in flight, with the
    events that waited for its token: same token, one decision logged, the events recorded."""
    origin = origin_of(client)
    made = decide(origin.holder.model, {"url": "/camping"}, "hero", "v3", "client-9").to_dict()
    record = {k: made[k] for k in ("decision_id", "slot", "variant", "propensity", "model_version")}
    record.update(visitor_id="v3", context={"url": "/camping"}, ts_ms=1)
    first = client.post("/v1/decisions/client", json={"decisions": [record]}).json()
    held = [
        {"decision_id": "client-9", "type": "impression", "ts_ms": 2, "session_id": "s9"},
        {"decision_id": "client-9", "type": "click", "ts_ms": 3, "session_id": "s9"},
        {"decision_id": "never-sent", "type": "click", "ts_ms": 3},
    ]
    body = json.dumps({"decisions": [record], "events": held})
    again = client.post(
        "/v1/decisions/client", content=body, headers={"content-type": "text/plain"}
    )  # as navigator.sendBeacon sends it
    assert again.status_code == 200
    assert again.json()["tokens"] == first["tokens"]
    assert again.json()["events_accepted"] == 2
    assert [r["decision_id"] for r in logged(settings, DECISION)] == ["client-9"]
    events = logged(settings, EVENT)
    assert [(e["type"], e["decision_id"], e["variant"]) for e in events] == [
        ("impression", "client-9", made["variant"]),
        ("click", "client-9", made["variant"]),
    ]


def test_a_client_decision_reusing_a_known_id_gets_no_token(client, settings):
    """Another visitor's decision under an id already signed (a valid decision in itself) is
    refused: answering with the claim's token would hand out the first decision's token."""
    origin = origin_of(client)
    records = []
    for visitor, url in (("v5", "/camping"), ("v6", "/hiking")):
        made = decide(origin.holder.model, {"url": url}, "hero", visitor, "client-11").to_dict()
        record = {k: made[k] for k in ("decision_id", "slot", "variant", "propensity")}
        record.update(model_version=made["model_version"], visitor_id=visitor, ts_ms=1)
        records.append({**record, "context": {"url": url}})
    first = client.post("/v1/decisions/client", json={"decisions": records[:1]}).json()
    held = [{"decision_id": "client-11", "type": "click", "ts_ms": 2}]
    second = client.post("/v1/decisions/client", json={"decisions": records[1:], "events": held})
    assert second.status_code == 200
    assert list(first["tokens"]) == ["client-11"]
    assert second.json() == {
        "tokens": {},
        "rejected": {"client-11": "duplicate decision_id: another decision has it"},
        "events_accepted": 0,
    }
    assert [r["visitor_id"] for r in logged(settings, DECISION)] == ["v5"]
    assert logged(settings, EVENT) == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "click"}, "events[0].decision_id: missing"),
        ({"decision_id": "d", "type": "view"}, "events[0].type: must be one of"),
        ({"decision_id": "d", "type": "conversion", "value": -1}, "events[0].value"),
    ],
)
def test_held_events_are_validated_and_named(client, event, message):
    origin = origin_of(client)
    made = decide(origin.holder.model, {}, "hero", "v4", "client-10").to_dict()
    record = {k: made[k] for k in ("decision_id", "slot", "variant", "propensity", "model_version")}
    record.update(visitor_id="v4", context={}, ts_ms=1)
    response = client.post("/v1/decisions/client", json={"decisions": [record], "events": [event]})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_model_is_served_with_etag_and_304(client):
    response = client.get("/v1/model")
    model = load_model(response.content)
    assert response.headers["etag"] == f'"{model["sha256"]}"'
    assert model["model_version"] == origin_of(client).holder.version
    again = client.get("/v1/model", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = client.get("/v1/model", headers={"If-None-Match": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200
    etag = response.headers["etag"]
    for listed in (f'"{"0" * 64}", {etag}', f"W/{etag}", "*"):  # RFC 9110: lists, weak, any
        assert client.get("/v1/model", headers={"If-None-Match": listed}).status_code == 304


def test_model_for_one_slot_is_a_valid_model_of_its_own(client):
    response = client.get("/v1/model", params={"slot": "promo"})
    model = load_model(response.content)
    assert list(model["slots"]) == ["promo"]
    assert response.headers["etag"] == f'"{model_sha256(model)}"'
    assert client.get("/v1/model", params={"slot": "footer"}).status_code == 404


def test_model_js_is_immutable_only_for_the_current_version(client):
    sha8 = origin_of(client).holder.model["sha256"][:8]
    current = client.get(f"/fp/model.js?v={sha8}")
    assert current.headers["content-type"].startswith("text/javascript")
    assert "immutable" in current.headers["cache-control"]
    assert current.text.startswith('window.firstpaintModel={"model":{')
    assert client.get("/fp/model.js?v=00000000").headers["cache-control"] == "no-cache"


def test_decide_answers_like_every_other_endpoint(client, monkeypatch):
    """POST /v1/decide is a bare ASGI endpoint ahead of the router: same checks, same answers."""
    ok = client.post(
        "/v1/decide", content=b'{"slots":["hero"]}', headers={"content-type": "text/plain"}
    )
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert int(ok.headers["content-length"]) == len(ok.content)
    assert client.get("/v1/decide").status_code == 405
    wrong_type = client.post("/v1/decide", content=b"slots=hero", headers={"content-type": "x/y"})
    assert wrong_type.status_code == 415 and wrong_type.json()["reason"] == "content_type"
    not_json = client.post("/v1/decide", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    padding = " " * (64 * 1024)
    declared = client.post("/v1/decide", json={"slots": ["hero"], "pad": padding})
    assert declared.status_code == 413 and "limit" in declared.json()["error"]
    chunks = iter([b'{"slots":["hero"],"pad":"', padding.encode(), b'"}'])  # no content-length
    streamed = client.post(
        "/v1/decide", content=chunks, headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "exceeds the limit" in streamed.json()["error"]
    metrics = origin_of(client).metrics
    assert metrics.rejected.value(reason="too_large") == 2
    assert metrics.rejected.value(reason="content_type") == 1

    def down(*args):
        raise StorageError("session store down (simulated)")

    monkeypatch.setattr(origin_of(client).sessions, "enrich", down)
    failed = client.post("/v1/decide", json={"slots": ["hero"]})
    assert failed.status_code == 503 and "session store down" in failed.json()["error"]


def test_storage_failure_is_503_and_nothing_is_acknowledged(client, monkeypatch):
    token = decide_one(client)["token"]
    origin = origin_of(client)

    def fail(entries):
        raise StorageError("disk full (simulated)")

    monkeypatch.setattr(origin.storage, "append", fail)
    response = client.post("/v1/events", json={"events": [{"type": "click", "token": token}]})
    assert response.status_code == 503 and "disk full" in response.json()["error"]


def test_healthz_and_metrics(client):
    assert client.get("/healthz").json()["ok"] is True
    client.post("/v1/events", json={"events": [{"type": "click"}]})
    decide_one(client)
    text = client.get("/metrics").text
    assert 'fp_events_rejected_total{reason="invalid"} 1' in text
    assert "fp_decide_latency_seconds_count 1" in text
    assert f'fp_model_info{{version="{origin_of(client).holder.version}"}} 1' in text
    for name in ("fp_model_age_seconds", "fp_learner_lag_entries", "fp_events_accepted_total"):
        assert f"# TYPE {name}" in text


def test_settings_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="FP_TOKEN_SECRET"):
        Settings(db=str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="exactly one storage"):
        Settings(token_secret=b"s")
    settings = Settings.from_env({"FP_TOKEN_SECRET": "s", "FP_DB": "a.db"}, db="b.db")
    assert settings.db == "b.db" and "s" not in repr(settings).split("token_secret")[0][-3:]
    assert "token_secret" not in repr(settings)
