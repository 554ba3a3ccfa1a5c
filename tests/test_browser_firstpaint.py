"""First paint in Chromium: the hero is the policy's choice when it is first painted, and it never
changes afterwards; a missing snippet or model leaves the default hero and no page error."""

from __future__ import annotations

import html
import itertools
import json
import re
import time
from typing import Any

import httpx
import pytest

from model_export.policy import check_model
from model_export.site import load_site
from origin.tokens import verify
from tests.support_browser import (
    DESKTOP_UA,
    MOBILE_UA,
    PAINT_LOG,
    REFERRERS,
    SCRIPT_TAG,
    TEST_SECRET,
    local_hour,
    painted,
    policy_variant,
    records,
    zone_at,
)
from tests.support_edge import cf_header

pytestmark = pytest.mark.browser

DEVICES = {
    "mobile": {
        "user_agent": MOBILE_UA,
        "is_mobile": True,
        "has_touch": True,
        "viewport": {"width": 412, "height": 860},
    },
    "desktop": {"user_agent": DESKTOP_UA, "viewport": {"width": 1280, "height": 800}},
}
DAYPARTS = {"morning": 8, "evening": 20}
MATRIX = list(itertools.product(REFERRERS, DEVICES, DAYPARTS))
HERO_HTML = load_site().slots["hero"].variants


def open_page(
    chromium: Any, url: str, referer: str | None, zone: str, device: str, routes: dict
) -> tuple[Any, Any, list]:
    context = chromium.new_context(timezone_id=zone, locale="en-US", **DEVICES[device])
    for pattern, handler in routes.items():
        context.route(pattern, handler)
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    page.add_init_script(PAINT_LOG)
    page.goto(url, referer=referer)
    return context, page, errors


def two_tags(route: Any) -> None:
    """The page with the data and the code in two tags of its own (/fp/model.js, /fp/snippet.js)."""
    page = route.fetch().text()
    tags = '<script src="/fp/model.js"></script>\n<script src="/fp/snippet.js"></script>'
    route.fulfill(body=SCRIPT_TAG.sub(tags, page), content_type="text/html; charset=utf-8")


HOME = re.compile(r"^http://[^/]+/(\?.*)?$")  # the demo home page, with or without a query


@pytest.mark.parametrize(("source", "device", "daypart"), MATRIX, ids=["-".join(m) for m in MATRIX])
def test_hero_at_first_paint_is_the_policy_choice(chromium, site, source, device, daypart):
    scripts = assert_policy_choice_at_first_paint(chromium, site, source, device, daypart, {})
    assert len(scripts) == 1 and scripts[0].startswith("/fp/firstpaint.js?v=")  # one tag


def test_with_two_tags_of_its_own_the_hero_at_first_paint_is_the_policy_choice(chromium, site):
    """A site may load /fp/model.js and /fp/snippet.js with two tags instead of the one file."""
    routes = {HOME: two_tags}  # not a timing test: the HTTP cache does not matter here
    scripts = assert_policy_choice_at_first_paint(
        chromium, site, "email", "mobile", "evening", routes
    )
    assert scripts == ["/fp/model.js", "/fp/snippet.js"]


def assert_policy_choice_at_first_paint(
    chromium: Any, site: Any, source: str, device: str, daypart: str, routes: dict
) -> list[str]:
    """Open the page in this context and check its hero; return the page's script sources."""
    referer, query = REFERRERS[source]
    zone = zone_at(DAYPARTS[daypart])
    url = site.url + "/" + query
    context, page, errors = open_page(chromium, url, referer, zone, device, routes)
    try:
        hero = painted(page, "hero")
        page.wait_for_load_state("load")
        scripts = page.evaluate("[...document.scripts].map((s) => s.getAttribute('src'))")
        model = page.evaluate("window.firstpaintModel.model")
        decision = page.evaluate(
            "(() => { const d = firstpaint.decisions.find((d) => d.slot === 'hero');"
            " return {decision_id: d.decision_id, visitor_id: d.visitor_id,"
            " now_ms: d.context.now_ms, source: d.source}; })()"
        )
        browser = page.evaluate(
            "({vid: localStorage.getItem('fp_vid'), mobile: navigator.userAgentData ?"
            " (navigator.userAgentData.mobile ? '?1' : '?0') : null})"
        )
    finally:
        context.close()

    check_model(model)  # the page decided with an intact model: the one the origin serves
    assert model["sha256"] == httpx.get(site.url + "/v1/model").headers["etag"].strip('"')
    assert decision["source"] == "snippet"
    assert decision["visitor_id"] == browser["vid"]
    # The context as this test set it up; only the decision time and ids come from the page.
    expected_context = {
        "url": url,
        "referrer": referer or "",
        "user_agent": DEVICES[device]["user_agent"],
        "accept_language": "en-US",
        "timezone": zone,
        "now_ms": decision["now_ms"],
        "returning": False,
    }
    if browser["mobile"]:
        expected_context["ch_ua_mobile"] = browser["mobile"]
    hour = local_hour(zone, decision["now_ms"])
    assert abs(hour - DAYPARTS[daypart]) <= 1.5 or abs(hour - DAYPARTS[daypart]) >= 22.5
    variant = policy_variant(
        model, expected_context, "hero", browser["vid"], decision["decision_id"]
    )

    assert_painted_once(hero, variant)
    assert errors == []
    return scripts


