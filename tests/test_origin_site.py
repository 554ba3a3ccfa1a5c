"""The demo shop served by the origin: slots, session-driven later pages, escaping, /fp files."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import uuid

import pytest
from starlette.testclient import TestClient

from model_export.features import features
from model_export.policy import scores, seal
from origin.app import create_app
from origin.clock import ManualClock
from origin.pages import load_catalog
from origin.scripts import COMPILE_HINT, firstpaint_version
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
    version = firstpaint_version(client.app.state.origin)
    assert re.findall(r"<script[^>]*>", head) == [
        f'<script src="/fp/firstpaint.js?v={version}">'
    ]  # one tag
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


def fake_dist(tmp_path, code: str):
    """A browser_dist holding only a snippet.js with `code` (after the build's compile hint)."""
    dist = tmp_path / "dist"
    dist.mkdir(exist_ok=True)
    (dist / "snippet.js").write_bytes(COMPILE_HINT + code.encode())
    return dist


def fake_settings(tmp_path) -> Settings:
    """An origin whose browser_dist holds a snippet.js of one statement, `snippet();`."""
    dist = fake_dist(tmp_path, "snippet();\n")
    return Settings(
        db=str(tmp_path / "o.db"), token_secret=SECRET, learner="off", browser_dist=dist
    )


def test_firstpaint_js_is_the_compile_hint_the_model_and_the_snippet_in_one_file(tmp_path):
    with TestClient(create_app(fake_settings(tmp_path))) as client:
        client.headers["accept-encoding"] = "identity"
        origin = client.app.state.origin
        version = firstpaint_version(origin)
        script = client.get(f"/fp/firstpaint.js?v={version}")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert script.headers["etag"] == f'"{version}"'
        assert "content-encoding" not in script.headers
        hint, data, code = script.content.split(b"\n", 2)
        assert (hint + b"\n", code) == (COMPILE_HINT, b"snippet();\n")  # the hint only once
        assert data == client.get("/fp/model.js").content.rstrip(b"\n")
        assert data.startswith(b"window.firstpaintModel=") and data.endswith(b";")
        bundle = json.loads(data.removeprefix(b"window.firstpaintModel=").removesuffix(b";"))
        assert bundle == {"model": origin.holder.model, "site": origin.site.to_json()}
        assert version == hashlib.sha256(script.content).hexdigest()[:16]
        for stale in ("", "?v=", "?v=0123456789abcdef", f"?v={version[:8]}"):
            again = client.get("/fp/firstpaint.js" + stale)
            assert again.headers["cache-control"] == "no-cache", stale
            assert again.content == script.content
        revalidated = client.get("/fp/firstpaint.js", headers={"if-none-match": f'"{version}"'})
        assert revalidated.status_code == 304 and revalidated.content == b""
        for listed in (f'"0123456789abcdef", "{version}"', f'W/"{version}"', "*"):  # as /v1/model
            again = client.get("/fp/firstpaint.js", headers={"if-none-match": listed})
            assert again.status_code == 304, listed


def test_firstpaint_js_is_gzipped_for_browsers_that_accept_it(tmp_path):
    with TestClient(create_app(fake_settings(tmp_path))) as client:
        version = firstpaint_version(client.app.state.origin)
        url = f"/fp/firstpaint.js?v={version}"
        plain = client.get(url, headers={"accept-encoding": "identity"})
        with client.stream("GET", url, headers={"accept-encoding": "br, gzip"}) as raw:
            wire, headers = b"".join(raw.iter_raw()), raw.headers  # as sent, not decoded
        assert headers["content-encoding"] == "gzip"
        assert headers["vary"] == "Accept-Encoding" == plain.headers["vary"]
        assert headers["etag"] == f'"{version}-gzip"'
        assert gzip.decompress(wire) == plain.content
        assert len(wire) < len(plain.content)
        for refused in ("gzip;q=0", "br", "gzip;q=0, *", ""):
            again = client.get(url, headers={"accept-encoding": refused})
            assert "content-encoding" not in again.headers, refused
        assert client.get(url, headers={"accept-encoding": "*"}).headers["etag"].endswith('-gzip"')
        for tag in (f'"{version}"', f'"{version}-gzip"'):  # either representation revalidates
            again = client.get(url, headers={"if-none-match": tag, "accept-encoding": "gzip"})
            assert again.status_code == 304 and "content-encoding" not in again.headers, tag


def test_a_new_model_or_a_new_snippet_gets_a_new_script_url(tmp_path):
    with TestClient(create_app(fake_settings(tmp_path))) as client:
        origin = client.app.state.origin
        first = firstpaint_version(origin)
        model = origin.holder.model
        origin.holder.publish(seal({**model, "model_version": model["model_version"] + "-b"}), 1)
        second = firstpaint_version(origin)
        fake_dist(tmp_path, "snippet(2);\n")
        third = firstpaint_version(origin)
        assert len({first, second, third}) == 3
        assert f"/fp/firstpaint.js?v={third}" in client.get("/").text
        script = client.get(f"/fp/firstpaint.js?v={third}")
        assert script.content.endswith(b"snippet(2);\n") and b"-b" in script.content
        assert client.get(f"/fp/firstpaint.js?v={first}").headers["cache-control"] == "no-cache"


def test_without_a_model_firstpaint_js_is_the_snippet_alone(tmp_path, monkeypatch):
    with TestClient(create_app(fake_settings(tmp_path))) as client:
        holder = client.app.state.origin.holder
        monkeypatch.setattr(holder, "model", None)
        monkeypatch.setattr(holder, "_views", {})
        script = client.get("/fp/firstpaint.js")
        assert script.status_code == 200 and script.content == COMPILE_HINT + b"snippet();\n"
        assert client.get("/fp/model.js").status_code == 503


def test_fp_files_are_served_when_built_and_404_when_not(client, tmp_path):
    origin = client.app.state.origin
    if (origin.settings.browser_dist / "snippet.js").exists():
        assert client.get("/fp/snippet.js").status_code == 200
        assert client.get("/fp/firstpaint.js").status_code == 200
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
        assert bare.get("/fp/firstpaint.js").status_code == 404
        assert '<script src="/fp/firstpaint.js?v="></script>' in bare.get("/").text
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
