"""Freshness: a burst of clicks reaches the served model within 10 s, and the edge within 30 s.

A real origin process (SQLite, the default learner thread, publishing every second) and the
edge worker in front of it. The burst: decisions for one segment — visitors landing on
/hiking from a search — where `cycling` was shown (as exploration shows it) and clicked, while
the starting model prefers another variant for them. The assertion is on model *content*: the
served model's best variant for that segment becomes `cycling`.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from model_export.features import features
from model_export.policy import decide, load_model, scores
from origin.tokens import sign
from tests.conftest import ROOT
from tests.support_origin import TEST_SECRET, running_origin

SEGMENT = {
    "url": "https://trailhead.example/hiking?utm_source=google&utm_campaign=summer_sale",
    "referrer": "https://www.google.com/",
    "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0",
}
TARGET = "cycling"
CLICKS = 150
MODEL_BOUND_S = 10
EDGE_BOUND_S = 30


def best_variant(model: dict) -> str:
    p = scores(model["slots"]["hero"], features(SEGMENT, model["features"]))
    return max(p, key=p.__getitem__)


def burst(url: str, model: dict) -> None:
    """Log CLICKS edge-style decisions that showed TARGET to the segment, and click them all."""
    explore = decide(model, SEGMENT, "hero", "v", "d").probabilities[TARGET]
    now = int(time.time() * 1000)
    decisions, clicks = [], []
    for i in range(CLICKS):
        record = {
            "decision_id": uuid.uuid4().hex,
            "slot": "hero",
            "variant": TARGET,
            "propensity": explore,
            "model_version": model["model_version"],
            "visitor_id": f"fresh-{i}",
            "context": {**SEGMENT, "now_ms": now},
            "ts_ms": now,
        }
        record["token"] = sign(TEST_SECRET.encode(), record, now)
        decisions.append(record)
        clicks.append({"type": "click", "token": record["token"], "ts_ms": now + 1000})
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(0, CLICKS, 50):
            assert (
                client.post("/v1/decisions", json={"decisions": decisions[i : i + 50]}).status_code
                == 202
            )
        for i in range(0, CLICKS, 50):
            assert client.post("/v1/events", json={"events": clicks[i : i + 50]}).status_code == 202


@pytest.mark.workerd
def test_a_burst_of_clicks_reaches_the_model_and_the_edge(tmp_path):
    from tests.support_edge import edge_worker

    env = {"FP_PUBLISH_INTERVAL_S": "1"}
    starter = ROOT / "edge" / "src" / "model.json"  # the model the edge bundles: both start equal
    with (
        running_origin(tmp_path, env=env, model=starter) as origin,
        edge_worker(origin.url, token_secret=TEST_SECRET) as edge,
    ):
        start = load_model(httpx.get(origin.url + "/v1/model").content)
        assert best_variant(start) != TARGET, (
            "the starting model must not already prefer the target"
        )
        assert httpx.get(edge.url + "/", timeout=30).headers.get("x-fp-model")  # the edge decides

        burst(origin.url, start)
        acknowledged = time.monotonic()

        # 1. The origin serves a model that prefers TARGET for the segment within 10 s.
        etag, learned = None, None
        while time.monotonic() - acknowledged < MODEL_BOUND_S:
            response = httpx.get(origin.url + "/v1/model", headers={"If-None-Match": etag or ""})
            if response.status_code == 200:
                etag, model = response.headers["etag"], load_model(response.content)
                if best_variant(model) == TARGET:
                    learned = model
                    break
            time.sleep(0.2)
        assert learned is not None, f"no model preferring {TARGET} within {MODEL_BOUND_S} s"
        model_s = time.monotonic() - acknowledged

        # 2. The edge worker in front decides with that version (or a later one) within 30 s.
        fresh = {learned["model_version"]}
        edge_version = None
        while time.monotonic() - acknowledged < EDGE_BOUND_S:
            fresh.add(load_model(httpx.get(origin.url + "/v1/model").content)["model_version"])
            edge_version = httpx.get(edge.url + "/", timeout=10).headers.get("x-fp-model")
            if edge_version in fresh:
                break
            time.sleep(0.5)
        print(
            f"model reflected the burst after {model_s:.1f} s; edge after "
            f"{time.monotonic() - acknowledged:.1f} s ({edge_version})"
        )
        assert edge_version in fresh, f"edge still on {edge_version} after {EDGE_BOUND_S} s"
