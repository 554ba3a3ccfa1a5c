"""Every origin endpoint under hypothesis, and schemathesis against `/openapi.json`.

In process (Starlette TestClient over the ASGI app, one origin on a real SQLite file for the
module). Whatever arrives — any JSON shape, raw bytes, any content type, hostile headers and
cookies — the origin answers with a documented status (never a 5xx), errors are JSON naming the
problem, and nothing that failed validation reaches the log: every stored reward event carries
the decision id of a token this origin really issued. The number of inputs tried is printed
and written to `build/test-artifacts/fuzz_origin.json`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
from collections import Counter
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks as sc

from origin.app import create_app
from origin.clock import ManualClock
from origin.services import Settings
from origin.storage import DECISION, EVENT
from origin.storage.sqlite import SqliteStorage
from origin.tokens import verify
from origin.validation import Limits
from tests.conftest import ROOT

SECRET = b"fuzz-test-secret"
ADMIN = "fuzz-admin-token"
TRIED: Counter[str] = Counter()
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
ISSUED: set[str] = set()  # decision ids of the tokens this origin signed


class AsgiClient:
    """A synchronous client driving the app on its own event loop in this thread.

    Starlette's TestClient hops to a portal thread for every request (~10 ms here under load);
    this costs a few ms, which is what lets the fuzzers try thousands of inputs in `make test`.
    The app's lifespan runs, so writes go through the real group committer.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self._lifespan = app.router.lifespan_context(app)
        self.loop.run_until_complete(self._lifespan.__aenter__())

    def request(self, method: str, url: str, **options) -> httpx.Response:
        return self.loop.run_until_complete(self._client.request(method, url, **options))

    def get(self, url: str, **options) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options) -> httpx.Response:
        return self.request("POST", url, **options)

    def close(self) -> None:
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.run_until_complete(self._client.aclose())
        self.loop.close()


def fuzz_app():
    """An origin on a fresh SQLite file. Durability is tested elsewhere (test_faults_*): here
    the file is on tmpfs when there is one, so that fsyncs keep each input cheap."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = tempfile.mkdtemp(prefix="fp-fuzz-", dir=base)
    settings_ = Settings(
        db=os.path.join(directory, "origin.db"),
        token_secret=SECRET,
        clock=ManualClock(),
        learner="manual",
        admin_token=ADMIN,
        limits=Limits(max_body_bytes=16 * 1024, max_batch=20),
    )
    return create_app(settings_), directory


@pytest.fixture(scope="module")
def app():
    app, directory = fuzz_app()
    yield app
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def client(app):
    client = AsgiClient(app)
    yield client
    client.close()


@pytest.fixture(scope="module")
def tokens(client):
    """A few real tokens, so generated batches can mix valid and invalid events."""
    response = client.post(
        "/v1/decide", json={"slots": ["hero", "promo"], "context": {}, "visitor_id": "fuzz"}
    )
    decisions = response.json()["decisions"]
    ISSUED.update(d["decision_id"] for d in decisions)
    return [d["token"] for d in decisions]


# --- strategies -----------------------------------------------------------------------------------

text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "hero",
            "promo",
            "click",
            "view",
            "impression",
            "conversion",
            "",
            "\x00",
            "<script>",
            "%zz",
        ]
    ),
)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


def objects(keys: list[str], extra=None):
    """Dicts whose keys are mostly the endpoint's own, with any values."""
    return st.dictionaries(
        st.sampled_from(keys) | text,
        scalars | (st.nothing() if extra is None else extra) | json_values,
        max_size=len(keys) + 2,
    )


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "text/plain;charset=UTF-8",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "text/html",
    ]
)


def bodies(shaped):
    """(bytes, content type): shaped JSON, any JSON, or raw bytes."""
    as_json = st.one_of(shaped, json_values).map(lambda v: json.dumps(v, allow_nan=True).encode())
    return st.tuples(st.one_of(as_json, st.binary(max_size=200)), CONTENT_TYPES)


