"""Simulated visitors with a known ground truth, and decision logs made as production makes them.

The ground truth is a logistic model over the contract's own features (so the trained policy
can learn it): stable preferences by referrer, device and local time, a *drift* after which
social visitors prefer `hiking` instead of `sale`, and first-time visitors who arrive on
`/camping` from the `camping_launch` campaign and prefer `camping`. Time is injected as
simulated epoch milliseconds; nothing sleeps.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from model_export.export import build_model
from model_export.features import default_spec, features
from model_export.policy import decide
from model_export.site import Site, load_site

START_MS = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)
GAP_MS = 30_000  # one decision every 30 simulated seconds: 100k decisions span ~35 days
BASE_LOGIT = -3.0
DRIFT_SEGMENT = "referrer_class=social"

# Ground-truth log-odds per slot and variant over feature names (BASE_LOGIT + Σ w·x).
TRUTH: dict[str, dict[str, dict[str, float]]] = {
    "hero": {
        "default": {"referrer_class=direct": 0.8, "visitor=returning": 0.3},
        "running": {
            "landing_section=running": 1.6,
            "referrer_class=search": 0.4,
            "session_categories=running": 0.8,
        },
        "morning_run": {"device=mobile": 0.8, "referrer_class=search": 0.8, "hour_sin": 1.3},
        "newsletter_deal": {
            "referrer_class=email": 1.8,
            "hour_sin": -1.0,
            "visitor=returning": 0.5,
        },
        "sale": {DRIFT_SEGMENT: 1.6, "landing_section=sale": 1.0, "price_band=low": 0.4},
        "camping": {
            "utm_campaign=camping_launch": 2.2,
            "landing_section=camping": 1.2,
            "session_categories=camping": 0.8,
        },
        "hiking": {"landing_section=hiking": 1.6, "device=desktop": 0.4},
        "cycling": {"landing_section=cycling": 1.6, "referrer_class=paid": 0.6},
    },
    "promo": {
        "free_shipping": {"referrer_class=paid": 0.5, "device=mobile": 0.3},
        "bundle": {
            "utm_campaign=camping_launch": 1.8,
            "landing_section=camping": 1.0,
            "session_categories=camping": 1.0,
        },
        "membership": {"visitor=returning": 1.2, "referrer_class=email": 0.8},
        "reviews": {"visitor=new": 0.6, "referrer_class=search": 0.8, "price_band=high": 0.9},
    },
}
# After the drift the social segment's preference moves from `sale` to `hiking`.
DRIFT = {("hero", "sale"): 0.0, ("hero", "hiking"): 1.6}

_UAS = {
    "mobile": [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    ],
    "tablet": [
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    ],
    "desktop": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    ],
}
_PLACES = [  # (country, language, zone)
    ("US", "en-US", "America/New_York"),
    ("US", "en-US", "America/Los_Angeles"),
    ("GB", "en-GB", "Europe/London"),
    ("DE", "de-DE", "Europe/Berlin"),
    ("JP", "ja-JP", "Asia/Tokyo"),
    ("AU", "en-AU", "Australia/Sydney"),
]
# source → (weight, referrers, query, landing sections)
_SOURCES: dict[str, tuple[float, list[str], str, list[str]]] = {
    "search": (0.3, ["https://www.google.com/", "https://www.bing.com/"], "", ["home", "running"]),
    "social": (0.2, ["https://l.instagram.com/", "https://t.co/x"], "", ["home", "sale"]),
    "email": (
        0.15,
        ["", "https://mail.google.com/"],
        "utm_source=newsletter&utm_medium=email&utm_campaign=black_friday",
        ["home", "sale"],
    ),
    "paid": (0.1, ["https://www.google.com/"], "utm_source=google&utm_medium=cpc", ["cycling"]),
    "direct": (0.15, [""], "", ["home", "hiking", "cycling", "running"]),
    "other": (0.1, ["https://blog.example.org/best-trails"], "", ["hiking", "camping"]),
}
CAMPING_LAUNCH = "utm_source=partner&utm_campaign=camping_launch"


class Simulator:
    """Visitors and their ground-truth engagement; `visitor(t_ms)` draws one arriving at t_ms."""

    def __init__(
        self,
        seed: int = 0,
        drift_at_ms: int | None = None,
        launch_at_ms: int | None = 0,
        launch_share: float = 0.1,
        site: Site | None = None,
    ) -> None:
        self.seed = seed
        self.drift_at_ms = drift_at_ms
        self.launch_at_ms = launch_at_ms
        self.launch_share = launch_share
        self.site = site or load_site()
        self.spec = default_spec(self.site.vocab())
        self.rng = random.Random(seed)
        self._visitors: list[str] = []
        self._count = 0

    def visitor(self, t_ms: int) -> tuple[str, dict[str, Any]]:
        """A visitor arriving at simulated time `t_ms`: (visitor id, raw context)."""
        rng = self.rng
        returning = bool(self._visitors) and rng.random() < 0.35
        if returning:
            visitor_id = rng.choice(self._visitors)
        else:
            self._count += 1
            visitor_id = f"sim{self.seed}-{self._count}"
            self._visitors.append(visitor_id)
        launched = self.launch_at_ms is not None and t_ms >= self.launch_at_ms
        if launched and not returning and rng.random() < self.launch_share:
            referrer, query, section = "https://blog.example.org/", CAMPING_LAUNCH, "camping"
        else:
            names = list(_SOURCES)
            source = rng.choices(names, weights=[_SOURCES[s][0] for s in names])[0]
            _, referrers, query, sections = _SOURCES[source]
            referrer, section = rng.choice(referrers), rng.choice(sections)
        device = rng.choices(["mobile", "desktop", "tablet"], weights=[0.55, 0.35, 0.1])[0]
        country, language, zone = rng.choice(_PLACES)
        path = "/" if section == "home" else f"/{section}"
        context: dict[str, Any] = {
            "url": f"https://trailhead.example{path}" + (f"?{query}" if query else ""),
            "referrer": referrer,
            "user_agent": rng.choice(_UAS[device]),
            "accept_language": f"{language},en;q=0.8",
            "country": country,
            "timezone": zone,
            "now_ms": t_ms,
            "returning": returning,
        }
        if rng.random() < 0.4:  # a later page: the origin knows the session
            context["session"] = {
                "categories": rng.sample(self.site.categories, rng.randint(0, 2)),
                "price": round(rng.uniform(5, 300), 2),
                "pages": rng.randint(1, 12),
                "last_event": rng.choice(["view", "click", "impression"]),
            }
        return visitor_id, context

    def engagement_probability(self, context: Mapping[str, Any], slot: str, variant: str) -> float:
        """Ground truth p(engage | context, variant) at the context's `now_ms`."""
        now = context.get("now_ms") if isinstance(context, Mapping) else None
        drifted = (
            self.drift_at_ms is not None
            and isinstance(now, int | float)
            and now >= self.drift_at_ms
        )
        weights = TRUTH.get(slot, {}).get(variant, {})
        z = BASE_LOGIT
        for name, value in features(context, self.spec):
            w = weights.get(name, 0.0)
            if drifted and name == DRIFT_SEGMENT:
                w = DRIFT.get((slot, variant), w)
            z += w * value
        return 1.0 / (1.0 + math.exp(-z))

    def engaged(
        self, context: Mapping[str, Any], slot: str, variant: str, rng: random.Random
    ) -> int:
        """Draw the outcome (0/1) of showing `variant` in `slot` to this context."""
        return int(rng.random() < self.engagement_probability(context, slot, variant))


