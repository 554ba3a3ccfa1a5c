"""Storage: one small protocol, two real backends.

- `SqliteStorage` (`origin/storage/sqlite.py`): one file in WAL mode, the embedded default. The
  decision/event log is an autoincrement table read through a per-consumer cursor; sessions
  live in the process (one machine, one origin process).
- `RedisStorage` (`origin/storage/redis.py`): for many origin workers. The log is a Redis Stream
  read through a consumer group; sessions are hashes with a TTL; models are keys.

Every method is synchronous and may block on I/O: the API calls them from a worker thread.
`append` returns only after the entries are durably committed (or raises `StorageError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson

from origin.clock import Clock, SystemClock

DECISION = "decision"
EVENT = "event"


def dump_record(record: dict[str, Any]) -> str:
    """A log record as compact JSON text.

    orjson, because every decision and event is written once and read back by the learner; the
    stdlib encoder stays as the fallback for what orjson refuses (lone surrogates, non-str keys).
    """
    return dumped_record(record)[0]


def dumped_record(record: dict[str, Any]) -> tuple[str, bool]:
    """`dump_record`'s text, and whether orjson wrote it: then, for JSON data (str keys, finite
    numbers), `load_record` of the text equals `record`."""
    try:
        return orjson.dumps(record).decode(), True
    except orjson.JSONEncodeError:
        return json.dumps(record, separators=(",", ":")), False


def load_record(text: str | bytes) -> dict[str, Any]:
    """A log record from its JSON text (the stdlib decoder reads what it may have written: NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class StorageError(RuntimeError):
    """The backend could not commit or read (disk full, locked, connection lost)."""


class LogEntry(NamedTuple):
    """One committed log record: `kind` is `decision` or `event`; `id` orders entries.

    A named tuple rather than a frozen dataclass: the learner reads one per decision and event,
    and a tuple is built several times faster.
    """

    id: str
    kind: str
    record: dict[str, Any]


@dataclass(frozen=True)
class StoredModel:
    """A published model: its canonical body text and the header fields served with it."""

    version: str
    sha256: str
    body: str
    published_ms: int


class Storage(Protocol):
    def append(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Commit `(kind, record)` entries in one durable transaction, all or nothing.

        Records are JSON data (str keys, finite numbers) and are not changed once appended: a
        backend may hand the same objects to its readers."""

    def read_log(self, consumer: str, count: int) -> list[LogEntry]:
        """Up to `count` entries this consumer has not acknowledged, oldest first (their records
        may be shared with other readers: read them, do not change them)."""

    def ack(self, consumer: str, entries: list[LogEntry]) -> None:
        """Mark entries as processed by `consumer`; they are not read again."""

    def processed_log(self, consumer: str, limit: int) -> list[LogEntry]:
        """The last `limit` entries `consumer` has acknowledged, oldest first: what a consumer
        that lost its memory (a `kill -9`) replays to rebuild its state."""

    def lag(self, consumer: str) -> int:
        """How many committed entries `consumer` has not acknowledged yet."""

    def log_count(self, kind: str | None = None) -> int:
        """How many entries (of `kind`) the log holds."""

    def publish_model(self, model: StoredModel) -> None:
        """Make `model` the current one, atomically (readers see the old or the new, whole)."""

    def current_model(self) -> StoredModel | None:
        """The most recently published model, if any."""

    def current_model_sha256(self) -> str | None:
        """The current model's sha256 (a cheap check for a new version)."""

    def model_history(self, limit: int = 20) -> list[StoredModel]:
        """Published models, newest first."""

    def save_checkpoint(self, name: str, body: str) -> None:
        """Store `body` under `name` (replacing any): state a restarted consumer resumes from."""

    def take_checkpoint(self, name: str) -> str | None:
        """Return and delete checkpoint `name`, atomically: a checkpoint is resumed from once."""

    def update_state(
        self, key: str, incr: dict[str, float], assign: dict[str, str], ttl_s: int
    ) -> None:
        """Add to numeric fields and set string fields of hash `key`, renewing its TTL."""

    def get_state(self, key: str) -> dict[str, str]:
        """Hash `key` as strings ({} if missing or expired)."""

    def claim_once(self, key: str, value: str, ttl_s: int) -> tuple[str, bool]:
        """Set `key` to `value` for `ttl_s` seconds unless it holds a value already, atomically:
        (the value it holds afterwards, whether this call set it). SQLite: within this process,
        like its sessions; Redis: across every origin process."""

    def forget_claim(self, key: str) -> None:
        """Undo `claim_once` of `key` (what it guarded could not be done, so it may be again)."""

    def ping(self) -> None:
        """Raise StorageError if the backend is not usable."""

    def close(self) -> None: ...


def open_storage(
    *,
    db: str | None = None,
    redis_url: str | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> Storage:
    """A backend from a SQLite path or a Redis URL (exactly one of them)."""
    if bool(db) == bool(redis_url):
        raise ValueError("give exactly one of a SQLite path (--db/FP_DB) or --redis/FP_REDIS_URL")
    clock = clock or SystemClock()
    if redis_url:
        from origin.storage.redis import RedisStorage

        return RedisStorage(redis_url, clock=clock, **options)
    from origin.storage.sqlite import SqliteStorage

    return SqliteStorage(str(db), clock=clock, **options)