def assert_painted_once(hero: Any, variant: str) -> None:
    """The hero's first rendered state is `variant`, so is its state at first contentful paint
    (when it was in the document by then), and no rendered state differs from it."""
    first = hero.first_rendered()
    assert first["variant"] == variant, hero.states
    assert html.unescape(first["html"]) == html.unescape(HERO_HTML[variant])
    at_paint = hero.at_paint()
    assert not at_paint or at_paint["html"] == first["html"], hero.states
    assert hero.changed_after_first_render() == []


@pytest.mark.parametrize(("source", "device", "daypart"), MATRIX, ids=["-".join(m) for m in MATRIX])
def test_with_the_edge_in_front_the_hero_at_first_paint_is_the_policy_choice(
    chromium, site, edge, source, device, daypart
):
    referer, query = REFERRERS[source]
    zone = zone_at(DAYPARTS[daypart])
    url = edge.url + "/" + query
    context = chromium.new_context(
        timezone_id=zone,
        locale="en-US",
        extra_http_headers=cf_header("US", zone),  # the worker's request.cf
        **DEVICES[device],
    )
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    page.add_init_script(PAINT_LOG)
    try:
        page.goto(url, referer=referer)
        hero = painted(page, "hero")
        page.wait_for_load_state("load")
        token = page.get_attribute("[data-fp-slot=hero]", "data-fp-decision")
        measured = page.evaluate("firstpaint.decisions.map((d) => [d.slot, d.source, d.token])")
    finally:
        context.close()

    claims = verify(TEST_SECRET.encode(), token)
    assert ["hero", "server", token] in measured  # the snippet only measures what the edge decided
    logged = wait_for_decision(site, claims.decision_id)
    seen = logged["context"]
    # The context as this test set it up; headers the browser chooses and the time come from
    # the edge's log.
    assert (seen["url"], seen.get("referrer"), seen["user_agent"]) == (
        url,
        referer,
        DEVICES[device]["user_agent"],
    )
    assert (seen["country"], seen["timezone"]) == ("US", zone)
    expected_context = {
        "url": url,
        "site_host": seen["site_host"],
        "user_agent": DEVICES[device]["user_agent"],
        "country": "US",
        "timezone": zone,
        **{
            k: seen[k]
            for k in ("accept_language", "ch_ua_mobile", "now_ms", "returning")
            if k in seen
        },
    }
    if referer:
        expected_context["referrer"] = referer
    model = json.loads(httpx.get(site.url + "/v1/model").content)
    variant = policy_variant(
        model, expected_context, "hero", logged["visitor_id"], claims.decision_id
    )
    assert claims.variant == variant
    assert_painted_once(hero, variant)
    assert errors == []


def wait_for_decision(site: Any, decision_id: str) -> dict[str, Any]:
    """The decision record the origin committed for `decision_id` (the edge logs in batches)."""
    for _ in range(150):
        found = [d for d in records(site, "decision") if d["decision_id"] == decision_id]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"decision {decision_id} never reached the origin")


# Before any page script: the rendering updates run before each first use of sessionStorage.
SESSION_STORAGE_LOG = """
(() => {
  let frames = 0;
  const tick = () => { frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const own = Object.getOwnPropertyDescriptor(window, 'sessionStorage')
    || Object.getOwnPropertyDescriptor(Window.prototype, 'sessionStorage');
  window.__fpSessionStorageAt = null;
  Object.defineProperty(window, 'sessionStorage', {configurable: true, get() {
    if (window.__fpSessionStorageAt === null) window.__fpSessionStorageAt = frames;
    return own.get.call(window);
  }});
})();
"""

VISIT = (
    "({returning: firstpaint.decisions.find((d) => d.slot === 'hero').context.returning,"
    " visitor: firstpaint.who.visitor, session: firstpaint.who.session,"
    " fp_ret: sessionStorage.getItem('fp_ret'), storage_at_frame: window.__fpSessionStorageAt})"
)


