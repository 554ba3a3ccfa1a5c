"""Forgery and abuse at the origin: tokens, replays, rate limits, size caps, the admin API.

In process (Starlette TestClient) on a real SQLite file; what was written is read back through
a second connection, so "nothing stored" is checked where it matters.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from model_export.policy import canonical_json, load_model, seal
from origin.app import create_app
from origin.clock import ManualClock
from origin.ratelimit import Bucket, RateLimits, TokenBuckets
from origin.services import ConfigError, Settings
from origin.storage import EVENT, StoredModel
from origin.storage.sqlite import SqliteStorage
from origin.tokens import sign, verify
from origin.validation import Limits

SECRET = b"abuse-test-secret"
ADMIN = "admin-token-for-tests"


def make_settings(tmp_path, clock, **overrides) -> Settings:
    options = dict(
        db=str(tmp_path / "origin.db"),
        token_secret=SECRET,
        clock=clock,
        learner="manual",
        admin_token=ADMIN,
        limits=Limits(max_body_bytes=32 * 1024, max_batch=20, max_slots=2),
    )
    return Settings(**{**options, **overrides})


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def client(tmp_path, clock):
    with TestClient(create_app(make_settings(tmp_path, clock))) as client:
        yield client


def stored_events(tmp_path) -> list[dict]:
    store = SqliteStorage(str(tmp_path / "origin.db"))
    try:
        return [e.record for e in store.read_log("security-reader", 100_000) if e.kind == EVENT]
    finally:
        store.close()


def decide(client, visitor="v1") -> dict:
    response = client.post(
        "/v1/decide", json={"slots": ["hero"], "context": {}, "visitor_id": visitor}
    )
    assert response.status_code == 200, response.text
    return response.json()["decisions"][0]


def click(client, token, **headers):
    return client.post(
        "/v1/events", json={"events": [{"type": "click", "token": token}]}, headers=headers
    )


# --- forged, expired and replayed tokens ----------------------------------------------------------


def test_forged_tokens_are_refused_and_nothing_is_stored(client, tmp_path, clock):
    decision = decide(client)
    payload, signature = decision["token"].split(".")
    other_variant = next(
        v for v in client.app.state.origin.site.slots["hero"].variants if v != decision["variant"]
    )
    forgeries = {
        "other secret": sign(b"guessed-secret", decision, clock.now_ms()),
        "payload swapped": sign(
            SECRET, {**decision, "variant": other_variant}, clock.now_ms()
        ).split(".")[0]
        + "."
        + signature,
        "signature of another decision": payload
        + "."
        + decide(client, "v2")["token"].split(".")[1],
        "unsigned": payload + ".",
        "alg none style": payload,
        "empty": "",
        "not a string": 12345,
    }
    for name, token in forgeries.items():
        response = click(client, token)
        assert response.status_code in (400, 401, 403), (name, response.status_code, response.text)
    assert stored_events(tmp_path) == []
    assert click(client, decision["token"]).status_code == 202  # the real one still works


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(0, 10**6), replacement=st.characters(codec="ascii"))
def test_a_token_with_any_byte_changed_is_refused(client, position, replacement):
    token = decide(client)["token"]
    index = position % len(token)
    assume(replacement != token[index])
    tampered = token[:index] + replacement + token[index + 1 :]
    response = click(client, tampered)
    assert response.status_code in (400, 401, 403), (tampered, response.text)


def test_expired_tokens_are_refused_at_the_window_edge(client, clock, tmp_path):
    settings_ = client.app.state.origin.settings
    fresh, stale = decide(client)["token"], decide(client)["token"]
    clock.advance(settings_.token_max_age_ms)
    assert click(client, fresh).status_code == 202  # exactly at the edge: still inside
    clock.advance(1)
    response = click(client, stale)
    assert response.status_code == 403 and "expired" in response.json()["error"]
    assert len(stored_events(tmp_path)) == 1


def test_a_replayed_click_is_never_rewarded_twice(tmp_path, clock):
    """Same token clicked again, in the same learner run and after a learner restart."""
    settings_ = make_settings(tmp_path, clock)
    with TestClient(create_app(settings_)) as client:
        decision = decide(client)
        for _ in range(3):
            assert click(client, decision["token"]).status_code == 202
        learning = client.app.state.origin.learning
        learning.step()
        assert learning.joiner.counts["rewards"] == 1
        assert learning.joiner.counts["closed"] == 2  # the replays, seen and not counted
        assert learning.examples == 1
    with TestClient(create_app(settings_)) as client:  # a restarted origin, same log
        assert click(client, decision["token"]).status_code == 202
        learning = client.app.state.origin.learning
        learning.step()
        assert learning.joiner.counts["rewards"] == 0 and learning.examples == 0


def test_edge_decision_tokens_must_match_the_logged_decision(client, clock):
    origin = client.app.state.origin
    decision = decide(client)
    record = {
        k: decision[k] for k in ("decision_id", "slot", "variant", "propensity", "model_version")
    }
    record.update(visitor_id="v1", context={}, ts_ms=clock.now_ms(), token=decision["token"])
    other = next(v for v in origin.site.slots["hero"].variants if v != decision["variant"])
    response = client.post("/v1/decisions", json={"decisions": [{**record, "variant": other}]})
    assert response.status_code == 403 and "does not match" in response.json()["error"]


# --- rate limits ----------------------------------------------------------------------------------


def limited_client(tmp_path, clock, per_ip=None, per_visitor=None):
    limits = RateLimits(per_ip=per_ip, per_visitor=per_visitor)
    return TestClient(create_app(make_settings(tmp_path, clock, rate_limits=limits)))


def test_per_ip_limit_answers_429_with_retry_after(tmp_path, clock):
    with limited_client(tmp_path, clock, per_ip=Bucket(rate=0.25, burst=4)) as client:
        token = decide(client)["token"]  # 1 of 4
        assert click(client, token).status_code == 202  # 2
        assert client.post("/v1/decide", json={"slots": ["hero"]}).status_code == 200  # 3
        assert click(client, token).status_code == 202  # 4
        for path, body in (
            ("/v1/events", {"events": [{"type": "click", "token": token}]}),
            ("/v1/decide", {"slots": ["hero"]}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 429, path
            assert response.json()["reason"] == "rate_limited"
            assert 1 <= int(response.headers["retry-after"]) <= 4
        # Reading the model, health and metrics are not limited.
        assert client.get("/v1/model").status_code == 200
        assert 'fp_events_rejected_total{reason="rate_limited_ip"} 2' in client.get("/metrics").text
    assert len(stored_events(tmp_path)) == 2


def test_per_visitor_limit_keeps_other_visitors_served(tmp_path, clock):
    with limited_client(tmp_path, clock, per_visitor=Bucket(rate=0.01, burst=3)) as client:
        body = {"slots": ["hero"]}
        for _ in range(3):
            assert (
                client.post(
                    "/v1/decide", json=body, headers={"cookie": "fp_vid=greedy"}
                ).status_code
                == 200
            )
        assert (
            client.post("/v1/decide", json=body, headers={"cookie": "fp_vid=greedy"}).status_code
            == 429
        )
        assert (
            client.post("/v1/decide", json=body, headers={"cookie": "fp_vid=patient"}).status_code
            == 200
        )
        assert (
            client.post(
                "/v1/decide", json=body, headers={"cookie": "fp_sid=s; fp_vid=greedy"}
            ).status_code
            == 429
        )


def test_buckets_refill_and_stay_bounded():
    now = [0.0]
    buckets = TokenBuckets(Bucket(rate=2, burst=2), max_keys=100, now=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0.5]
    now[0] = 0.5
    assert buckets.take("a") == 0  # one token back after 1/rate seconds
    for i in range(1000):
        buckets.take(f"flood-{i}")
    assert len(buckets._levels) == 100


def test_limits_are_on_by_default_in_production_settings():
    env = {"FP_TOKEN_SECRET": "s", "FP_DB": "x.db"}
    limits = Settings.from_env(env).rate_limits
    assert limits.per_ip is not None and limits.per_visitor is not None
    assert Settings.from_env({**env, "FP_RATE_LIMIT": "off"}).rate_limits.per_ip is None
    assert Settings.from_env({**env, "FP_RATE_LIMIT_IP": "5:10"}).rate_limits.per_ip == Bucket(
        5, 10
    )
    with pytest.raises(ConfigError, match="FP_RATE_LIMIT_IP must be RATE:BURST"):
        Settings.from_env({**env, "FP_RATE_LIMIT_IP": "fast"})


# --- payload and batch caps -----------------------------------------------------------------------


def test_size_caps_answer_413_and_store_nothing(client, tmp_path):
    token = decide(client)["token"]
    cap = client.app.state.origin.limits.max_body_bytes

    def chunks():  # no Content-Length: the cap is enforced while the body streams in
        yield b'{"events": [{"type": "click", "token": "' + token.encode() + b'", "pad": "'
        for _ in range(cap // 1024 + 1):
            yield b"x" * 1024
        yield b'"}]}'

    cases = {
        "declared": client.post(
            "/v1/events",
            content=b"{" + b" " * cap + b"}",
            headers={"content-type": "application/json"},
        ),
        "streamed": client.post(
            "/v1/events", content=chunks(), headers={"content-type": "application/json"}
        ),
        "batch": client.post(
            "/v1/events", json={"events": [{"type": "click", "token": token}] * 21}
        ),
        "slots": client.post("/v1/decide", json={"slots": ["hero", "promo", "hero"]}),
        "context": client.post(
            "/v1/decide", json={"slots": ["hero"], "context": {"url": "/" + "a" * 9000}}
        ),
    }
    for name, response in cases.items():
        assert response.status_code == 413, (name, response.text)
        assert response.json()["reason"] == "too_large", name
    assert stored_events(tmp_path) == []


# --- the admin API --------------------------------------------------------------------------------


ADMIN_CALLS = [
    ("GET", "/admin/models"),
    ("POST", "/admin/models"),
    ("POST", "/admin/rollback"),
    ("POST", "/admin/promote"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
def test_admin_endpoints_need_the_bearer_token(client, method, path):
    before = client.app.state.origin.holder.version
    missing = client.request(method, path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    for header in ("Bearer wrong-token", f"Basic {ADMIN}", f"Bearer {ADMIN}x", "Bearer "):
        response = client.request(method, path, headers={"authorization": header})
        assert response.status_code in (401, 403), header
    assert client.app.state.origin.holder.version == before
    assert (
        client.get("/admin/models", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
    )


def test_admin_is_closed_when_no_token_is_configured(tmp_path, clock):
    with TestClient(create_app(make_settings(tmp_path, clock, admin_token=None))) as client:
        response = client.get("/admin/models", headers={"authorization": "Bearer anything"})
        assert (
            response.status_code == 403 and "FP_ADMIN_TOKEN is not set" in response.json()["error"]
        )


def test_admin_publish_checks_the_model_and_keeps_the_current_one_on_failure(client, clock):
    origin = client.app.state.origin
    auth = {"authorization": f"Bearer {ADMIN}"}
    current = origin.holder.model
    corrupt = json.loads(canonical_json(current))
    corrupt["slots"]["hero"]["bias"][corrupt["slots"]["hero"]["default"]] = 9.0  # sha256 now wrong
    response = client.post("/admin/models", content=json.dumps(corrupt), headers=auth)
    assert response.status_code == 422 and "sha256" in response.json()["error"]
    assert origin.holder.version == current["model_version"]
    assert client.get("/v1/model").headers["etag"] == f'"{current["sha256"]}"'

    renamed = seal({**corrupt, "model_version": "20261125T230000Z-deadbeef"})
    response = client.post("/admin/models", content=json.dumps(renamed), headers=auth)
    assert response.status_code == 201
    assert (
        load_model(client.get("/v1/model").content)["model_version"] == "20261125T230000Z-deadbeef"
    )


def test_a_corrupt_model_in_storage_is_not_served(client, clock):
    """Another process publishes a model whose body does not match its sha256: it is refused."""
    origin = client.app.state.origin
    served = client.get("/v1/model")
    body = json.loads(canonical_json(origin.holder.model))
    body["slots"]["hero"]["bias"] = {v: 5.0 for v in body["slots"]["hero"]["variants"]}
    bad = StoredModel(
        "20261125T235959Z-badbad00", body["sha256"][::-1], json.dumps(body), clock.now_ms()
    )
    origin.storage.publish_model(bad)
    with pytest.raises(Exception, match="sha256"):
        origin.holder.refresh()
    again = client.get("/v1/model")
    assert again.status_code == 200 and again.content == served.content
    assert verify(SECRET, decide(client)["token"]).model_version == origin.holder.version
