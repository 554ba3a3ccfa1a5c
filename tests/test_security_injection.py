"""Origin-rendered HTML (shop pages, the 404 page, the dashboard) never carries request input
unescaped: XSS payloads in the referrer, UTM values, Accept-Language, cookies and the path.
Slot content comes only from site.toml.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import quote, urlencode

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from model_export.policy import canonical_json, seal
from origin.app import create_app
from origin.clock import ManualClock
from origin.dashboard import dashboard_routes
from origin.services import Settings
from origin.storage import DECISION, EVENT, StoredModel
from origin.storage.sqlite import SqliteStorage

MARK = "fpXSS"
PAYLOADS = [
    f'"><script>{MARK}(1)</script>',
    f"javascript:{MARK}(1)",
    f'" onmouseover="{MARK}(1)',
    f"'><img src=x onerror={MARK}(1)>",
    f"</script><script>{MARK}(2)</script>",
    f"\\u003cscript\\u003e{MARK}(3)\\u003c/script\\u003e",
    f"<svg/onload={MARK}(5)>",
    f"{MARK}\u2028<script>",
]
SLOT = re.compile(r'<div data-fp-slot="(\w+)"([^>]*)>(.*?)</div>', re.S)
TOKEN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db = tmp_path_factory.mktemp("injection") / "origin.db"
    settings = Settings(
        db=str(db), token_secret=b"injection-secret", clock=ManualClock(), learner="manual"
    )
    with TestClient(create_app(settings)) as client:
        yield client


class Elements(HTMLParser):
    """What a browser would build: (tag, attributes) of each element, and script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def unsafe(html: str) -> list[str]:
    """Elements, attributes or script a payload produced in `html` (text content is fine)."""
    parsed = Elements()
    parsed.feed(html)
    found = [s for s in parsed.scripts if MARK in s]
    for tag, attrs in parsed.elements:
        for name, value in attrs:
            value = value or ""
            url = name in (
                "href",
                "src",
                "action",
                "formaction",
                "xlink:href",
            ) and value.strip().lower().startswith("javascript:")
            if MARK in name or (MARK in value and (name.startswith("on") or url)):
                found.append(f"<{tag} {name}={value!r}>")
    return found


def assert_slots_from_site(client, html: str) -> None:
    site = client.app.state.origin.site
    slots = SLOT.findall(html)
    assert slots, "the page has slots"
    for name, attributes, inner in slots:
        assert inner in site.slots[name].variants.values()
        variant = re.search(r'data-fp-variant="([^"]*)"', attributes)
        assert variant is None or variant.group(1) in site.slots[name].variants
        token = re.search(r'data-fp-decision="([^"]*)"', attributes)
        assert token is None or TOKEN.match(token.group(1))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_shop_pages_escape_every_request_value(client, payload):
    query = urlencode({"utm_source": payload, "utm_medium": payload, "utm_campaign": payload})
    headers = {
        "referer": f"https://www.google.com/?q={quote(payload)}",
        "accept-language": payload.encode("utf-8"),
        "user-agent": payload.encode("utf-8"),
        "cookie": f"fp_sid={quote(payload)}; fp_vid={quote(payload)}",
    }
    for path in (
        "/",
        "/running",
        "/product/" + next(iter(client.app.state.origin.site.sections)),
        f"/running?{query}",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code in (200, 404)
        assert unsafe(response.text) == [], (path, unsafe(response.text))
        if response.status_code == 200:
            assert_slots_from_site(client, response.text)
        for name, value in response.headers.items():
            assert MARK not in value, (name, value)
    missing = client.get(
        "/" + quote(payload.replace("/", ""), safe="")
    )  # the 404 page names the path
    assert missing.status_code == 404 and unsafe(missing.text) == []
    assert MARK in missing.text  # reflected — but only as escaped text


def test_decide_answers_only_site_html(client):
    for payload in PAYLOADS:
        body = {
            "slots": ["hero", "promo"],
            "session_id": payload,
            "visitor_id": payload,
            "context": {
                "url": f"/?utm_source={quote(payload)}",
                "referrer": payload,
                "accept_language": payload,
            },
        }
        response = client.post("/v1/decide", json=body)
        assert response.status_code == 200
        site = client.app.state.origin.site
        for decision in response.json()["decisions"]:
            assert decision["html"] in site.slots[decision["slot"]].variants.values()


def test_dashboard_escapes_what_the_log_and_model_carry(tmp_path):
    """Defence in depth: even names that never pass validation are escaped if they get stored."""
    clock = ManualClock()
    storage = SqliteStorage(str(tmp_path / "dash.db"), clock=clock)
    with TestClient(
        create_app(Settings(db=str(tmp_path / "seed.db"), token_secret=b"x", learner="manual"))
    ) as seed:
        model = json.loads(canonical_json(seed.app.state.origin.holder.model))
    slot = model["slots"]["hero"]
    for payload in PAYLOADS:
        slot["weights"].setdefault(slot["variants"][1], {})[payload] = 0.75
    model = seal(model)
    storage.publish_model(
        StoredModel(model["model_version"], model["sha256"], canonical_json(model), clock.now_ms())
    )
    entries = []
    for i, payload in enumerate(PAYLOADS):
        for slot_name, variant in (("hero", payload), (payload, "default")):
            entries.append(
                (
                    DECISION,
                    {
                        "decision_id": f"d{i}{slot_name[:2]}",
                        "slot": slot_name,
                        "variant": variant,
                        "propensity": 0.5,
                        "ts_ms": clock.now_ms(),
                        "holdout": False,
                        "context": {},
                    },
                )
            )
            entries.append(
                (
                    EVENT,
                    {
                        "type": "click",
                        "decision_id": f"d{i}{slot_name[:2]}",
                        "slot": slot_name,
                        "variant": variant,
                        "ts_ms": clock.now_ms(),
                    },
                )
            )
    storage.append(entries)
    app = Starlette(routes=dashboard_routes(storage, clock))
    with TestClient(app) as client:
        response = client.get("/dashboard")
    storage.close()
    assert response.status_code == 200
    assert MARK in response.text, "the hostile names are shown — as text"
    assert unsafe(response.text) == []
    assert "<script" not in response.text
