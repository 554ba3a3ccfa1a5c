"""Write the golden vectors: `python -m tests.golden.generate` (deterministic; see README.md)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_export.export import build_model
from model_export.features import default_spec, feature_names, features
from model_export.policy import decide, fnv1a32
from model_export.site import load_site
from tests.golden.contexts import BASE, contexts

GOLDEN = Path(__file__).resolve().parent
SEED = 20261125
CREATED_AT = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
# Cases whose choice sits this close to a boundary are re-drawn with another decision id, so
# float32 (ONNX) and last-ulp differences of exp/sin in other runtimes cannot flip the choice.
MARGIN = 1e-4
VISITOR_IDS = ["v-{:04d}", "{:08x}-4c1e-9a7d-visitor", "", "访客-{}-🙂"]


def golden_model() -> dict[str, Any]:
    """The fixed model: site.toml's slots, seeded random sparse weights over the site's spec."""
    rng = random.Random(SEED)
    site = load_site()
    spec = default_spec(site.vocab())
    names = feature_names(spec)
    slots = {}
    for name, slot in site.slots.items():
        config = slot.config()
        config["bias"] = {v: round(rng.gauss(-1.5, 0.15), 6) for v in config["variants"]}
        config["weights"] = {
            v: {f: round(rng.gauss(0, 0.8), 6) for f in names if rng.random() < 0.5}
            for v in config["variants"]
        }
        slots[name] = config
    return build_model(spec, slots, CREATED_AT)


def _in_holdout(unit: str, slot: str, rate: float) -> bool:
    return fnv1a32(f"holdout\x1f{unit}\x1f{slot}") / 2**32 < rate


def _robust(model: dict[str, Any], case: dict[str, Any]) -> bool:
    """True when the score ranking and the draw are each at least MARGIN from a tie."""
    config = model["slots"][case["slot"]]
    ranked = sorted(case["scores"].values(), reverse=True)
    if len(ranked) > 1 and ranked[0] - ranked[1] < MARGIN:
        return False
    if case["holdout"]:
        return True
    u = fnv1a32(f"{case['visitor_id']}\x1f{case['slot']}\x1f{case['decision_id']}") / 2**32
    cumulative = 0.0
    for v in config["variants"]:
        cumulative += case["probabilities"][v]
        if abs(u - cumulative) < MARGIN:
            return False
    return True


def make_case(
    model: dict[str, Any], case_id: str, context: Any, slot: str, visitor_id: str, decision_id: str
) -> dict[str, Any]:
    """One golden case: the policy's full output for (context, slot, visitor, decision id)."""
    for attempt in range(20):
        did = decision_id if attempt == 0 else f"{decision_id}.{attempt}"
        decision = decide(model, context, slot, visitor_id=visitor_id, decision_id=did)
        case = {
            "id": case_id,
            "context": context,
            "slot": slot,
            "visitor_id": visitor_id,
            "decision_id": did,
            "features": [[n, v] for n, v in features(context, model["features"])],
            "scores": decision.scores,
            "probabilities": decision.probabilities,
            "variant": decision.variant,
            "propensity": decision.propensity,
            "holdout": decision.holdout,
            "explored": decision.explored,
            "top_features": decision.top_features,
        }
        if _robust(model, case):
            return case
    raise SystemExit(f"{case_id}: no decision id keeps the choice away from a tie; change SEED")


def holdout_visitors(slot: str, rate: float, count: int) -> list[str]:
    """The first `count` visitor ids `h-<n>` that land in `slot`'s holdout."""
    found, n = [], 0
    while len(found) < count:
        if _in_holdout(f"h-{n}", slot, rate):
            found.append(f"h-{n}")
        n += 1
    return found


def golden_cases(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every golden context in every slot, plus visitors (and decision ids) in the holdout."""
    cases = []
    for slot in model["slots"]:
        for i, (name, context) in enumerate(contexts()):
            visitor = VISITOR_IDS[i % len(VISITOR_IDS)].format(i)
            cases.append(make_case(model, f"{name}/{slot}", context, slot, visitor, f"d-{i:04d}"))
        rate = model["slots"][slot]["holdout"]
        for j, visitor in enumerate(holdout_visitors(slot, rate, 8)):
            case_id = f"holdout/visitor-{j}/{slot}"
            cases.append(make_case(model, case_id, BASE, slot, visitor, f"hd-{j}"))
        anonymous = next(f"anon-{n}" for n in range(10**6) if _in_holdout(f"anon-{n}", slot, rate))
        case = make_case(model, f"holdout/no-visitor-id/{slot}", BASE, slot, "", anonymous)
        cases.append(case)
    return cases


def main() -> None:
    model = golden_model()
    cases = golden_cases(model)
    (GOLDEN / "model.json").write_text(json.dumps(model, indent=1, ensure_ascii=False) + "\n")
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
    (GOLDEN / "cases.json").write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    held = sum(c["holdout"] for c in cases)
    print(f"wrote {len(cases)} cases ({held} in holdout) for model {model['model_version']}")


if __name__ == "__main__":
    main()
