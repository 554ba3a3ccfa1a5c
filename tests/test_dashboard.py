"""`/dashboard`: statistics from the log, safe HTML, and a real render in Chromium."""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from model_export.policy import load_model
from model_export.simulate import Simulator
from origin.app import create_app
from origin.clock import ManualClock
from origin.dashboard import Counts, DashboardStats, dashboard_routes, lift, render, wilson
from origin.models import stored
from origin.services import Settings
from origin.storage import DECISION, EVENT
from origin.storage.sqlite import SqliteStorage
from tests.conftest import GOLDEN, ROOT, free_port

ARTIFACTS = ROOT / "build" / "test-artifacts"
T0 = 1_764_000_000_000


def test_wilson_interval_brackets_the_rate_and_stays_in_0_1():
    low, high = wilson(30, 100)
    assert low < 0.30 < high and 0.2 < low and high < 0.4
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_lift_interval_excludes_zero_only_with_a_clear_difference():
    value, low, high = lift(Counts(10_000, 2_000), Counts(2_000, 200))
    assert value == pytest.approx(1.0) and 0 < low < 1.0 < high
    _, low, high = lift(Counts(100, 11), Counts(100, 10))
    assert low < 0 < high
    assert lift(Counts(100, 5), Counts(100, 0)) is None


@pytest.fixture
def storage(tmp_path) -> Iterator[SqliteStorage]:
    db = SqliteStorage(str(tmp_path / "d.db"), clock=ManualClock(T0))
    yield db
    db.close()


def decision(i: int, slot: str, variant: str, holdout: bool = False) -> tuple[str, dict]:
    return (DECISION, {"decision_id": f"d{i}", "slot": slot, "variant": variant,
                       "propensity": 0.5, "ts_ms": T0 - 1000 + i, "holdout": holdout})  # fmt: skip


def click(i: int, slot: str, variant: str, kind: str = "click") -> tuple[str, dict]:
    return (EVENT, {"type": kind, "decision_id": f"d{i}", "slot": slot, "variant": variant,
                    "ts_ms": T0 - 500 + i})  # fmt: skip


def test_stats_join_clicks_to_decisions_once_and_split_the_holdout(storage):
    storage.append(
        [decision(i, "hero", "running" if i % 2 else "default", i >= 8) for i in range(10)]
    )
    storage.append([click(1, "hero", "running"), click(1, "hero", "running", "conversion"),
                    click(8, "hero", "default"), click(99, "hero", "running")])  # fmt: skip
    stats = DashboardStats(storage, batch=3)
    stats.refresh()
    hero = stats.slots["hero"]
    assert (hero.variants["running"].decisions, hero.variants["running"].engaged) == (5, 1)
    assert (hero.variants["default"].decisions, hero.variants["default"].engaged) == (5, 1)
    assert (hero.holdout.decisions, hero.holdout.engaged) == (2, 1)
    assert (hero.personalized.decisions, hero.personalized.engaged) == (8, 1)
    assert stats.decisions_per_s(T0) == pytest.approx(10 / 60)
    storage.append([click(3, "hero", "running")])
    stats.refresh()  # only the new entry is read
    assert stats.slots["hero"].variants["running"].engaged == 2
    # the oldest engagement newer than the model: decision 1's click at T0 - 499
    assert stats.freshness_ms(published_ms=T0 - 600, now_ms=T0) == 499


def test_page_escapes_every_name_from_the_log_and_the_model(storage):
    evil = '<img src=x onerror="alert(1)">'
    model = load_model((GOLDEN / "model.json").read_text())
    model["slots"]["hero"]["weights"]["running"][evil] = 3.0
    storage.publish_model(stored(model, T0 - 60_000))
    storage.append([decision(1, evil, evil), click(1, evil, evil)])
    stats = DashboardStats(storage)
    stats.refresh()
    page = render(stats, storage.current_model(), T0)
    assert evil not in page and "<script" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "<b>60 s</b>" in page  # model age


def test_route_serves_html_without_external_assets(storage):
    storage.publish_model(stored(load_model((GOLDEN / "model.json").read_text()), T0))
    app = Starlette(routes=dashboard_routes(storage, ManualClock(T0)))
    response = TestClient(app).get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", response.text)
    assert "<script" not in response.text


# --- a short simulated run against the real origin, rendered in Chromium ---------------------


@contextlib.contextmanager
def serving(app, port: int) -> Iterator[str]:
    """`app` under uvicorn on 127.0.0.1 in a background thread."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the origin did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def origin_after_a_short_run(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """The real origin app (storage, learner) after 400 simulated visitors with their clicks."""
    tmp = tmp_path_factory.mktemp("dashboard")
    settings = Settings(db=str(tmp / "origin.db"), token_secret=b"dashboard-test",
                        model_path=str(GOLDEN / "model.json"), publish_interval_s=0.5)  # fmt: skip
    app = create_app(settings)
    assert any(getattr(r, "path", None) == "/dashboard" for r in app.routes)
    sim, outcomes = Simulator(seed=3), random.Random(4)
    with serving(app, free_port()) as url, httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(40):
            events = []
            for _visitor in range(10):
                visitor_id, context = sim.visitor(int(time.time() * 1000))
                body = {"slots": ["hero", "promo"], "context": context, "visitor_id": visitor_id}
                answer = http.post("/v1/decide", json=body)
                assert answer.status_code == 200, answer.text
                for shown in answer.json()["decisions"]:
                    events.append({"type": "impression", "token": shown["token"]})
                    p = sim.engagement_probability(context, shown["slot"], shown["variant"])
                    # 3x the true rate, so that 400 visitors fill a readable page
                    if outcomes.random() < min(1.0, 3 * p):
                        events.append({"type": "click", "token": shown["token"]})
            sent = http.post("/v1/events", json={"events": events})
            assert sent.status_code == 202, sent.text
        yield url, json.loads(http.get("/v1/model").text)


@pytest.mark.browser
def test_dashboard_renders_in_chromium_with_the_models_variants(origin_after_a_short_run):
    from playwright.sync_api import sync_playwright

    from tests.support_browser import launch

    url, model = origin_after_a_short_run
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(r.url))
        response = page.goto(url + "/dashboard")
        assert response is not None and response.status == 200
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        for slot, config in model["slots"].items():
            section = page.locator(f'section[data-slot="{slot}"]')
            bars = section.locator("svg.chart g.bar")
            labels = [bars.nth(i).get_attribute("data-label") for i in range(bars.count())]
            assert labels == config["variants"]
            shown = [bars.nth(i).locator("text.note").text_content() for i in range(bars.count())]
            assert sum(int(n.rsplit(" of ", 1)[1]) for n in shown if n and " of " in n) > 300
            assert section.locator("svg.weights rect").count() > 0
            lift_chart = section.locator("svg.lift")
            assert lift_chart.count() == 1 or "not enough" in section.inner_text()
            box = section.locator("svg.chart").first.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
        tiles = dict(t.split("\n", 1) for t in page.locator(".tile").all_inner_texts())
        # The learner may have published again since the run: the version is a recent one.
        after = httpx.get(url + "/v1/model").json()["model_version"]
        assert tiles["model version"] in (model["model_version"], after)
        assert float(tiles["decisions / s (last minute)"]) > 0
        assert not errors
        browser.close()
