"""Measurement in Chromium: a click on the hero's call-to-action reaches the origin with a valid
token and is joined to its decision; consent mode keeps the visitor anonymous until consent.
(A user agent is always set: Playwright's default one says HeadlessChrome, a bot to the policy.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from origin.tokens import verify
from tests.support_browser import (
    DESKTOP_UA,
    TEST_SECRET,
    records,
    with_script_attributes,
)

pytestmark = pytest.mark.browser

HERO_DECISION = (
    "firstpaint.decisions.filter((d) => d.slot === 'hero' && d.token).map((d) => ({"
    "decision_id: d.decision_id, token: d.token, variant: d.variant, propensity: d.propensity,"
    "model_version: d.model_version, source: d.source}))[0] || null"
)


def wait_for(find: Any, timeout_s: float = 15.0) -> Any:
    """Poll `find()` until it returns something truthy (events are committed asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.1)
    return find()


@pytest.mark.parametrize("front", ["snippet", "edge", "origin-page"])
def test_click_on_the_hero_cta_is_joined_to_its_decision(chromium, site, request, front):
    """No edge: the snippet decides and the origin signs; edge: the worker decides and signs;
    a later page (`/running`): the origin decides with session context and signs."""
    url = (request.getfixturevalue("edge") if front == "edge" else site).url
    path = "/running" if front == "origin-page" else "/"
    context = chromium.new_context(user_agent=DESKTOP_UA, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    try:
        page.goto(url + path + "?utm_source=newsletter&utm_medium=email")
        page.wait_for_function(f"({HERO_DECISION}) !== null")
        hero = page.evaluate(HERO_DECISION)
        with page.expect_navigation():
            page.click("[data-fp-slot=hero] a.cta")
        session = next(c["value"] for c in context.cookies() if c["name"] == "fp_sid")
    finally:
        context.close()
    assert errors == []
    assert hero["source"] == ("snippet" if front == "snippet" else "server")

    claims = verify(TEST_SECRET.encode(), hero["token"])
    assert claims.variant == hero["variant"]

    def hero_events() -> list[dict[str, Any]]:
        events = [e for e in records(site, "event") if e.get("decision_id") == claims.decision_id]
        return events if any(e["type"] == "click" for e in events) else []

    events = wait_for(hero_events)
    assert {e["type"] for e in events} == {"impression", "click"}
    assert all(e["variant"] == hero["variant"] and e["slot"] == "hero" for e in events)
    # The snippet's events join the session the origin keeps for this visitor's pages.
    assert {e["session_id"] for e in events} == {session}
    logged = wait_for(
        lambda: [d for d in records(site, "decision") if d["decision_id"] == claims.decision_id]
    )
    assert len(logged) == 1
    assert (logged[0]["variant"], logged[0]["model_version"]) == (
        claims.variant,
        claims.model_version,
    )
    assert logged[0]["propensity"] == pytest.approx(claims.propensity)


def test_a_click_before_the_token_arrives_goes_out_with_its_decision_at_pagehide(chromium, site):
    """No edge, and the snippet's token request never answers (a slow network): the click and
    navigation away still bring decision, impression and click to the origin, in the pagehide
    beacon that carries the unsigned decision with the events that waited for its token."""
    context = chromium.new_context(user_agent=DESKTOP_UA, viewport={"width": 1280, "height": 800})
    calls: list[str] = []

    def first_token_request_lost(route: Any) -> None:
        calls.append(route.request.post_data or "")
        if len(calls) == 1:
            route.abort()  # the token request; not a timing test
        else:
            route.continue_()

    context.route("**/v1/decisions/client", first_token_request_lost)
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    try:
        page.goto(site.url + "/?utm_source=newsletter&utm_medium=email")
        page.wait_for_function(
            "firstpaint.fallbacks.some((reason) => reason.startsWith('decision log:'))"
        )
        hero = page.evaluate(
            "(({decision_id, variant, token}) => ({decision_id, variant, token}))"
            "(firstpaint.decisions.find((d) => d.slot === 'hero'))"
        )
        with page.expect_navigation():
            page.click("[data-fp-slot=hero] a.cta")
        wait_for(lambda: len(calls) >= 2)
    finally:
        context.close()
    assert errors == []
    assert hero["token"] is None  # the click happened before any token arrived

    def hero_events() -> list[dict[str, Any]]:
        found = [e for e in records(site, "event") if e.get("decision_id") == hero["decision_id"]]
        return found if any(e["type"] == "click" for e in found) else []

    events = wait_for(hero_events)
    assert {e["type"] for e in events} == {"impression", "click"}
    assert all(e["variant"] == hero["variant"] for e in events)
    logged = [d for d in records(site, "decision") if d["decision_id"] == hero["decision_id"]]
    assert len(logged) == 1


@pytest.mark.parametrize("when", ["before-load", "after-load"])
def test_conversion_is_sent_with_each_decision_token(chromium, site, when):
    context = chromium.new_context(user_agent=DESKTOP_UA)
    page = context.new_page()
    if when == "before-load":  # the page converts before the snippet's measurement is loaded
        page.add_init_script(
            "document.addEventListener('DOMContentLoaded', () => firstpaint.convert(49.9))"
        )
    try:
        page.goto(site.url + "/")
        page.wait_for_function(f"({HERO_DECISION}) !== null")
        hero = page.evaluate(HERO_DECISION)
        if when == "after-load":
            page.evaluate("firstpaint.convert(49.9)")
    finally:
        context.close()

    def conversions() -> list[dict[str, Any]]:
        return [
            e
            for e in records(site, "event")
            if e["type"] == "conversion" and e.get("decision_id") == hero["decision_id"]
        ]

    (conversion,) = wait_for(conversions)
    assert conversion["value"] == pytest.approx(49.9)


def consent_page(chromium: Any, site_url: str) -> tuple[Any, Any]:
    """The demo home page with the snippet in consent mode (`data-fp-consent="required"`)."""
    context = chromium.new_context(user_agent=DESKTOP_UA)

    def consent_mode(route: Any) -> None:
        body = with_script_attributes(route.fetch().text(), 'data-fp-consent="required"')
        route.fulfill(body=body, content_type="text/html; charset=utf-8")

    context.route(site_url + "/", consent_mode)  # not a timing test
    return context, context.new_page()


def test_consent_mode_stores_nothing_and_sends_anonymous_events_until_consent(chromium, site):
    context, page = consent_page(chromium, site.url)
    try:
        page.goto(site.url + "/")
        page.wait_for_function(f"({HERO_DECISION}) !== null")
        hero = page.evaluate(HERO_DECISION)
        before = page.evaluate(
            "({local: Object.keys(localStorage), session: Object.keys(sessionStorage),"
            " visitor: firstpaint.decisions[0].visitor_id})"
        )
        page.evaluate(  # a click that stays on the page
            "addEventListener('click', (e) => e.preventDefault());"
            "firstpaint.decisions[0].el.querySelector('a').click()"
        )
        page.evaluate("firstpaint.consent(true)")
        after = page.evaluate(
            "({vid: localStorage.getItem('fp_vid'), who: firstpaint.who,"
            " local: Object.keys(localStorage)})"
        )
        page.goto(site.url + "/")
        page.wait_for_function(f"({HERO_DECISION}) !== null")
        second = page.evaluate("firstpaint.decisions[0].visitor_id")
    finally:
        context.close()

    assert before == {"local": [], "session": [], "visitor": ""}
    logged = wait_for(
        lambda: [d for d in records(site, "decision") if d["decision_id"] == hero["decision_id"]]
    )
    assert logged[0]["visitor_id"] == ""
    click = wait_for(
        lambda: [
            e
            for e in records(site, "event")
            if e["type"] == "click" and e.get("decision_id") == hero["decision_id"]
        ]
    )
    assert not click[0].get("session_id")
    assert after["vid"] and after["who"]["visitor"] == after["vid"]
    assert sorted(after["local"]) == ["fp_consent", "fp_vid"]
    assert second == after["vid"]  # consent is remembered on the next page
