"""`create_app(settings)`: the origin's Starlette application.

The `Origin` services are built here (so a bad setting fails at construction with a clear
message); the lifespan starts the group committer, the learner thread and the model refresher,
and stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from model_export.policy import ModelError, load_model
from model_export.site import Site, SiteError, load_site
from origin import admin, api, openapi, pages, scripts
from origin.dashboard import dashboard_routes
from origin.learner import OnlineLearner, RewardJoiner
from origin.learning import LearningLoop
from origin.logwriter import LogWriter
from origin.models import ModelHolder, cold_model, stored
from origin.promotion import PromotionGate
from origin.ratelimit import RateLimitMiddleware
from origin.services import ConfigError, Origin, OriginMetrics, Settings
from origin.sessions import SessionEngine
from origin.storage import Storage, StorageError, open_storage

log = logging.getLogger("origin")


def check_against_site(model: dict[str, Any], site: Site) -> None:
    """Every variant the model can choose must have HTML in site.toml."""
    for name, slot in model["slots"].items():
        if name not in site.slots:
            continue
        missing = [v for v in slot["variants"] if v not in site.slots[name].variants]
        if missing:
            raise ConfigError(
                f"model slot {name!r} has variants without HTML in site.toml: {missing}"
            )


def initial_model(settings: Settings, site: Site, storage: Storage) -> None:
    """Make sure storage holds a current model: a new --model file, the stored one, or cold."""
    now = settings.clock.now_ms()
    if settings.model_path:
        try:
            model = load_model(Path(settings.model_path).read_text(encoding="utf-8"))
        except (OSError, ModelError) as exc:
            raise ConfigError(f"cannot use --model {settings.model_path}: {exc}") from exc
        check_against_site(model, site)
        if all(m.sha256 != model["sha256"] for m in storage.model_history(100)):
            storage.publish_model(stored(model, now))  # a newly trained model supersedes
            return
    if storage.current_model() is None:
        storage.publish_model(stored(cold_model(site, now), now))


def build_origin(settings: Settings, storage: Storage | None = None) -> Origin:
    """All services of one origin process, checked."""
    try:
        site = load_site(settings.site_path)
    except SiteError as exc:
        raise ConfigError(str(exc)) from exc
    if storage is None:
        storage = open_storage(db=settings.db, redis_url=settings.redis_url, clock=settings.clock)
    initial_model(settings, site, storage)
    holder = ModelHolder(storage)
    holder.refresh()
    assert holder.model is not None
    check_against_site(holder.model, site)
    origin = Origin(
        settings=settings,
        site=site,
        storage=storage,
        holder=holder,
        sessions=SessionEngine(
            storage, settings.clock, site.categories, ttl_s=settings.session_ttl_s
        ),
        writer=LogWriter(storage),
        metrics=OriginMetrics(),
        backend="redis" if settings.redis_url else "sqlite",
    )
    if settings.learner != "off":
        origin.learning = LearningLoop(
            storage,
            holder,
            settings.clock,
            OnlineLearner(),
            RewardJoiner(window_ms=int(settings.reward_window_s * 1000)),
            publish_interval_s=settings.publish_interval_s,
            gate=promotion_gate(settings, storage),
        )
        origin.learning.resume()
    origin.add_gauges()
    return origin


def promotion_gate(settings: Settings, storage: Storage) -> PromotionGate | None:
    """The gate a learned model passes before it is published (None: promote every version)."""
    if settings.promotion_max_drop is None:
        return None
    try:
        return PromotionGate(storage, max_drop=settings.promotion_max_drop, min_interval_s=30.0)
    except ValueError as exc:
        raise ConfigError(f"FP_PROMOTION_MAX_DROP: {exc}") from exc


async def _follow_models(origin: Origin) -> None:
    """Pick up models published by other processes (a learner elsewhere, a rollback)."""
    while True:
        await asyncio.sleep(origin.settings.model_poll_s)
        try:
            await asyncio.to_thread(origin.holder.refresh)
        except (StorageError, ModelError) as exc:
            log.warning("model refresh failed: %s", exc)


class DecideFirst:
    """ASGI middleware: `POST /v1/decide` goes straight to its endpoint (`api.post_decide`).

    The hot path skips the router's scan and the exception middleware; everything else, and a
    request under a root path, goes through Starlette, whose `/v1/decide` route is the same
    endpoint (and answers 405 to other methods). Installed inside the rate limiter, so the
    limits apply to it as to the other routes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/v1/decide"
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            await api.post_decide(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: Settings, storage: Storage | None = None) -> Starlette:
    """The origin application for `settings` (storage opened from them unless given)."""
    origin = build_origin(settings, storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        origin.writer.start()
        if origin.learning is not None and settings.learner == "thread":
            origin.learning.start()
        follower = asyncio.get_running_loop().create_task(_follow_models(origin))
        # What exists now (modules, model, site, routes) lives as long as the server: frozen,
        # it is not walked again by every full garbage collection, which the learner's stream
        # of long-lived decisions triggers (under the decide bench: GC cost 10 µs a request and
        # ~40 ms pauses; 3 µs frozen). Unfrozen at shutdown, so tests that start many apps in
        # one process do not keep their garbage.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            follower.cancel()
            if origin.learning is not None:
                await asyncio.to_thread(origin.learning.stop)
            await origin.writer.close()
            origin.storage.close()

    gate = origin.learning.gate if origin.learning is not None else None
    app = Starlette(
        routes=[
            *api.routes,
            *scripts.routes,
            *openapi.routes,
            *admin.routes(origin, gate),
            *dashboard_routes(origin.storage, origin.clock),
            *pages.routes(origin),  # last: the demo shop's catch-all
        ],
        lifespan=lifespan,
    )
    app.add_middleware(DecideFirst)
    limits = settings.rate_limits
    if limits.per_ip or limits.per_visitor:  # FP_RATE_LIMIT=off: not even a pass-through layer
        app.add_middleware(
            RateLimitMiddleware,
            limits=limits,
            on_limited=lambda which: origin.metrics.rejected.inc(reason=f"rate_limited_{which}"),
        )
    app.state.origin = origin
    return app
