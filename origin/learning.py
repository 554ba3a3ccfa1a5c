"""Wiring of the online learner: log → reward join → `partial_fit` → published model versions.

`LearningLoop.step()` reads what the storage log holds for the `learner` consumer (SQLite:
a cursor on the autoincrement log; Redis: a consumer group on the stream), feeds decisions
and reward events to the `RewardJoiner`, trains the `OnlineLearner` on the examples that are
ready, acknowledges the entries, and publishes `to_model()` when something was learned and at
least `publish_interval_s` passed since the last version. Time comes from the injected clock,
so tests drive it in simulated time; `run()` calls `step()` in a background thread.

A learner restart resumes from the consumer position. A clean stop (`stop()`) publishes what was
learned and checkpoints the decisions still waiting for a reward and the learner's own state
(its accumulators, which set each coordinate's step size), which `resume()` reopens; when
another version was published in between, the learner warm-starts from the current model
instead (its step sizes start afresh). After a `kill -9` there is no checkpoint:
`resume()` then replays the entries the learner had acknowledged (the last `replay_limit`), which
reopens the same decisions; what the replay closes was learned from before the crash and is not
learned again. Each publish also saves the learner's state as it was for that version (under
`<consumer>:published`), which a restart after a crash takes up if that version is still the
current one: the step sizes go on, and the published exploration bonus (`OnlineLearner.to_model`)
is not taken for learned weights. Only what was learned and not yet published (at most
`publish_interval_s`) is lost.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from model_export.policy import seal
from origin.clock import Clock
from origin.learner import OnlineLearner, RewardJoiner
from origin.models import ModelHolder
from origin.promotion import PromotionGate
from origin.storage import DECISION, EVENT, Storage, StorageError
from origin.validation import REWARD_TYPES

log = logging.getLogger("origin.learning")

# How long the learner thread waits when a step found less than a full batch. Each wake-up takes
# the GIL from the requests in the middle of their work; once a second instead of every 0.2 s
# cost ~2% less CPU per `/v1/decide` request under the origin benchmark's load (five pairs of
# fresh servers, lower in four: 546–587 against 558–603 µs), and a new model still goes out at
# most every `publish_interval_s` (5 s), so the learned model is at most a second later.
POLL_S = 1.0


class LearningLoop:
    """Consumes the log, learns online and publishes new model versions."""

    def __init__(
        self,
        storage: Storage,
        holder: ModelHolder,
        clock: Clock,
        learner: OnlineLearner,
        joiner: RewardJoiner,
        publish_interval_s: float = 5.0,
        consumer: str = "learner",
        batch: int = 2000,
        gate: PromotionGate | None = None,
        replay_limit: int = 100_000,
    ) -> None:
        if publish_interval_s < 0:
            raise ValueError("publish_interval_s must be >= 0")
        if holder.model is None:
            raise ValueError("the learner needs a starting model in the holder")
        self.storage = storage
        self.holder = holder
        self.clock = clock
        self.learner = learner.warm_start(holder.model)
        self.joiner = joiner
        self.publish_interval_s = publish_interval_s
        self.consumer = consumer
        self.batch = batch
        self.replay_limit = replay_limit
        self.examples = 0
        self.unpublished = 0
        self.published = 0
        self.bad_entries = 0
        self.last_publish_ms = clock.now_ms()
        self.gate = gate
        self.held: dict[str, Any] | None = None  # the last candidate the gate refused
        self.refused = 0
        self._base_sha = holder.model["sha256"]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> int:
        """One round: consume up to `batch` entries, learn what is ready, maybe publish."""
        entries = self.storage.read_log(self.consumer, self.batch)
        for entry in entries:
            self._consume(entry.kind, entry.record)
        now = self.clock.now_ms()
        examples = self.joiner.expire(now, self.holder.current()["features"])
        if examples:
            self.learner.partial_fit(examples)
            self.examples += len(examples)
            self.unpublished += len(examples)
        self.storage.ack(self.consumer, entries)
        self.maybe_publish()
        return len(entries)

    def _consume(self, kind: str, record: dict[str, Any]) -> None:
        try:
            if kind == DECISION:
                self.joiner.add_decision(record)
            elif kind == EVENT and record.get("type") in REWARD_TYPES:
                value = record.get("value") or 0.0
                self.joiner.add_reward(
                    record["decision_id"], record["type"], value, record["ts_ms"]
                )
        except (KeyError, ValueError) as exc:  # validated on the way in; count, never stop
            self.bad_entries += 1
            log.warning("learner skipped a log entry: %s", exc)

    def maybe_publish(self, force: bool = False) -> dict[str, Any] | None:
        """Publish the learned model if due; the published model or None."""
        now = self.clock.now_ms()
        due = now - self.last_publish_ms >= self.publish_interval_s * 1000
        if not self.unpublished or not (due or force):
            return None
        if self.holder.refresh() or self.holder.current()["sha256"] != self._base_sha:
            # Someone else published (a rollback, an admin): learn on from that model instead.
            self.learner.warm_start(self.holder.current())
            self._base_sha = self.holder.current()["sha256"]
            self.unpublished = 0
            return None
        created = datetime.fromtimestamp(now / 1000, UTC)
        model = self.learner.to_model("pending", created.strftime("%Y-%m-%dT%H:%M:%SZ"))
        # Named like model_export's builder: UTC stamp and the content's first 8 sha256 hex.
        model["model_version"] = f"{created.strftime('%Y%m%dT%H%M%SZ')}-{model['sha256'][:8]}"
        model = seal(model)
        if self.gate is not None and not force:
            if not self.gate.check(model, self.holder.current()).promote:
                self.held = model
                self.refused += 1
                self.last_publish_ms = now  # judged again after another interval of learning
                return None
        self.holder.publish(model, now)
        self._save_published_state(model["sha256"])
        self.held = None
        self._base_sha = model["sha256"]
        self.last_publish_ms = now
        self.unpublished = 0
        self.published += 1
        return model

    @property
    def _published_key(self) -> str:
        return f"{self.consumer}:published"

    def _learner_state(self, base_sha: str) -> dict[str, Any]:
        """The learner's state and the model it learned on from (see `_restore_learner`)."""
        return {"base_sha": base_sha, **self.learner.state()}

    def _save_published_state(self, sha256: str) -> None:
        """The learner's state for the version it just published, for a restart after a crash.
        Without it, that restart would warm-start from the published model: every step size at
        its largest again, and the exploration bonus taken for learned weights."""
        try:
            body = json.dumps(self._learner_state(sha256))
            self.storage.save_checkpoint(self._published_key, body)
        except StorageError as exc:  # the version is out; a crash before the next loses steps
            log.warning("learner state for the published version not saved: %s", exc)

    @property
    def progressive_loss(self) -> float:
        return float(getattr(self.learner, "progressive_loss_", float("nan")))

    def run(self, poll_s: float = POLL_S) -> None:
        """Step until `stop()`; a failing step is logged and retried after `poll_s`."""
        while not self._stop.is_set():
            try:
                busy = self.step() >= self.batch
            except Exception:
                log.exception("learner step failed; retrying")
                busy = False
            if not busy:
                self._stop.wait(poll_s)

    def resume(self) -> bool:
        """Reopen the decisions a previous learner left waiting for rewards: from its checkpoint
        after a clean stop, else by replaying the log it had processed. True if any reopened."""
        saved = self.storage.take_checkpoint(self.consumer)
        published = self.storage.take_checkpoint(self._published_key)
        if saved is None:
            reopened = self._replay()
            if published is not None and self._restore_learner(_parsed(published)):
                self._save_published_state(self._base_sha)  # kept for a crash before the next
            return reopened
        state = json.loads(saved)
        state["window_ms"] = self.joiner.window_ms  # the configured window wins
        state["max_open"] = self.joiner.max_open
        state["counts"] = {}  # counts, like `examples`, are per learner process
        learned = state.pop("learner", None)
        self.joiner = RewardJoiner.from_state(state)
        log.info("learner resumed %d open decisions", len(self.joiner))
        if learned is not None and self._restore_learner(learned):
            self._save_published_state(self._base_sha)  # kept for a crash before the next
        return True

    def _restore_learner(self, learned: dict[str, Any]) -> bool:
        """Go on with the saved learner state if the model it learned from is still current
        (True); after another publisher's version (a rollback, an admin), learn on from that
        instead, as `maybe_publish` does."""
        current = self.holder.current()
        if not learned or learned.get("base_sha") != current["sha256"]:
            log.info("learner checkpoint is for another model than the current one: not resumed")
            return False
        try:
            self.learner.restore(current, learned)
        except ValueError as exc:
            log.warning("learner state in the checkpoint not resumed: %s", exc)
            return False
        log.info("learner resumed its step sizes and unpublished learning from the checkpoint")
        return True

    def _replay(self) -> bool:
        """Rebuild the open decisions from the entries this consumer acknowledged before it
        stopped without a checkpoint (a crash; on a first start there are none)."""
        entries = self.storage.processed_log(self.consumer, self.replay_limit)
        if not entries:
            return False
        for entry in entries:
            self._consume(entry.kind, entry.record)
        now = self.clock.now_ms()
        oldest = entries[0].record.get("ts_ms")
        if len(entries) == self.replay_limit and isinstance(oldest, (int, float)):
            if oldest > now - self.joiner.window_ms:
                log.warning(
                    "learner replay read its limit of %d entries without reaching back a whole"
                    " reward window: older decisions stay closed", self.replay_limit,
                )  # fmt: skip
        skipped = self.joiner.skip_ready(now)
        self.joiner.counts = dict.fromkeys(self.joiner.counts, 0)  # per process, like `examples`
        log.info(
            "learner replayed %d log entries after an unclean stop: %d open decisions reopened,"
            " %d already learned from", len(entries), len(self.joiner), skipped,
        )  # fmt: skip
        return len(self.joiner) > 0

    def checkpoint(self) -> None:
        """Publish what was learned (the promotion gate still applies), then save the open
        decisions and the learner's state, so a restart loses neither. Entries read so far are
        already acknowledged."""
        if self.unpublished:
            self.last_publish_ms = 0  # due now
            self.maybe_publish()
        state = self.joiner.state()
        state["learner"] = self._learner_state(self._base_sha)
        self.storage.save_checkpoint(self.consumer, json.dumps(state))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="fp-learner", daemon=True)
        self._thread.start()

    def stop_soon(self) -> None:
        """Ask `run()` to return after its current step (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop stepping, then checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.checkpoint()
        except Exception:  # shutting down: say so, but let the rest of the shutdown run
            log.exception("learner checkpoint failed; open decisions will not be resumed")


def _parsed(body: str) -> dict[str, Any]:
    """A saved learner state, or {} (logged) if it is not a JSON object."""
    try:
        state = json.loads(body)
    except ValueError as exc:
        log.warning("learner state saved with the published version is not JSON: %s", exc)
        return {}
    return state if isinstance(state, dict) else {}
