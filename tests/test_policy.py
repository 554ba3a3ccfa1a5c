"""The policy (CONTRACT §5–§6): determinism, holdout, exploration and model loading."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import shutil
import struct
import subprocess
from collections import Counter

import pytest

from model_export.policy import (
    Decision,
    ModelError,
    canonical_json,
    choice_probabilities,
    decide,
    decision_fields,
    fnv1a32,
    js_number,
    load_model,
    seal,
)

CONTEXT = {
    "url": "https://trailhead.example/running?utm_medium=email",
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile Safari/604.1",
    "timezone": "Europe/Berlin",
    "now_ms": 1_764_073_800_000,
}


def test_same_inputs_give_the_same_decision(golden_model: dict) -> None:
    first = decide(golden_model, CONTEXT, "hero", visitor_id="v1", decision_id="d1")
    again = decide(copy.deepcopy(golden_model), dict(CONTEXT), "hero", "v1", "d1")
    assert first == again
    variants = {decide(golden_model, CONTEXT, "hero", "v1", f"d{i}").variant for i in range(300)}
    assert len(variants) > 1  # the decision id drives exploration


def test_holdout_is_its_share_of_visitors_and_gets_the_default(golden_model: dict) -> None:
    n = 10_000
    share = golden_model["slots"]["hero"]["holdout"]
    assert share > 0
    held = [decide(golden_model, {}, "hero", f"visitor-{i}", "d") for i in range(n)]
    rate = sum(d.holdout for d in held) / n
    assert abs(rate - share) < 4.6 * math.sqrt(share * (1 - share) / n)  # ± 4.6 std deviations
    for d in held:
        if d.holdout:
            assert (d.variant, d.propensity, d.explored) == ("default", 1.0, False)


def test_holdout_follows_the_visitor_not_the_decision(golden_model: dict) -> None:
    visitor = next(
        f"v{i}" for i in range(10_000) if decide(golden_model, {}, "hero", f"v{i}").holdout
    )
    assert all(decide(golden_model, CONTEXT, "hero", visitor, f"d{i}").holdout for i in range(50))


@pytest.mark.parametrize("slot", ["hero", "promo"])
def test_choice_probabilities_sum_to_one_and_respect_exploration(
    golden_model: dict, slot: str
) -> None:
    config = golden_model["slots"][slot]
    k = len(config["variants"])
    decision = decide(golden_model, CONTEXT, slot, "v", "d")
    pi = decision.probabilities
    assert sum(pi.values()) == pytest.approx(1.0, abs=1e-12)
    best = max(config["variants"], key=decision.scores.__getitem__)
    exploration = config["exploration"]
    if exploration["kind"] == "egreedy":
        e = exploration["epsilon"]
        assert pi[best] == pytest.approx(1 - e + e / k)
        assert all(pi[v] == pytest.approx(e / k) for v in pi if v != best)
    else:
        assert min(pi.values()) >= exploration["floor"]
        assert max(pi, key=pi.__getitem__) == best


def test_softmax_with_equal_scores_is_uniform() -> None:
    slot = {"variants": ["a", "b", "c"], "exploration": {"kind": "softmax", "temperature": 0.1}}
    slot["exploration"]["floor"] = 0.05
    pi = choice_probabilities(slot, {"a": 0.2, "b": 0.2, "c": 0.2})
    assert all(p == pytest.approx(1 / 3) for p in pi.values())


def test_draws_follow_the_choice_probabilities_and_log_them(golden_model: dict) -> None:
    n = 4_000
    decisions = [decide(golden_model, {}, "promo", "", f"d{i}") for i in range(n)]
    drawn = [d for d in decisions if not d.holdout]
    counts = Counter(d.variant for d in drawn)
    pi = drawn[0].probabilities
    for variant, p in pi.items():
        sd = (p * (1 - p) / len(drawn)) ** 0.5
        assert abs(counts[variant] / len(drawn) - p) < 4 * sd + 1e-9
    assert all(d.propensity == pi[d.variant] for d in drawn)
    best = max(pi, key=pi.__getitem__)
    assert all(d.explored == (d.variant != best) for d in drawn)


def test_forced_variant_is_marked_and_certain(golden_model: dict) -> None:
    decision = decide(golden_model, CONTEXT, "hero", "v", "d", force="camping")
    assert (decision.variant, decision.propensity, decision.forced) == ("camping", 1.0, True)
    assert decide(golden_model, CONTEXT, "hero", "v", "d", force="nope").forced is False


def test_top_features_explain_the_chosen_variant(golden_model: dict) -> None:
    decision = decide(golden_model, CONTEXT, "hero", "v", "d")
    top = decision.top_features
    assert 0 < len(top) <= 3
    magnitudes = [abs(c) for _, c in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    weights = golden_model["slots"]["hero"]["weights"][decision.variant]
    assert all(name in weights for name, _ in top)


def test_fnv1a32_reference_values() -> None:
    assert fnv1a32("") == 2166136261
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


def test_fnv1a32_continues_from_the_hash_of_a_prefix() -> None:
    for prefix, rest in [("holdout\x1f", "v1\x1fhero"), ("", "x"), ("é\x1f", "東京"), ("ab", "")]:
        assert fnv1a32(rest, fnv1a32(prefix)) == fnv1a32(prefix + rest)


@pytest.mark.parametrize("force", [None, "camping"])
def test_decision_fields_are_the_decision_as_a_dict_in_field_order(
    golden_model: dict, force: str | None
) -> None:
    names = [f.name for f in dataclasses.fields(Decision)]
    for i in range(200):  # holdouts, exploration and the best variant among them
        args = (golden_model, CONTEXT, "hero", f"v{i}", f"d{i}", force)
        fields = decision_fields(*args)
        assert list(fields) == names
        assert fields == decide(*args).to_dict()


@pytest.mark.parametrize(
    ("x", "text"),
    [(0.1, "0.1"), (1e-7, "1e-7"), (-2.0, "-2"), (1e21, "1e+21"), (123456.5, "123456.5")],
)
def test_numbers_are_written_as_javascript_writes_them(x: float, text: str) -> None:
    assert js_number(x) == text


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_numbers_are_written_as_node_writes_them() -> None:
    """Doubles of every magnitude, and those next to where either language changes notation."""
    rng = random.Random(7)
    xs = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(3000)]
    xs += [rng.uniform(0, 1) * 10.0 ** rng.randint(-9, 23) for _ in range(3000)]
    for edge in (1e-7, 1e-6, 1e-5, 1e-4, 1e15, 1e16, 1e17, 1e21, 1e22):
        xs += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    xs += [0.1 + 0.2, 5e-324, 1.7976931348623157e308, 123.0, 2.0**53, 0.001, 1 / 3]
    xs = [x for x in xs if math.isfinite(x) and x != 0]
    xs += [-x for x in xs[::7]]
    script = "process.stdout.write(JSON.stringify(JSON.parse(require('fs').readFileSync(0))"
    script += ".map(x => String(x))))"
    node = subprocess.run(
        ["node", "-e", script], input=json.dumps(xs), capture_output=True, text=True, check=True
    )
    assert [js_number(x) for x in xs] == json.loads(node.stdout)


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    assert canonical_json({"b": [1.0, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'


def test_a_sealed_golden_model_loads(golden_model: dict) -> None:
    assert load_model(json.dumps(golden_model)) == golden_model


def _resealed(model: dict, change) -> dict:
    broken = copy.deepcopy(model)
    change(broken)
    return seal(broken)


def _exploration(model: dict, kind: str) -> dict:
    """The exploration settings of the golden model's first slot that explores by `kind`."""
    return next(
        s["exploration"] for s in model["slots"].values() if s["exploration"]["kind"] == kind
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="firstpaint.model/2"), "format"),
        (lambda m: m["slots"]["hero"].update(default="missing"), "default"),
        (lambda m: _exploration(m, "egreedy").update(epsilon=1.5), "epsilon"),
        (lambda m: m["slots"]["hero"].update(exploration={"kind": "greedy"}), "kind"),
        (lambda m: _exploration(m, "softmax").update(floor=0.3), "floor"),
        (lambda m: _exploration(m, "softmax").update(temperature=0), "temperature"),
        (lambda m: m["slots"]["hero"].update(holdout=1), "holdout"),
        (lambda m: m["slots"]["hero"].update(variants=[]), "variants"),
        (lambda m: m["features"].update(version="fp-features/0"), "version"),
    ],
)
def test_loading_rejects_an_inconsistent_model(golden_model: dict, change, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_model(_resealed(golden_model, change))


def test_loading_rejects_a_tampered_checksum_or_non_json(golden_model: dict) -> None:
    tampered = copy.deepcopy(golden_model)
    tampered["slots"]["hero"]["bias"]["default"] += 1
    with pytest.raises(ModelError, match="sha256"):
        load_model(tampered)
    with pytest.raises(ModelError, match="not JSON"):
        load_model("{not json")
    for not_an_object in ("[1]", "5", '"model"'):
        with pytest.raises(ModelError, match="object"):
            load_model(not_an_object)
