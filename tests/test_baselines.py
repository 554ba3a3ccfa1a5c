"""The benchmark's alternative policies behave as their names promise."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from model_export import baselines
from model_export.features import features

VARIANTS = {"hero": ["default", "running", "camping"]}
T0 = 1_764_000_000_000  # 2025-11-24T16:00Z


def truth(context, slot, variant):
    """Search visitors like running, everyone else camping."""
    search = context.get("referrer", "").startswith("https://www.google.")
    best = "running" if search else "camping"
    return 0.3 if variant == best else 0.05


def visitor(i: int) -> dict:
    search = i % 2 == 0
    return {
        "url": "https://trailhead.example/",
        "referrer": "https://www.google.com/" if search else "https://www.facebook.com/",
        "now_ms": T0 + i * 1000,
    }


def replay(arm, n: int, seed: int = 1) -> float:
    """Mean true engagement of `arm` over `n` visitors, feeding it sampled outcomes."""
    rng = random.Random(seed)
    total = 0.0
    for i in range(n):
        context = visitor(i)
        variant, propensity = arm.decide(T0 + i * 1000, f"v{i}", context, "hero", f"d{i}")
        assert 0 < propensity <= 1
        p = truth(context, "hero", variant)
        total += p
        arm.observe(
            {
                "decision_id": f"d{i}",
                "visitor_id": f"v{i}",
                "slot": "hero",
                "variant": variant,
                "propensity": propensity,
                "context": context,
                "ts_ms": T0 + i * 1000,
                "engaged": int(rng.random() < p),
            }
        )
    return total / n


def test_uniform_random_shows_every_variant_about_equally():
    arm = baselines.UniformRandom(VARIANTS)
    shown = Counter(arm.decide(T0, f"v{i}", {}, "hero", f"d{i}")[0] for i in range(3000))
    assert set(shown) == set(VARIANTS["hero"])
    assert all(800 < c < 1200 for c in shown.values())


def test_oracle_picks_the_true_best_and_beats_everything():
    oracle = baselines.Oracle(VARIANTS, truth)
    assert replay(oracle, 200) == pytest.approx(0.3)
    assert replay(baselines.UniformRandom(VARIANTS), 2000) < 0.2


def test_best_single_variant_is_chosen_by_total_true_engagement():
    contexts = [visitor(i) for i in range(9)]  # five search visitors, four social
    rows = [("hero", {v: truth(c, "hero", v) for v in VARIANTS["hero"]}) for c in contexts]
    assert baselines.best_single_variants(rows) == {"hero": "running"}


def test_vowpal_wabbit_learns_the_contextual_preference(golden_model):
    arm = baselines.VowpalWabbit(VARIANTS, golden_model["features"], epsilon=0.1, seed=3)
    replay(arm, 3000)
    late = replay(arm, 1000, seed=2)
    arm.close()
    assert late > 0.25  # greedy on the right variant 90% of the time: 0.9·0.3 + 0.1·0.133


def test_nightly_batch_retrains_once_per_simulated_midnight(golden_model):
    calls = []

    def trainer(log, model):
        calls.append(len(log))
        return model

    hero = dict(golden_model, slots={"hero": golden_model["slots"]["hero"]})
    arm = baselines.NightlyBatch(hero, trainer, history=[{"seed": True}])
    day = baselines.DAY_MS
    start = (T0 // day) * day + 20 * 3_600_000  # 20:00 UTC
    for i, hours in enumerate([0, 1, 2, 5, 6, 30, 31, 60]):
        t = start + hours * 3_600_000
        context = {"url": "https://trailhead.example/", "now_ms": t}
        variant, _ = arm.decide(t, f"v{i}", context, "hero", f"d{i}")
        arm.observe({"variant": variant, "engaged": 0})
    # Midnights crossed before hours 5, 30 and 60 (not before 6 or 31: same day).
    assert calls == [1 + 3, 1 + 5, 1 + 7]
    assert arm.retrained_ == 3


def test_vw_features_are_the_contract_features(golden_model):
    arm = baselines.VowpalWabbit(VARIANTS, golden_model["features"])
    context = visitor(0)
    shared = arm._example(context, "hero")[0]
    arm.close()
    for name, _ in features(context, golden_model["features"]):
        assert f" {name}:" in shared


def test_exploration_ceiling_is_between_the_mean_and_the_best_true_score():
    p = {"default": 0.1, "running": 0.3, "camping": 0.05}
    greedy = {"variants": list(p), "default": "default", "holdout": 0.0,
              "exploration": {"kind": "egreedy", "epsilon": 0.0}}  # fmt: skip
    assert baselines.exploration_ceiling(greedy, p) == pytest.approx(0.3)
    uniform = {**greedy, "exploration": {"kind": "egreedy", "epsilon": 1.0}}
    assert baselines.exploration_ceiling(uniform, p) == pytest.approx(0.15)
    held = {**greedy, "holdout": 0.05}
    assert baselines.exploration_ceiling(held, p) == pytest.approx(0.95 * 0.3 + 0.05 * 0.1)


def test_uniform_share_is_epsilon_or_the_softmax_floor_mass():
    variants = ["default", "running", "camping", "hiking"]
    egreedy = {"variants": variants, "exploration": {"kind": "egreedy", "epsilon": 0.07}}
    softmax = {
        "variants": variants,
        "exploration": {"kind": "softmax", "temperature": 0.03, "floor": 0.002},
    }
    assert baselines.uniform_share(egreedy) == pytest.approx(0.07)
    assert baselines.uniform_share(softmax) == pytest.approx(4 * 0.002)


def test_vowpal_wabbit_explores_each_slot_with_its_own_epsilon(golden_model):
    variants = {"hero": VARIANTS["hero"], "promo": VARIANTS["hero"]}
    arm = baselines.VowpalWabbit(variants, golden_model["features"], {"hero": 0.0, "promo": 1.0})
    for i in range(60):  # `running` always engages, the others never
        for slot in variants:
            variant, _ = arm.decide(T0, "v", visitor(0), slot, f"d{i}")
            arm.observe({"decision_id": f"d{i}", "slot": slot, "engaged": variant == "running"})
    pmf = {slot: arm.workspaces_[slot].predict(arm._example(visitor(0), slot)) for slot in variants}
    arm.close()
    assert pmf["hero"] == pytest.approx([0.0, 1.0, 0.0])  # ε = 0: greedy on `running`
    assert pmf["promo"] == pytest.approx([1 / 3] * 3)  # ε = 1: uniform whatever it learned
