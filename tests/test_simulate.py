"""The simulator: ground-truth preferences, drift, the camping launch, and production-like logs."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime

import pytest

from model_export.features import feature_names
from model_export.simulate import (
    GAP_MS,
    START_MS,
    TRUTH,
    Simulator,
    decisions,
    simulate_log,
    true_value,
    uniform_model,
)
from model_export.train import check_record

SIM = Simulator(seed=3)
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Safari/604.1"
MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Version/17.4 Safari/605.1.15"


def at(iso_utc: str) -> int:
    return int(datetime.fromisoformat(iso_utc).replace(tzinfo=UTC).timestamp() * 1000)


def best(sim: Simulator, context: dict, slot: str = "hero") -> str:
    variants = sim.site.slots[slot].variants
    return max(variants, key=lambda v: sim.engagement_probability(context, slot, v))


MOBILE_SEARCH_MORNING = {
    "url": "https://trailhead.example/",
    "referrer": "https://www.google.com/",
    "user_agent": IPHONE,
    "timezone": "Europe/London",
    "now_ms": at("2026-11-25T07:30:00"),
}
NEWSLETTER_EVENING = {
    "url": "https://trailhead.example/?utm_source=newsletter&utm_medium=email",
    "user_agent": MAC,
    "timezone": "Europe/London",
    "now_ms": at("2026-11-25T19:30:00"),
    "returning": True,
}
SOCIAL = {"url": "https://trailhead.example/", "referrer": "https://t.co/x", "user_agent": IPHONE}
CAMPING_LAUNCH = {
    "url": "https://trailhead.example/camping?utm_source=partner&utm_campaign=camping_launch",
    "referrer": "https://blog.example.org/",
    "user_agent": MAC,
    "returning": False,
}


def test_same_seed_same_visitors_and_time_is_injected() -> None:
    one, two = Simulator(seed=9), Simulator(seed=9)
    times = [START_MS + i * 1000 for i in range(200)]
    first = [one.visitor(t) for t in times]
    assert first == [two.visitor(t) for t in times]
    assert [context["now_ms"] for _, context in first] == times
    assert first != [Simulator(seed=10).visitor(t) for t in times]


def test_ground_truth_speaks_in_the_contract_features() -> None:
    names = set(feature_names(SIM.spec))
    for slot, variants in TRUTH.items():
        assert set(variants) == set(SIM.site.slots[slot].variants)
        for weights in variants.values():
            assert set(weights) <= names


@pytest.mark.parametrize(
    ("context", "slot", "expected"),
    [
        (MOBILE_SEARCH_MORNING, "hero", "morning_run"),
        (NEWSLETTER_EVENING, "hero", "newsletter_deal"),
        (SOCIAL, "hero", "sale"),
        (CAMPING_LAUNCH, "hero", "camping"),
        (CAMPING_LAUNCH, "promo", "bundle"),
        (NEWSLETTER_EVENING, "promo", "membership"),
    ],
)
def test_stable_preferences(context: dict, slot: str, expected: str) -> None:
    assert best(SIM, context, slot) == expected


def test_morning_and_evening_differ_for_the_same_visitor() -> None:
    evening = {**MOBILE_SEARCH_MORNING, "now_ms": at("2026-11-25T19:30:00")}
    assert best(SIM, evening) != "morning_run"


def test_drift_flips_the_social_segment_from_sale_to_hiking() -> None:
    drift = at("2026-11-20T00:00:00")
    sim = Simulator(seed=1, drift_at_ms=drift)
    before = {**SOCIAL, "timezone": "UTC", "now_ms": drift - 1}
    after = {**before, "now_ms": drift}
    assert best(sim, before) == "sale" and best(sim, after) == "hiking"
    direct = {"url": "https://trailhead.example/cycling", "timezone": "UTC"}
    p = [sim.engagement_probability({**direct, "now_ms": t}, "hero", "cycling") for t in (0, drift)]
    assert p[0] == p[1]  # other segments keep their preferences


def test_camping_launch_visitors_are_first_timers_arriving_after_the_launch() -> None:
    launch = START_MS + 500 * GAP_MS
    sim = Simulator(seed=4, launch_at_ms=launch, launch_share=0.2)
    seen = [sim.visitor(START_MS + i * GAP_MS) for i in range(1500)]
    launched = [(i, c) for i, (_, c) in enumerate(seen) if "camping_launch" in c["url"]]
    assert launched and all(i >= 500 for i, _ in launched)
    assert 0.08 < len(launched) / 1000 < 0.2  # 20% of the new visitors after the launch
    assert all(c["returning"] is False and "/camping?" in c["url"] for _, c in launched)
    assert all(best(sim, c) == "camping" for _, c in launched)


def test_logged_decisions_are_valid_and_propensities_are_the_logging_policy() -> None:
    records = list(decisions(2000, seed=5))
    slots = {name: slot.config() for name, slot in SIM.site.slots.items()}
    for line, record in enumerate(records, start=1):
        check_record(record, line, slots)
        k = len(slots[record["slot"]]["variants"])
        assert record["propensity"] in (1.0, pytest.approx(1 / k))
        assert record["ts_ms"] == record["context"]["now_ms"]
    assert {r["slot"] for r in records} == {"hero", "promo"}
    holdout = [r for r in records if r["propensity"] == 1.0]
    assert all(r["variant"] == slots[r["slot"]]["default"] for r in holdout)


def test_outcomes_follow_the_ground_truth() -> None:
    sim = Simulator(seed=6)
    records = list(decisions(2500, seed=6, simulator=Simulator(seed=6)))
    expected = sum(
        sim.engagement_probability(r["context"], r["slot"], r["variant"]) for r in records
    )
    engaged = sum(r["engaged"] for r in records)
    assert abs(engaged - expected) < 4 * expected**0.5


def test_engaged_draws_with_the_given_rng() -> None:
    rng_a, rng_b = random.Random(1), random.Random(1)
    draws_a = [SIM.engaged(CAMPING_LAUNCH, "hero", "camping", rng_a) for _ in range(500)]
    assert draws_a == [SIM.engaged(CAMPING_LAUNCH, "hero", "camping", rng_b) for _ in range(500)]
    p = SIM.engagement_probability(CAMPING_LAUNCH, "hero", "camping")
    assert abs(sum(draws_a) / 500 - p) < 4 * (p * (1 - p) / 500) ** 0.5


def test_simulate_log_writes_json_lines(tmp_path) -> None:
    stream = io.StringIO()
    assert simulate_log(50, stream, seed=2) == 50
    path = tmp_path / "log.jsonl"
    assert simulate_log(50, path, seed=2) == 50
    assert path.read_text() == stream.getvalue()
    assert len([json.loads(line) for line in stream.getvalue().splitlines()]) == 50


def test_true_value_ranks_an_oracle_above_uniform_random() -> None:
    oracle_sim = Simulator(seed=8)

    def oracle(context: dict, slot: str, visitor_id: str, decision_id: str) -> str:
        return best(oracle_sim, context, slot)

    uniform = true_value(uniform_model(), n=1500, seed=8)
    assert true_value(oracle, n=1500, seed=8) > 1.8 * uniform
    assert true_value(uniform_model(), n=1500, seed=8) == uniform  # same seed, same traffic