def test_the_returning_flag_is_kept_for_the_tab_session(chromium, site):
    """A visitor is new on every page of the tab session that created their id, returning in any
    later one; a new visitor's pages leave sessionStorage alone until a frame was rendered."""
    context = chromium.new_context(user_agent=DESKTOP_UA)
    context.add_init_script(SESSION_STORAGE_LOG)
    visits = []
    try:
        for tab in (context.new_page(), context.new_page()):  # a new tab: a new session
            for _ in range(2):
                tab.goto(site.url + "/")
                tab.wait_for_function("window.firstpaint && firstpaint.who.session")
                visits.append(tab.evaluate(VISIT))
    finally:
        context.close()
    first, _, later, _ = visits
    assert [v["returning"] for v in visits] == [False, False, True, True]
    assert [v["fp_ret"] for v in visits] == ["0", "0", "1", "1"]
    assert len({v["visitor"] for v in visits}) == 1 and first["visitor"]
    assert first["storage_at_frame"] >= 1  # new: after a rendering update
    assert later["storage_at_frame"] == 0  # returning: read before the first decision
    # The origin's pages name their session (its cookie), which every tab here shares.
    assert len({v["session"] for v in visits}) == 1 and first["session"]


def test_a_hero_swapped_after_paint_is_caught(chromium, site):
    """The flicker check itself: a hero replaced after it was painted (as anti-flicker tools do
    once their timeout ends) fails. The swap waits for the first contentful paint itself, not
    for `load`: on a busy machine `load` can come before anything is painted."""
    context = chromium.new_context()
    page = context.new_page()
    page.add_init_script(PAINT_LOG)
    page.add_init_script(
        "new PerformanceObserver((list, observer) => {"
        " if (!list.getEntriesByName('first-contentful-paint').length) return;"
        " observer.disconnect();"
        " setTimeout(() => { document.querySelector('[data-fp-slot=hero]').innerHTML ="
        " '<h1>Swapped late</h1>'; }, 50);"
        "}).observe({ type: 'paint', buffered: true })"
    )
    try:
        page.goto(site.url + "/")
        page.wait_for_function("window.__fpSlotLog.some((s) => s.html.includes('Swapped late'))")
        page.evaluate(
            "new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
        )
        hero = painted(page, "hero")
    finally:
        context.close()
    assert [s["html"] for s in hero.changed_after_first_render()] == ["<h1>Swapped late</h1>"]


def without_model(route: Any) -> None:
    """/fp/firstpaint.js as the origin serves it before any model is published."""
    script = route.fetch().text()
    script = re.sub(r"^window\.firstpaintModel=.*\n", "", script, flags=re.M)
    route.fulfill(body=script, content_type="text/javascript")


FAILURES = {
    "script-unreachable": {"**/fp/firstpaint.js*": lambda route: route.abort()},
    "script-500": {"**/fp/firstpaint.js*": lambda route: route.fulfill(status=500, body="boom")},
    "model-missing": {"**/fp/firstpaint.js*": without_model},
    "two-tags-model-unreachable": {HOME: two_tags, "**/fp/model.js*": lambda r: r.abort()},
    "two-tags-model-404": {
        HOME: two_tags,
        "**/fp/model.js*": lambda route: route.fulfill(status=404, body="not found"),
    },
    "two-tags-snippet-unreachable": {HOME: two_tags, "**/fp/snippet.js": lambda r: r.abort()},
    "after-paint-unreachable": {"**/fp/after-paint.mjs": lambda route: route.abort()},
}


@pytest.mark.parametrize("failure", FAILURES)
def test_default_hero_and_no_page_error_when_a_file_is_missing(chromium, site, failure):
    context = chromium.new_context()
    for pattern, handler in FAILURES[failure].items():
        context.route(pattern, handler)  # not a timing test: the HTTP cache does not matter here
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    page.add_init_script(PAINT_LOG)
    try:
        page.goto(site.url + "/?utm_medium=email")
        page.wait_for_load_state("load")
        hero = painted(page, "hero")
        state = page.evaluate("window.firstpaint ? firstpaint.fallbacks : null")
    finally:
        context.close()
    assert errors == []
    if failure.startswith("after-paint"):
        assert any(r.startswith("after-paint") for r in state)
        return
    assert html.unescape(hero.first_rendered()["html"]) == html.unescape(HERO_HTML["default"])
    assert hero.first_rendered()["variant"] is None
    assert hero.changed_after_first_render() == []
    if "model" in failure:
        assert "model unavailable: window.firstpaintModel is not set" in state
