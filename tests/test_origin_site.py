"""The demo shop served by the origin: slots, session-driven later pages, escaping, /fp files."""

from __future__ import annotations

import re
import uuid

import pytest
from starlette.testclient import TestClient

from model_export.features import features
from model_export.policy import scores
from origin.app import create_app
from origin.clock import ManualClock
from origin.pages import load_catalog
from origin.services import Settings
from origin.storage import DECISION
from origin.storage.redis import RedisStorage
from origin.tokens import verify
from tests.support_origin import redis_server  # noqa: F401  (fixture)

SECRET = b"site-test-secret"


@pytest.fixture(params=["sqlite", "redis"])
def client(request, tmp_path):
    clock = ManualClock()
    if request.param == "sqlite":
        settings = Settings(
            db=str(tmp_path / "o.db"), token_secret=SECRET, clock=clock, learner="off"
        )
        app = create_app(settings)
    else:
        url = request.getfixturevalue("redis_server").url
        settings = Settings(redis_url=url, token_secret=SECRET, clock=clock, learner="off")
        app = create_app(
            settings, RedisStorage(url, clock=clock, prefix=f"s{uuid.uuid4().hex[:8]}:")
        )
    with TestClient(app) as client:
        yield client


def slot_html(page: str, slot: str) -> tuple[str, str]:
    match = re.search(rf'<div data-fp-slot="{slot}"([^>]*)>(.*?)</div>', page, re.S)
    assert match, f"no {slot} slot"
    return match.group(1), match.group(2)


def test_home_page_has_default_slots_and_the_snippet_in_head(client):
    page = client.get("/").text
    head = page.split("</head>")[0]
    assert '<script src="/fp/snippet.js"></script>' in head
    sha8 = client.app.state.origin.holder.model["sha256"][:8]
    assert f'<script src="/fp/model.js?v={sha8}"></script>' in head
    site = client.app.state.origin.site
    attrs, inner = slot_html(page, "hero")
    assert inner == site.slots["hero"].variants[site.slots["hero"].default] and attrs == ""
    attrs, inner = slot_html(page, "promo")
    assert 'data-fp-when="idle"' in attrs
    assert page.index('data-fp-slot="promo"') > page.index('class="spacer"')  # below the fold


def test_category_and_product_pages_exist(client):
    for path in ("/running", "/camping", "/hiking", "/cycling", "/sale", "/product/dome-2"):
        assert client.get(path).status_code == 200, path
    assert client.get("/kayaking").status_code == 404
    assert client.get("/product/nope").status_code == 404


def test_a_visitor_who_browsed_running_shoes_gets_running_content_next(client):
    origin = client.app.state.origin
    client.get("/product/trail-runner-3")
    client.get("/product/road-glide")
    page = client.get("/hiking").text
    attrs, inner = slot_html(page, "hero")
    claims = verify(SECRET, re.search(r'data-fp-decision="([^"]+)"', attrs).group(1))
    assert (
        inner == origin.site.slots["hero"].variants[claims.variant]
    )  # the HTML shown is the signed one
    # The decision on /hiking was made with the session: running shoes were just viewed.
    client.post("/v1/events", json={"events": [{"type": "view", "session_id": "flush"}]})
    decisions = [e.record for e in origin.storage.read_log("t", 100) if e.kind == DECISION]
    hero = next(d for d in decisions if d["decision_id"] == claims.decision_id)
    assert hero["context"]["session"]["categories"][0] == "running"
    assert hero["context"]["session"]["pages"] == 2  # the pages before this one
    p = scores(
        origin.holder.model["slots"]["hero"],
        features(hero["context"], origin.holder.model["features"]),
    )
    assert max(p, key=p.get) == "running"  # the policy's choice for this visitor, on /hiking
    picked = re.findall(r'href="/product/([^"]+)"', client.get("/").text.split("Picked for you")[1])
    running = {p.id for p in load_catalog().values() if p.category == "running"}
    assert set(picked[:3]) == running  # the home page's products: running first


def test_request_values_are_escaped(client):
    payload = "<img src=x onerror=alert(1)>"
    response = client.get(f"/product/{payload}")
    assert response.status_code == 404
    assert payload not in response.text and "&lt;img src=x onerror=alert(1)&gt;" in response.text
    client.cookies.set("fp_sid", '"><script>x</script>')
    page = client.get("/running", headers={"referer": payload, "user-agent": payload}).text
    assert "<script>x" not in page and payload not in page


def test_fp_files_are_served_when_built_and_404_when_not(client, tmp_path):
    origin = client.app.state.origin
    if (origin.settings.browser_dist / "snippet.js").exists():
        assert client.get("/fp/snippet.js").status_code == 200
    if (origin.settings.pyodide_dir / "pyodide.asm.wasm").exists():
        wasm = client.get("/fp/pyodide/pyodide.asm.wasm")
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    settings = Settings(
        db=str(tmp_path / "x.db"),
        token_secret=SECRET,
        learner="off",
        browser_dist=tmp_path / "none",
        pyodide_dir=tmp_path / "none2",
    )
    with TestClient(create_app(settings)) as bare:
        assert bare.get("/fp/snippet.js").status_code == 404
        assert bare.get("/fp/pyodide/pyodide.js").status_code == 404


def _set_cookies(response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}


def test_page_cookies_are_http_only_and_the_visitor_id_follows_consent(tmp_path):
    def shop(**settings):
        app = create_app(
            Settings(
                db=str(tmp_path / f"{len(settings)}.db"),
                token_secret=SECRET,
                learner="off",
                **settings,
            )  # fmt: skip
        )
        return TestClient(app)

    with shop() as client:
        cookies = _set_cookies(client.get("/"))
        assert "HttpOnly" in cookies["fp_sid"] and "HttpOnly" in cookies["fp_vid"]
        assert "secure" not in cookies["fp_vid"].lower()  # plain http: a Secure cookie is dropped
        client.cookies.set("fp_consent", "0")
        refused = _set_cookies(client.get("/running"))
        assert "Max-Age=0" in refused["fp_vid"] or 'fp_vid=""' in refused["fp_vid"]
    with shop(consent_required=True) as client:
        assert "fp_vid" not in _set_cookies(client.get("/"))
        client.cookies.set("fp_consent", "1")
        assert "HttpOnly" in _set_cookies(client.get("/"))["fp_vid"]