def uniform_model(site: Site | None = None) -> dict[str, Any]:
    """The uniform-random logging policy as a sealed model (ε-greedy with ε = 1)."""
    site = site or load_site()
    slots = {}
    for name, slot in site.slots.items():
        config = slot.config()
        config.update(bias={}, weights={}, exploration={"kind": "egreedy", "epsilon": 1})
        slots[name] = config
    return build_model(default_spec(site.vocab()), slots, datetime.fromtimestamp(0, UTC))


def decisions(
    n: int,
    model: Mapping[str, Any] | None = None,
    seed: int = 0,
    simulator: Simulator | None = None,
    start_ms: int = START_MS,
) -> Iterator[dict[str, Any]]:
    """`n` decision-log records (CONTRACT §8), made by `policy.decide`, slots taken in turn."""
    sim = simulator or Simulator(seed)
    model = model or uniform_model(sim.site)
    slots = list(model["slots"])
    outcomes = random.Random(seed + 1)
    for i in range(n):
        t_ms = start_ms + i * GAP_MS
        visitor_id, context = sim.visitor(t_ms)
        slot = slots[i % len(slots)]
        decision_id = f"{outcomes.getrandbits(64):016x}"
        decision = decide(model, context, slot, visitor_id=visitor_id, decision_id=decision_id)
        yield {
            "decision_id": decision_id,
            "slot": slot,
            "variant": decision.variant,
            "propensity": decision.propensity,
            "context": context,
            "visitor_id": visitor_id,
            "model_version": decision.model_version,
            "ts_ms": t_ms,
            "engaged": sim.engaged(context, slot, decision.variant, outcomes),
        }


def simulate_log(n: int, out: str | Path | TextIO, **options: Any) -> int:
    """Write `n` decisions as JSON lines to a path or text stream; `options` go to `decisions`."""
    if isinstance(out, str | Path):
        with open(out, "w", encoding="utf-8") as stream:
            return simulate_log(n, stream, **options)
    count = 0
    for record in decisions(n, **options):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


Chooser = Callable[[Mapping[str, Any], str, str, str], str]


def _chooser(model: Mapping[str, Any]) -> Chooser:
    def choose(context: Mapping[str, Any], slot: str, visitor_id: str, decision_id: str) -> str:
        return decide(model, context, slot, visitor_id, decision_id).variant

    return choose


def true_value(
    policy: Mapping[str, Any] | Chooser,
    n: int = 20_000,
    seed: int = 0,
    simulator: Simulator | None = None,
    start_ms: int = START_MS,
) -> float:
    """Expected engagement of a policy under the ground truth: mean true p of its choices.

    `policy` is a model (decided with `policy.decide`, exploration and holdout included) or a
    function `(context, slot, visitor_id, decision_id) -> variant`. The same seed gives the same
    visitors, so two policies are compared on identical traffic.
    """
    sim = simulator or Simulator(seed)
    if isinstance(policy, Mapping):
        choose, slots = _chooser(policy), list(policy["slots"])
    else:
        choose, slots = policy, list(sim.site.slots)
    total = 0.0
    for i in range(n):
        visitor_id, context = sim.visitor(start_ms + i * GAP_MS)
        slot = slots[i % len(slots)]
        variant = choose(context, slot, visitor_id, f"tv{seed}-{i}")
        total += sim.engagement_probability(context, slot, variant)
    return total / n
