"""The session context engine: what a visitor did in this session, as the contract's `session`.

Two records, kept apart: the *session* (short-term intent: categories viewed, prices, pages,
last event; expires `ttl_s` after its last event) and the visitor's long-term *profile*
(categories and prices across sessions; kept much longer). `context()` combines them: the
session leads, the profile fills in what the session does not know yet.
"""

from __future__ import annotations

from typing import Any

from model_export.features import lower, trim
from origin.clock import Clock
from origin.storage import Storage

_CATEGORY = "cat:"


class SessionEngine:
    """Turns view/click events into session state and session state into decision context."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        categories: list[str],
        ttl_s: int = 1800,
        profile_ttl_s: int = 90 * 86400,
        max_categories: int = 3,
    ) -> None:
        if ttl_s <= 0 or profile_ttl_s <= 0:
            raise ValueError("session and profile TTLs must be positive")
        self.storage = storage
        self.clock = clock
        self.categories = {lower(c) for c in categories}
        self.ttl_s = ttl_s
        self.profile_ttl_s = profile_ttl_s
        self.max_categories = max_categories

    def observe(self, event: dict[str, Any]) -> None:
        """Fold one validated event (`view`, `impression`, `click`, `conversion`) into state."""
        session_id = event.get("session_id")
        if not session_id:
            return
        incr: dict[str, float] = {}
        assign = {
            "last_event": event["type"],
            "last_ms": str(event.get("ts_ms") or self.clock.now_ms()),
        }
        if event["type"] == "view":
            incr["pages"] = 1
            category = lower(trim(event.get("category") or ""))
            if category in self.categories:
                incr[_CATEGORY + category] = 1
            if event.get("price") is not None:
                incr["price_sum"] = float(event["price"])
                incr["price_n"] = 1
        visitor_id = event.get("visitor_id")
        if visitor_id:
            assign["visitor_id"] = visitor_id
            if "returning" not in self.storage.get_state(f"session:{session_id}"):
                # Decided once per session: had this visitor been seen before it started?
                returning = bool(self.storage.get_state(f"profile:{visitor_id}"))
                assign["returning"] = "1" if returning else "0"
        self.storage.update_state(f"session:{session_id}", incr, assign, self.ttl_s)
        if visitor_id and event["type"] == "view":
            profile_incr = {k: v for k, v in incr.items() if k != "pages"}
            profile_incr["views"] = 1
            self.storage.update_state(
                f"profile:{visitor_id}",
                profile_incr,
                {"last_ms": assign["last_ms"]},
                self.profile_ttl_s,
            )

    def session_state(self, session_id: str) -> dict[str, str]:
        """The live session hash ({} when missing or idle for longer than the TTL)."""
        state = self.storage.get_state(f"session:{session_id}")
        if state and self.clock.now_ms() - int(float(state.get("last_ms", 0))) > self.ttl_s * 1000:
            return {}
        return state

    def _ranked(self, state: dict[str, str]) -> list[str]:
        counts = [
            (float(v), k[len(_CATEGORY) :]) for k, v in state.items() if k.startswith(_CATEGORY)
        ]
        return [name for _, name in sorted(counts, key=lambda c: (-c[0], c[1]))]

    def _read(
        self, session_id: str | None, visitor_id: str | None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The session hash and the visitor's profile hash (the session's visitor if none is
        given), one read each: with Redis, each read is a round trip."""
        state = self.session_state(session_id) if session_id else {}
        visitor_id = visitor_id or state.get("visitor_id")
        return state, self.storage.get_state(f"profile:{visitor_id}") if visitor_id else {}

    def context(self, session_id: str | None, visitor_id: str | None) -> dict[str, Any]:
        """The contract's `session` object, plus `recency_s`; {} when nothing is known."""
        return self._combined(*self._read(session_id, visitor_id))

    def _combined(self, state: dict[str, str], profile: dict[str, str]) -> dict[str, Any]:
        """`context()` from the session hash and the visitor's profile hash."""
        if not state and not profile:  # a first page, or an unknown session: nothing to add
            return {}
        result: dict[str, Any] = {}
        categories = self._ranked(state)
        categories += [c for c in self._ranked(profile) if c not in categories]
        if categories:
            result["categories"] = categories[: self.max_categories]
        for source in (state, profile):
            if float(source.get("price_n", 0)) > 0:
                result["price"] = round(float(source["price_sum"]) / float(source["price_n"]), 2)
                break
        if state:
            result["pages"] = int(float(state.get("pages", 0)))
            result["last_event"] = state.get("last_event", "")
            result["recency_s"] = max(
                0, (self.clock.now_ms() - int(float(state["last_ms"]))) // 1000
            )
        return result

    def enrich(
        self, context: dict[str, Any], session_id: str | None, visitor_id: str | None
    ) -> dict[str, Any]:
        """`context` with the server-side `session` merged in and `returning` filled if unknown."""
        enriched = dict(context)
        state, profile = self._read(session_id, visitor_id)
        session = self._combined(state, profile)
        if session:
            enriched["session"] = session
        if "returning" not in enriched:
            if "returning" in state:
                enriched["returning"] = state["returning"] == "1"
            elif visitor_id:
                enriched["returning"] = bool(profile)
        return enriched
