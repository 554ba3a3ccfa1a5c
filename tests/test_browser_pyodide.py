"""The Python policy inside Pyodide, in Chromium: it reproduces every golden vector, decides the
page's idle slots after load, re-decides them on exit intent, and an attribute turns it off."""

from __future__ import annotations

import html
from typing import Any

import pytest

from model_export.site import load_site
from tests.support_browser import (
    DESKTOP_UA,
    golden_mismatches,
    policy_variant,
    records,
    with_script_attributes,
)

pytestmark = pytest.mark.browser

READY = "window.firstpaint && firstpaint.pyodide && firstpaint.pyodide.ready"
PROMO_HTML = load_site().slots["promo"].variants
PROMO_DECISIONS = (
    "firstpaint.decisions.filter((d) => d.slot === 'promo').map((d) => ({decision_id:"
    " d.decision_id, visitor_id: d.visitor_id, context: d.context, variant: d.variant,"
    " source: d.source, token: d.token || null}))"
)


@pytest.fixture(scope="module")
def python_page(chromium, site) -> Any:
    """The demo home page once its Pyodide worker is ready (cold: a fresh context)."""
    context = chromium.new_context(user_agent=DESKTOP_UA, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(site.url + "/")
    page.wait_for_function(READY, timeout=180_000)
    yield page
    context.close()
    assert errors == []


def test_python_policy_in_pyodide_reproduces_the_golden_vectors(
    python_page, golden_model, golden_cases
):
    assert python_page.evaluate("firstpaint.pyodide.python").startswith("3.")
    page_model = python_page.evaluate("window.firstpaintModel.model")
    assert page_model["sha256"] == golden_model["sha256"]
    requests = [
        {k: case[k] for k in ("context", "slot", "visitor_id", "decision_id")}
        for case in golden_cases
    ]
    results = python_page.evaluate("(requests) => firstpaint.python(requests)", requests)
    assert len(results) == len(golden_cases)
    assert golden_mismatches(golden_cases, results) == []


def test_idle_slot_is_decided_by_the_python_policy(python_page, site, golden_model):
    python_page.wait_for_function(f"{PROMO_DECISIONS}.some((d) => d.token)")
    (promo,) = python_page.evaluate(PROMO_DECISIONS)
    shown = python_page.evaluate("document.querySelector('[data-fp-slot=promo]').innerHTML")
    expected = policy_variant(
        golden_model, promo["context"], "promo", promo["visitor_id"], promo["decision_id"]
    )
    assert promo["source"] == "pyodide"
    assert promo["variant"] == expected
    assert html.unescape(shown) == html.unescape(PROMO_HTML[expected])
    logged = [d for d in records(site, "decision") if d["decision_id"] == promo["decision_id"]]
    assert [d["variant"] for d in logged] == [expected]


def test_exit_intent_re_decides_the_idle_slot_out_of_view(python_page, golden_model):
    python_page.evaluate("window.scrollTo(0, 0)")
    python_page.evaluate(
        "document.dispatchEvent(new MouseEvent('mouseout', {clientY: 0, relatedTarget: null,"
        " bubbles: true}))"
    )
    python_page.wait_for_function(f"{PROMO_DECISIONS}.length === 2")
    latest = python_page.evaluate(PROMO_DECISIONS)[-1]
    shown = python_page.evaluate("document.querySelector('[data-fp-slot=promo]').innerHTML")
    expected = policy_variant(
        golden_model, latest["context"], "promo", latest["visitor_id"], latest["decision_id"]
    )
    assert latest["context"]["session"]["last_event"] == "exit"
    assert latest["variant"] == expected
    assert html.unescape(shown) == html.unescape(PROMO_HTML[expected])


def test_pyodide_off_attribute_keeps_the_worker_from_starting(chromium, site):
    context = chromium.new_context(user_agent=DESKTOP_UA)
    requested: list[str] = []

    def pyodide_off(route: Any) -> None:
        body = with_script_attributes(route.fetch().text(), 'data-fp-pyodide="off"')
        route.fulfill(body=body, content_type="text/html; charset=utf-8")

    context.route(site.url + "/", pyodide_off)  # not a timing test
    page = context.new_page()
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(site.url + "/")
        page.wait_for_load_state("load")
        page.evaluate("new Promise((done) => requestIdleCallback(() => setTimeout(done, 500)))")
        state = page.evaluate(
            "({pyodide: firstpaint.pyodide || null, promo: document.querySelector("
            "'[data-fp-slot=promo]').innerHTML, hero: firstpaint.decisions.length})"
        )
    finally:
        context.close()
    assert state["pyodide"] is None
    assert state["hero"] == 1  # the first-paint decision still happened
    assert html.unescape(state["promo"]) == html.unescape(PROMO_HTML["free_shipping"])
    assert not [url for url in requested if "pyodide" in url]


def test_unreachable_pyodide_keeps_the_default_and_no_page_error(chromium, site):
    context = chromium.new_context(user_agent=DESKTOP_UA)
    context.route("**/fp/pyodide/**", lambda route: route.abort())  # not a timing test
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    try:
        page.goto(site.url + "/")
        page.wait_for_function("firstpaint.fallbacks.some((r) => r.startsWith('pyodide'))")
        state = page.evaluate(
            "({promo: document.querySelector('[data-fp-slot=promo]').innerHTML,"
            " ready: firstpaint.pyodide.ready})"
        )
    finally:
        context.close()
    assert errors == []
    assert state["ready"] is False
    assert html.unescape(state["promo"]) == html.unescape(PROMO_HTML["free_shipping"])