def event_items(tokens):
    keys = [
        "type",
        "token",
        "ts_ms",
        "session_id",
        "value",
        "category",
        "price",
        "path",
        "visitor_id",
    ]
    nearly_valid = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["impression", "click", "conversion"]),
            "token": st.sampled_from(tokens),
        },
        optional={"ts_ms": scalars, "value": scalars, "session_id": scalars},
    )
    return st.one_of(nearly_valid, objects(keys, st.sampled_from(tokens)))


def decision_items(tokens):
    keys = [
        "decision_id",
        "slot",
        "variant",
        "propensity",
        "model_version",
        "visitor_id",
        "context",
        "ts_ms",
        "holdout",
        "token",
    ]
    return objects(keys, st.sampled_from(tokens))


def header(value: str) -> bytes:
    """Any text as a header value a client can send (UTF-8 bytes, no line breaks)."""
    return value.encode("utf-8", "surrogatepass").replace(b"\r", b" ").replace(b"\n", b" ")


def check(response, allowed: set[int], name: str) -> None:
    TRIED[name] += 1
    assert response.status_code in allowed, (name, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str) and response.json()["error"]


# --- hypothesis, endpoint by endpoint -------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_post_events(client, tokens, data):
    items = st.lists(event_items(tokens), max_size=5)
    body, content_type = data.draw(bodies(st.fixed_dictionaries({"events": items})))
    response = client.post("/v1/events", content=body, headers={"content-type": content_type})
    check(response, {202, 400, 401, 403, 413, 415}, "POST /v1/events")
    if response.status_code == 202:
        assert response.json()["accepted"] == len(json.loads(body)["events"])


@FUZZ
@given(data=st.data())
def test_fuzz_post_decisions(client, tokens, data):
    items = st.lists(decision_items(tokens), max_size=5)
    body, content_type = data.draw(bodies(st.fixed_dictionaries({"decisions": items})))
    response = client.post("/v1/decisions", content=body, headers={"content-type": content_type})
    check(response, {202, 400, 401, 403, 413, 415}, "POST /v1/decisions")


@FUZZ
@given(data=st.data())
def test_fuzz_post_client_decisions(client, tokens, data):
    items = st.lists(decision_items(tokens), max_size=5)
    body, content_type = data.draw(bodies(st.fixed_dictionaries({"decisions": items})))
    response = client.post(
        "/v1/decisions/client", content=body, headers={"content-type": content_type}
    )
    check(response, {200, 400, 413, 415}, "POST /v1/decisions/client")
    if response.status_code == 200:
        for token in response.json()["tokens"].values():
            ISSUED.add(verify(SECRET, token).decision_id)  # re-checked by the policy, then signed


@FUZZ
@given(data=st.data())
def test_fuzz_post_decide(client, data):
    shaped = objects(["slots", "context", "session_id", "visitor_id"], st.lists(text, max_size=10))
    body, content_type = data.draw(bodies(shaped))
    response = client.post("/v1/decide", content=body, headers={"content-type": content_type})
    check(response, {200, 400, 413, 415}, "POST /v1/decide")
    if response.status_code == 200:
        for decision in response.json()["decisions"]:
            if "token" in decision:
                ISSUED.add(verify(SECRET, decision["token"]).decision_id)


