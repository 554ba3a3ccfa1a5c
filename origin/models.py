"""The served model: the current `model.json`, its ETag, per-slot views, and publishing.

`ModelHolder` is what request handlers read (no I/O on the hot path). It follows the storage:
a publisher in this process sets it directly; other processes notice a new sha256 through
`refresh()`. Bodies are the canonical JSON the sha256 covers, so the ETag is that sha256.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from model_export.export import build_model
from model_export.features import default_spec
from model_export.policy import canonical_json, load_model, seal
from model_export.site import Site
from origin.storage import Storage, StoredModel


def cold_model(site: Site, now_ms: int) -> dict[str, Any]:
    """A sealed starting model for `site`, for when no trained model.json is given.

    The default variant gets a small head start, and a variant named after a category leans
    toward visitors whose session or landing page is in that category: a content prior that
    the online learner then corrects from real engagement.
    """
    slots = {}
    for name, slot in site.slots.items():
        weights = {
            v: {f"session_categories={v}": 1.0, f"landing_section={v}": 0.5}
            for v in slot.variants
            if v in site.categories
        }
        slots[name] = {
            **slot.config(),
            "bias": {v: -2.0 if v == slot.default else -2.2 for v in slot.variants},
            "weights": weights,
        }
    created = datetime.fromtimestamp(now_ms / 1000, UTC)
    return build_model(default_spec(site.vocab()), slots, created)


def stored(model: dict[str, Any], published_ms: int) -> StoredModel:
    """A sealed model as storage keeps it."""
    return StoredModel(model["model_version"], model["sha256"], canonical_json(model), published_ms)


@dataclass(frozen=True)
class Served:
    """One served body: the bytes and their ETag."""

    body: bytes
    etag: str


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names the strong `etag` (RFC 9110 §13.1.2: a list of
    tags or `*`, compared weakly, so `W/"x"` matches `"x"`), and a 304 is the answer."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class ModelHolder:
    """The current model, ready to serve and to decide with."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self.model: dict[str, Any] | None = None
        self.published_ms = 0
        self._views: dict[tuple[str, ...], Served] = {}
        self._recent: dict[str, dict[str, Any]] = {}  # model_version → model, newest last

    def current(self) -> dict[str, Any]:
        """The served model; LookupError before one is loaded."""
        model = self.model
        if model is None:
            raise LookupError("no model loaded")
        return model

    @property
    def version(self) -> str | None:
        return self.model["model_version"] if self.model else None

    def set(self, model: dict[str, Any], published_ms: int) -> None:
        """Serve `model` (already validated) from now on."""
        with self._lock:
            self.model = model
            self.published_ms = published_ms
            self._views = {}
            self._remember(model)

    def _remember(self, model: dict[str, Any]) -> None:
        self._recent.pop(model["model_version"], None)
        self._recent[model["model_version"]] = model
        while len(self._recent) > 16:
            self._recent.pop(next(iter(self._recent)))

    def by_version(self, version: str) -> dict[str, Any] | None:
        """A recently published model by its version (storage I/O on a miss), or None."""
        with self._lock:
            model = self._recent.get(version)
        if model is not None:
            return model
        for candidate in self.storage.model_history(100):
            if candidate.version == version:
                model = load_model(candidate.body)
                with self._lock:
                    self._remember(model)
                return model
        return None

    def publish(self, model: dict[str, Any], published_ms: int) -> None:
        """Store `model` as the current version, then serve it."""
        load_model(model)
        self.storage.publish_model(stored(model, published_ms))
        self.set(model, published_ms)

    def refresh(self) -> bool:
        """Pick up a model published by another process; True if it changed."""
        sha = self.storage.current_model_sha256()
        if sha is None or (self.model is not None and sha == self.model["sha256"]):
            return False
        current = self.storage.current_model()
        if current is None:
            return False
        self.set(load_model(current.body), current.published_ms)
        return True

    def view(self, slots: tuple[str, ...] = ()) -> Served:
        """The model (or only `slots` of it, re-sealed) as served bytes with its ETag."""
        with self._lock:
            model = self.model
            cached = self._views.get(slots)
        if model is None:
            raise LookupError("no model loaded")
        if cached is not None:
            return cached
        source_sha = model["sha256"]
        if slots:
            unknown = [s for s in slots if s not in model["slots"]]
            if unknown:
                raise KeyError(unknown[0])
            model = seal({**model, "slots": {s: model["slots"][s] for s in slots}})
        served = Served(canonical_json(model).encode("utf-8"), f'"{model["sha256"]}"')
        with self._lock:
            if self.model is not None and self.model["sha256"] == source_sha:
                self._views[slots] = served
        return served
