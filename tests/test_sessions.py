"""The session context engine: short-term session state, long-term profile, combined."""

from __future__ import annotations

import pytest

from model_export.features import features
from model_export.site import load_site
from origin.clock import ManualClock
from origin.models import cold_model
from origin.sessions import SessionEngine
from origin.storage.sqlite import SqliteStorage

CATEGORIES = ["running", "camping", "hiking", "cycling", "sale"]


@pytest.fixture
def engine(tmp_path):
    clock = ManualClock()
    return SessionEngine(
        SqliteStorage(str(tmp_path / "s.db"), clock=clock), clock, CATEGORIES, ttl_s=600
    )


def view(engine, session, category=None, price=None, visitor=None):
    engine.observe(
        {
            "type": "view",
            "session_id": session,
            "visitor_id": visitor,
            "category": category,
            "price": price,
            "ts_ms": engine.clock.now_ms(),
        }
    )


def test_views_become_the_contract_session_context(engine):
    view(engine, "s1", "camping", 200.0)
    engine.clock.advance(5_000)
    view(engine, "s1", "running", 89.0)
    view(engine, "s1", "Running", 129.0)
    view(engine, "s1", "knitting")  # not a site category: a page, but no interest
    engine.clock.advance(3_000)
    session = engine.context("s1", None)
    assert session["categories"] == ["running", "camping"]
    assert session["price"] == pytest.approx((200 + 89 + 129) / 3, abs=0.01)
    assert session["pages"] == 4 and session["last_event"] == "view" and session["recency_s"] == 3


def test_session_features_reach_the_model(engine):
    view(engine, "s1", "running", 129.0)
    spec = cold_model(load_site(), engine.clock.now_ms())["features"]
    active = dict(features(engine.enrich({}, "s1", None), spec))
    assert active["session_categories=running"] == 1.0
    assert active["price_band=mid"] == 1.0 and active["last_event=view"] == 1.0
    assert active["session_pages"] > 0


def test_reward_events_update_last_event_only(engine):
    view(engine, "s1", "hiking")
    engine.observe({"type": "click", "session_id": "s1", "ts_ms": engine.clock.now_ms()})
    session = engine.context("s1", None)
    assert session["last_event"] == "click" and session["pages"] == 1


def test_an_idle_session_expires(engine):
    view(engine, "s1", "running")
    engine.clock.advance(601_000)
    assert engine.context("s1", None) == {}


def test_returning_visitor_profile_is_kept_apart_and_combined(engine):
    for _ in range(3):
        view(engine, "old", "camping", 250.0, visitor="v1")
    engine.clock.advance(3_600_000)  # the first session is long over; the profile is not
    assert engine.session_state("old") == {}
    view(engine, "new", "cycling", visitor="v1")
    session = engine.context("new", "v1")
    assert session["categories"] == ["cycling", "camping"]  # this session leads
    assert session["pages"] == 1  # pages count this session only
    assert session["price"] == 250.0  # unknown in this session: the profile fills it in
    assert engine.enrich({}, "new", "v1")["returning"] is True
    view(engine, "first", "running", visitor="v2")
    assert engine.enrich({}, "first", "v2")["returning"] is False
    assert engine.enrich({"returning": True}, "first", "v2")["returning"] is True