@FUZZ
@given(
    query=st.lists(st.tuples(st.sampled_from(["slot", "v", "x"]), text), max_size=3),
    etag=st.one_of(st.none(), text),
)
def test_fuzz_get_model_and_script(client, query, etag):
    headers = {} if etag is None else {"if-none-match": header(etag)}
    built = (ROOT / "browser" / "dist" / "snippet.js").exists()
    script = {200, 304} if built else {404}
    paths = (
        ("/v1/model", {200, 304, 404}),
        ("/fp/model.js", {200, 304}),
        ("/fp/firstpaint.js", script),
    )
    for path, allowed in paths:
        response = client.get(path, params=query, headers=headers)
        check(response, allowed, "GET " + path)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    auth=st.one_of(st.none(), text, st.just(f"Bearer {ADMIN}"), text.map(lambda t: "Bearer " + t)),
    body=bodies(objects(["to", "format", "slots", "sha256"])),
)
def test_fuzz_admin(client, auth, body):
    headers = {"content-type": body[1]}
    if auth is not None:
        headers["authorization"] = header(auth)
    version = client.app.state.origin.holder.version
    for method, path in (
        ("GET", "/admin/models"),
        ("POST", "/admin/models"),
        ("POST", "/admin/rollback"),
        ("POST", "/admin/promote"),
    ):
        response = client.request(method, path, content=body[0], headers=headers)
        check(response, {200, 201, 400, 401, 403, 404, 409, 413, 422}, f"{method} {path}")
        if response.status_code in (401, 403):
            assert client.app.state.origin.holder.version == version


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        ["/", "/running", "/camping", "/product/", "/nope", "/healthz", "/metrics", "/openapi.json"]
    ),
    suffix=st.one_of(
        st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?%"),
            max_size=20,
        ),
        st.binary(max_size=20).map(lambda b: quote(b, safe="")),
    ),
    cookie=text,
    language=text,
    referer=text,
)
def test_fuzz_pages_and_probes(client, path, suffix, cookie, language, referer):
    headers = {
        "cookie": header(cookie),
        "accept-language": header(language),
        "referer": header(referer),
    }
    response = client.get(path + (suffix if path.endswith("/") else ""), headers=headers)
    TRIED["GET pages"] += 1
    assert response.status_code < 500, (path, suffix, response.text[:300])


def test_nothing_unvalidated_reached_the_log(app, client):
    """Run after the fuzzers: every reward event stored names a decision this origin signed."""
    store = SqliteStorage(app.state.origin.settings.db)
    try:
        entries = store.read_log("fuzz-audit", 1_000_000)
    finally:
        store.close()
    rewards = [e.record for e in entries if e.kind == EVENT and e.record["type"] != "view"]
    decisions = [e.record for e in entries if e.kind == DECISION]
    assert rewards, "the fuzzers should have stored some valid events"
    assert {r["decision_id"] for r in rewards} <= ISSUED
    assert all(0 < d["propensity"] <= 1 for d in decisions)


# --- schemathesis against /openapi.json -----------------------------------------------------------


def without_lifespan(app):
    """`app` with its lifespan acknowledged but not run: schemathesis starts and stops the
    lifespan around every call, and the origin's shutdown closes its storage for good."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    return wrapped


# Its own origin (schemathesis drives the app from its own event loop), loaded at collection.
SCHEMA_APP, SCHEMA_DIR = fuzz_app()
atexit.register(shutil.rmtree, SCHEMA_DIR, True)  # also when the module is collected but not run
schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan(SCHEMA_APP))
CONFORMANCE = [
    sc.not_a_server_error,
    sc.status_code_conformance,
    sc.content_type_conformance,
    sc.response_headers_conformance,
    sc.response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis(case):
    TRIED["schemathesis " + case.operation.label] += 1
    auth = {"Authorization": f"Bearer {ADMIN}"} if case.path.startswith("/admin") else {}
    case.call_and_validate(headers=auth, checks=CONFORMANCE)


def teardown_module() -> None:
    out = ROOT / "build" / "test-artifacts"
    out.mkdir(parents=True, exist_ok=True)
    schemathesis_total = sum(v for k, v in TRIED.items() if k.startswith("schemathesis"))
    counts = {
        "total": sum(TRIED.values()),
        "schemathesis": schemathesis_total,
        "by_endpoint": dict(TRIED),
    }
    (out / "fuzz_origin.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    print(
        f"\norigin fuzz: {counts['total']} inputs tried ({schemathesis_total} by schemathesis)"
        f" {dict(TRIED)}"
    )
