"""Model safety: a newly learned model is promoted only if it does not evaluate worse offline.

Before the learner publishes a version, `PromotionGate.check(candidate, current)` estimates what
each model would have earned on the recent decision log (`model_export.evaluate.evaluate_log`:
the logged propensities, the engagement joined from click/conversion events) and refuses the
candidate when, for any slot with at least `min_decisions` logged decisions, its estimate
(`estimator`, SNIPS by default) is lower than the current model's by more than `max_drop`
(relative: 0.10 = ten per cent). With fewer decisions there is nothing to judge by, and the
candidate is promoted: a cold start must be able to learn.

A refused candidate is held (`LearningLoop.held`); an operator can publish it anyway with
`POST /admin/promote`, or go back to any earlier version with `python -m origin rollback`.

The recent log is read through the gate's own consumer (`promotion`), so the learner's and the
dashboard's positions are untouched; at most `window` decisions are kept, and an evaluation
runs at most every `min_interval_s` (30 s in the origin) because it costs CPU in the serving
process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model_export.policy import canonical_json
from origin.storage import DECISION, EVENT, Storage

log = logging.getLogger("origin.promotion")
CONSUMER = "promotion"
ENGAGED = ("click", "conversion")


@dataclass(frozen=True)
class Verdict:
    """Whether to promote, why, and the per-slot estimates it rests on."""

    promote: bool
    reason: str
    current: dict[str, float] = field(default_factory=dict)
    candidate: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "current": self.current,
            "candidate": self.candidate,
            "decisions": self.decisions,
        }


class RecentLog:
    """The last `window` logged decisions with `engaged` (0/1) joined from their events."""

    def __init__(self, storage: Storage, window: int = 10_000, consumer: str = CONSUMER) -> None:
        self.storage = storage
        self.window = window
        self.consumer = consumer
        self._decisions: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def refresh(self, batch: int = 5000, max_batches: int = 200) -> None:
        """Fold in what was logged since the last call (bounded work per call)."""
        for _ in range(max_batches):
            entries = self.storage.read_log(self.consumer, batch)
            for entry in entries:
                record = entry.record
                decision_id = record.get("decision_id")
                if not isinstance(decision_id, str):
                    continue
                if entry.kind == DECISION and decision_id not in self._decisions:
                    self._decisions[decision_id] = {**record, "engaged": 0}
                    if len(self._decisions) > self.window:
                        self._decisions.popitem(last=False)
                elif entry.kind == EVENT and record.get("type") in ENGAGED:
                    if decision_id in self._decisions:
                        self._decisions[decision_id]["engaged"] = 1
            self.storage.ack(self.consumer, entries)
            if len(entries) < batch:
                return

    def records(self) -> list[dict[str, Any]]:
        return list(self._decisions.values())


class PromotionGate:
    """Refuses a candidate model that evaluates worse than the current one on the recent log."""

    def __init__(
        self,
        storage: Storage,
        *,
        max_drop: float = 0.10,
        estimator: str = "snips",
        min_decisions: int = 500,
        window: int = 3000,
        n_boot: int = 20,
        min_interval_s: float = 0.0,
    ) -> None:
        from model_export.evaluate import ESTIMATORS

        if not 0 <= max_drop < 1:
            raise ValueError(f"max_drop must be in [0, 1), got {max_drop!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        self.max_drop = max_drop
        self.estimator = estimator
        self.min_decisions = min_decisions
        self.n_boot = n_boot
        self.min_interval_s = min_interval_s
        self.log = RecentLog(storage, window)
        self.last: Verdict | None = None
        self._judged_at = -math.inf

    def values(
        self, model: Mapping[str, Any], records: list[dict[str, Any]]
    ) -> dict[str, tuple[float, int]]:
        """slot → (estimated value of `model`, decisions it rests on)."""
        from model_export.evaluate import evaluate_log

        reports = evaluate_log(
            records,
            model,
            n_boot=self.n_boot,
            min_samples=self.min_decisions,
            estimators=(self.estimator,),
        )
        return {r.slot: (r.estimates[self.estimator].value, r.n) for r in reports}

    @staticmethod
    def with_features(
        records: list[dict[str, Any]], spec: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Records carrying their active features under `spec`, computed once per record and spec
        (the gate runs at every publish interval over the same recent decisions)."""
        from model_export.features import features

        key = hashlib.sha256(canonical_json(spec).encode()).hexdigest()
        for record in records:
            if record.get("_spec") != key:
                record["features"] = [list(f) for f in features(record.get("context") or {}, spec)]
                record["_spec"] = key
        return records

    def check(self, candidate: Mapping[str, Any], current: Mapping[str, Any]) -> Verdict:
        """Promote `candidate` over `current`? Judged on the recent decision log.

        An evaluation costs about a second of CPU for 3000 decisions, in the serving process:
        within `min_interval_s` of the last one its verdict stands (a refusal holds publishing
        until the next evaluation; after an approval the learner's next versions, a few seconds
        of learning apart, are published until then)."""
        now = time.monotonic()
        if self.last is not None and now - self._judged_at < self.min_interval_s:
            return self.last
        self._judged_at = now
        self.log.refresh()
        records = [r for r in self.log.records() if r.get("slot") in candidate["slots"]]
        counts: dict[str, int] = {}
        for record in records:
            counts[record["slot"]] = counts.get(record["slot"], 0) + 1
        judged = [r for r in records if counts[r["slot"]] >= self.min_decisions]
        if not judged:
            verdict = Verdict(
                True,
                f"fewer than {self.min_decisions} logged decisions per slot: nothing to judge by",
                decisions=counts,
            )
            self.last = verdict
            return verdict
        if candidate["features"] == current["features"]:
            judged = self.with_features(judged, candidate["features"])
        else:  # a different feature spec: each model computes its own features from the context
            judged = [
                {k: v for k, v in r.items() if k not in ("features", "_spec")} for r in judged
            ]
        new = self.values(candidate, judged)
        old = self.values(current, [r for r in judged if r["slot"] in current["slots"]])
        worse = [
            f"{slot}: {self.estimator} {new[slot][0]:.4f} < {old[slot][0]:.4f}"
            f" - {self.max_drop:.0%}"
            for slot in new
            if slot in old and new[slot][0] < old[slot][0] * (1 - self.max_drop)
        ]
        verdict = Verdict(
            promote=not worse,
            reason="; ".join(worse)
            if worse
            else f"{self.estimator} within {self.max_drop:.0%} of the current model or better",
            current={s: v for s, (v, _) in old.items()},
            candidate={s: v for s, (v, _) in new.items()},
            decisions={s: n for s, (_, n) in new.items()},
        )
        if worse:
            log.warning(
                "candidate model %s not promoted: %s",
                candidate.get("model_version"),
                verdict.reason,
            )
        self.last = verdict
        return verdict
