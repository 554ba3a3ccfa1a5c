"""Settings and the `Origin`: everything a request handler needs, built once per process."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from anyio import to_thread

from model_export.site import SITE_TOML, Site
from origin.clock import Clock, SystemClock
from origin.logwriter import LogWriter
from origin.metrics import Counter, Gauge, Histogram, Registry
from origin.models import ModelHolder
from origin.ratelimit import RateLimitConfigError, RateLimits
from origin.sessions import SessionEngine
from origin.storage import Storage
from origin.validation import Limits

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
LEARNER_MODES = ("thread", "manual", "off")


class ConfigError(ValueError):
    """Settings the origin cannot start with; the message says which and how to fix it."""


@dataclass
class Settings:
    """How one origin process runs. `from_env` reads the `FP_*` variables."""

    db: str | None = None
    redis_url: str | None = None
    model_path: str | None = None
    site_path: str = str(SITE_TOML)
    token_secret: bytes = field(default=b"", repr=False)
    admin_token: str | None = field(default=None, repr=False)
    publish_interval_s: float = 5.0
    reward_window_s: float = 1800.0
    session_ttl_s: int = 1800
    consent_required: bool = (
        False  # as the edge's FP_CONSENT_REQUIRED: no visitor id until fp_consent=1
    )
    learner: str = "thread"
    model_poll_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    rate_limits: RateLimits = field(default_factory=RateLimits.off)  # from_env: on by default
    promotion_max_drop: float | None = None  # origin.promotion; from_env: 0.10 unless "off"
    clock: Clock = field(default_factory=SystemClock)
    browser_dist: Path = ROOT / "browser" / "dist"
    pyodide_dir: Path = ROOT / "node_modules" / "pyodide"

    def __post_init__(self) -> None:
        if bool(self.db) == bool(self.redis_url):
            raise ConfigError(
                "give exactly one storage: --db FILE.db (FP_DB) or --redis URL (FP_REDIS_URL)"
            )
        if not self.token_secret:
            raise ConfigError(
                "FP_TOKEN_SECRET is not set: the HMAC secret shared with the edge worker"
            )
        if self.learner not in LEARNER_MODES:
            raise ConfigError(f"learner must be one of {LEARNER_MODES}, got {self.learner!r}")
        if self.publish_interval_s < 0 or self.reward_window_s <= 0:
            raise ConfigError("FP_PUBLISH_INTERVAL_S must be >= 0 and FP_REWARD_WINDOW_S > 0")

    @property
    def token_max_age_ms(self) -> int:
        """A reward token is accepted while its decision's reward window is open."""
        return int(self.reward_window_s * 1000)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `FP_*` variables, with explicit `overrides` (CLI flags) winning."""
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            try:
                return float(env.get(name, default))
            except ValueError as exc:
                raise ConfigError(f"{name} must be a number, got {env[name]!r}") from exc

        values: dict[str, Any] = {
            "db": env.get("FP_DB") or None,
            "redis_url": env.get("FP_REDIS_URL") or None,
            "token_secret": env.get("FP_TOKEN_SECRET", "").encode("utf-8"),
            "admin_token": env.get("FP_ADMIN_TOKEN") or None,
            "publish_interval_s": number("FP_PUBLISH_INTERVAL_S", 5.0),
            "reward_window_s": number("FP_REWARD_WINDOW_S", 1800.0),
            "consent_required": env.get("FP_CONSENT_REQUIRED", "0") == "1",
        }
        drop = env.get("FP_PROMOTION_MAX_DROP", "0.10").strip().lower()
        values["promotion_max_drop"] = (
            None if drop == "off" else number("FP_PROMOTION_MAX_DROP", 0.10)
        )
        try:
            values["rate_limits"] = RateLimits.from_env(env)
        except RateLimitConfigError as exc:
            raise ConfigError(str(exc)) from exc
        given = {k: v for k, v in overrides.items() if v is not None}
        if given.get("db") or given.get("redis_url"):  # a flag picks the backend outright
            values["db"] = values["redis_url"] = None
        values.update(given)
        return cls(**values)


class OriginMetrics:
    """The origin's Prometheus metrics."""

    def __init__(self) -> None:
        self.registry = registry = Registry()
        self.decide_latency = registry.add(
            Histogram(
                "fp_decide_latency_seconds",
                "Time to answer POST /v1/decide.",
                (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            )
        )
        self.decisions = registry.add(Counter("fp_decisions_total", "Decisions logged, by source."))
        self.decided = self.decisions.labels(source="decide")  # POST /v1/decide's, per request
        self.accepted = registry.add(
            Counter("fp_events_accepted_total", "Events committed, by type.")
        )
        self.rejected = registry.add(
            Counter("fp_events_rejected_total", "Requests rejected, by reason.")
        )
        self.session_errors = registry.add(
            Counter("fp_session_update_errors_total", "Session updates that failed after commit.")
        )


@dataclass
class Origin:
    """One origin process's services."""

    settings: Settings
    site: Site
    storage: Storage
    holder: ModelHolder
    sessions: SessionEngine
    writer: LogWriter
    metrics: OriginMetrics
    backend: str
    learning: Any = None  # origin.learning.LearningLoop when this process learns

    @property
    def clock(self) -> Clock:
        return self.settings.clock

    @property
    def secret(self) -> bytes:
        return self.settings.token_secret

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    async def run_sessions(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` (which reads or writes session state) without blocking the event loop on I/O.

        SQLite keeps sessions in this process: a dict lookup, run inline. Redis sessions are
        network round trips: run in a worker thread.
        """
        if self.backend == "redis":
            return await to_thread.run_sync(fn, *args)
        return fn(*args)

    @cached_property
    def slot_variants(self) -> dict[str, list[str]]:
        """Variant names per slot of site.toml (fixed for the life of the process; read-only)."""
        return {name: list(slot.variants) for name, slot in self.site.slots.items()}

    def add_gauges(self) -> None:
        """Gauges read at scrape time: model version and age, learner lag and loss."""
        registry, holder = self.metrics.registry, self.holder

        def model_info() -> dict:
            return {(("version", holder.version),): 1.0} if holder.version else {}

        def model_age() -> dict:
            return {(): (self.clock.now_ms() - holder.published_ms) / 1000} if holder.model else {}

        def learner() -> dict:
            loop = self.learning
            return {} if loop is None else {(): float(self.storage.lag(loop.consumer))}

        def loss() -> dict:
            loop = self.learning
            return {} if loop is None or loop.examples == 0 else {(): loop.progressive_loss}

        def examples() -> dict:
            return {} if self.learning is None else {(): float(self.learning.examples)}

        registry.add(Gauge("fp_model_info", "The served model version (value 1).", model_info))
        registry.add(
            Gauge(
                "fp_model_age_seconds", "Seconds since the served model was published.", model_age
            )
        )
        registry.add(
            Gauge(
                "fp_learner_lag_entries", "Log entries the learner has not consumed yet.", learner
            )
        )
        registry.add(Gauge("fp_learner_progressive_loss", "Progressive validation log loss.", loss))
        registry.add(
            Gauge("fp_learner_examples", "Examples learned since the learner started.", examples)
        )
