"""The online learner: rewards joined to decisions, per-event FTRL updates, new model versions.

`RewardJoiner` (here) turns the decision log and the engagement events into labelled examples;
`OnlineLearner` (`origin.ftrl`, re-exported here) learns from them and publishes models.
Time is always passed in (ms since the epoch); nothing here reads a clock.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any

from model_export.features import features, is_mapping
from origin.ftrl import Example, NotFittedError, OnlineLearner, is_finite_number

__all__ = ["REWARD_KINDS", "Example", "NotFittedError", "OnlineLearner", "RewardJoiner"]

REWARD_KINDS = ("impression", "click", "conversion")


class RewardJoiner:
    """Joins engagement events to decisions by decision id within the reward window.

    The reward is 1 once a click or a conversion arrives, else 0; an impression alone is
    recorded (`impressed` in the example) but is not a reward. A click or conversion closes
    its decision at once — the label can no longer change, so waiting for the window to end
    would only delay learning — and its example is handed out by the next `expire()`. A
    closed decision id is remembered until its window ends, so a second click, or a retried
    `add_decision`, is never counted twice. Decisions nobody engaged with become reward-0
    examples when their window closes.

    Memory is bounded by `max_open`: past it, the oldest open decision is closed early as a
    reward-0 example (`counts["evicted"]`); closed ids and undrained examples are capped the
    same way (`counts["forgotten"]`, `counts["dropped"]`). `counts` also holds the accepted
    `decisions`, `impressions` and `rewards`, and the rejections by reason (`duplicate`,
    `late_decision`, `unknown`, `closed`, `late_reward`) for `/metrics`.

    Call `expire()` often (every second or every batch): rewarded examples wait there. State
    survives a restart either through `state()`/`from_state()` (JSON) or by replaying the
    decision and event log of the last window in order, then `skip_ready()`: time is only
    ever passed in, so a replay reopens the same decisions.
    """

    def __init__(self, window_ms: int = 30 * 60 * 1000, max_open: int = 100_000) -> None:
        if not (is_finite_number(window_ms) and window_ms > 0):
            raise ValueError(f"window_ms must be a number > 0, got {window_ms!r}")
        if not (isinstance(max_open, int) and max_open >= 1):
            raise ValueError(f"max_open must be an integer >= 1, got {max_open!r}")
        self.window_ms = window_ms
        self.max_open = max_open
        self.now_ms: float | None = None  # the latest time `expire` was called with
        self.counts: dict[str, int] = dict.fromkeys(
            ("decisions", "duplicate", "late_decision", "impressions", "rewards", "unknown",
             "closed", "late_reward", "expired", "evicted", "forgotten", "dropped"),
            0,
        )  # fmt: skip
        self._open: dict[str, dict[str, Any]] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # heap over open decisions
        self._seq = 0
        self._closed: dict[str, float] = {}  # decision id → end of its window
        self._closed_deadlines: list[tuple[float, str]] = []
        self._ready: deque[dict[str, Any]] = deque()

    def __len__(self) -> int:
        """Open decisions (still waiting for engagement)."""
        return len(self._open)

    def add_decision(self, decision: Mapping[str, Any]) -> bool:
        """Open a decision; False for a duplicate id or one whose window has already closed."""
        record = _decision_record(decision)
        decision_id = record["decision_id"]
        if decision_id in self._open or decision_id in self._closed:
            self.counts["duplicate"] += 1
            return False
        deadline = record["ts_ms"] + self.window_ms
        if self.now_ms is not None and deadline <= self.now_ms:
            self.counts["late_decision"] += 1
            return False
        while len(self._open) >= self.max_open:
            self._close(self._pop_oldest(), reward=0.0)
            self.counts["evicted"] += 1
        self._seq += 1
        record["seq"] = self._seq
        self._open[decision_id] = record
        heapq.heappush(self._deadlines, (deadline, self._seq, decision_id))
        self.counts["decisions"] += 1
        return True

    def add_reward(self, decision_id: str, kind: str, value: float, ts_ms: float) -> bool:
        """Record an event for `decision_id`; False if the id is unknown or its window is over.

        `value` (a conversion's amount) does not change the reward, which is 1 for a click or
        a conversion; the event log keeps it for the dashboard.
        """
        if kind not in REWARD_KINDS:
            raise ValueError(f"event kind must be one of {REWARD_KINDS}, got {kind!r}")
        if not is_finite_number(ts_ms):
            raise ValueError(f"event ts_ms must be a finite number, got {ts_ms!r}")
        record = self._open.get(decision_id)
        if record is None:
            self.counts["closed" if decision_id in self._closed else "unknown"] += 1
            return False
        if ts_ms >= record["ts_ms"] + self.window_ms:
            self.counts["late_reward"] += 1
            return False
        if kind == "impression":
            record["impressions"] += 1
            self.counts["impressions"] += 1
            return True
        del self._open[decision_id]
        self._close(record, reward=1.0)
        self.counts["rewards"] += 1
        return True

    def expire(self, now_ms: float, spec: Mapping[str, Any]) -> list[Example]:
        """Examples ready at `now_ms`: rewarded decisions, then those whose window closed."""
        self._close_due(now_ms)
        examples = [_example(record, spec) for record in self._ready]
        self._ready.clear()
        return examples

    def skip_ready(self, now_ms: float) -> int:
        """`expire` without the examples: what is ready is dropped, and how many is returned.
        For a replay of log entries whose examples were learned from before."""
        self._close_due(now_ms)
        skipped = len(self._ready)
        self._ready.clear()
        return skipped

    def _close_due(self, now_ms: float) -> None:
        if not is_finite_number(now_ms):
            raise ValueError(f"now_ms must be a finite number, got {now_ms!r}")
        self.now_ms = now_ms if self.now_ms is None else max(self.now_ms, now_ms)
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            record = self._pop_oldest()
            if record is not None:
                self._close(record, reward=0.0)
                self.counts["expired"] += 1
        while self._closed_deadlines and self._closed_deadlines[0][0] <= now_ms:
            self._closed.pop(heapq.heappop(self._closed_deadlines)[1], None)

    def _pop_oldest(self) -> dict[str, Any] | None:
        """Remove and return the open decision whose window ends first (None if stale entry)."""
        _, seq, decision_id = heapq.heappop(self._deadlines)
        record = self._open.get(decision_id)
        if record is None or record["seq"] != seq:
            return None
        del self._open[decision_id]
        return record

    def _close(self, record: dict[str, Any] | None, reward: float) -> None:
        if record is None:
            return
        record["reward"] = reward
        self._ready.append(record)
        if len(self._ready) > self.max_open:
            self._ready.popleft()
            self.counts["dropped"] += 1
        deadline = record["ts_ms"] + self.window_ms
        self._closed[record["decision_id"]] = deadline
        heapq.heappush(self._closed_deadlines, (deadline, record["decision_id"]))
        if len(self._closed) > self.max_open:
            self._closed.pop(heapq.heappop(self._closed_deadlines)[1], None)
            self.counts["forgotten"] += 1
        # Entries of decisions closed by a reward stay in the heap; compact now and then.
        if len(self._deadlines) > 2 * len(self._open) + 1024:
            self._deadlines = [e for e in self._deadlines if e[2] in self._open]
            heapq.heapify(self._deadlines)

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-serialisable data."""
        return {
            "window_ms": self.window_ms,
            "max_open": self.max_open,
            "now_ms": self.now_ms,
            "seq": self._seq,
            "counts": dict(self.counts),
            "open": list(self._open.values()),
            "closed": [[d, t] for d, t in self._closed.items()],
            "ready": list(self._ready),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RewardJoiner:
        """A joiner resumed from `state()` output."""
        joiner = cls(window_ms=state["window_ms"], max_open=state["max_open"])
        joiner.now_ms = state["now_ms"]
        joiner._seq = state["seq"]
        joiner.counts.update(state["counts"])
        for record in state["open"]:
            joiner._open[record["decision_id"]] = dict(record)
            deadline = record["ts_ms"] + joiner.window_ms
            joiner._deadlines.append((deadline, record["seq"], record["decision_id"]))
        heapq.heapify(joiner._deadlines)
        joiner._closed = {d: t for d, t in state["closed"]}
        joiner._closed_deadlines = [(t, d) for d, t in joiner._closed.items()]
        heapq.heapify(joiner._closed_deadlines)
        joiner._ready.extend(dict(r) for r in state["ready"])
        return joiner


def _decision_record(decision: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a logged decision the join needs; ValueError names a bad field."""
    for key in ("decision_id", "slot", "variant"):
        if not isinstance(decision.get(key), str) or not decision[key]:
            raise ValueError(f"decision: `{key}` must be a non-empty string")
    propensity = decision.get("propensity")
    if not (is_finite_number(propensity) and 0 < propensity <= 1):
        raise ValueError(f"decision: `propensity` must be in (0, 1], got {propensity!r}")
    if not is_finite_number(decision.get("ts_ms")):
        raise ValueError("decision: `ts_ms` must be a finite number")
    precomputed = decision.get("features")
    context = decision.get("context")
    if precomputed is None and not is_mapping(context):  # once per log entry the learner reads
        raise ValueError("decision: `context` (an object) or `features` is required")
    if precomputed is not None and not (
        isinstance(precomputed, list | tuple)
        and all(isinstance(f, list | tuple) and len(f) == 2 for f in precomputed)
    ):
        raise ValueError("decision: `features` must be a list of [name, value] pairs")
    return {
        "decision_id": decision["decision_id"],
        "slot": decision["slot"],
        "variant": decision["variant"],
        "propensity": propensity,
        "ts_ms": decision["ts_ms"],
        "context": None if precomputed is not None else dict(context),  # type: ignore[arg-type]
        "features": None if precomputed is None else [list(f) for f in precomputed],
        "impressions": 0,
    }


def _example(record: Mapping[str, Any], spec: Mapping[str, Any]) -> Example:
    active = record["features"]
    if active is None:
        active = [list(f) for f in features(record["context"], spec)]
    return {
        "decision_id": record["decision_id"],
        "slot": record["slot"],
        "variant": record["variant"],
        "propensity": record["propensity"],
        "reward": record["reward"],
        "features": active,
        "impressed": record["impressions"] > 0,
        "ts_ms": record["ts_ms"],
    }
