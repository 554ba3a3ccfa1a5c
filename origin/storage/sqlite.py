"""SQLite backend: WAL, `synchronous=FULL`, one transaction per `append`.

Why FULL rather than NORMAL: in WAL mode NORMAL already survives a killed process, but a power
cut can lose the last transactions, and a 202 promises the event is on disk. FULL fsyncs the
WAL at every commit; the API's group committer (`origin/logwriter.py`) merges concurrent batches
into one transaction, so the cost is one fsync per group, not per request.

Sessions are kept in this process (ARCHITECTURE: one machine, sessions in process), with a TTL
measured on the injected clock; they are context, not acknowledged data.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from origin.clock import Clock, SystemClock
from origin.storage import LogEntry, StorageError, StoredModel, dumped_record, load_record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    published_ms INTEGER NOT NULL
);
"""


# A group of entries goes in by one multi-row INSERT per `_ROWS_PER_INSERT` rows, not by
# executemany: that steps SQLite once per row, releasing and retaking the GIL each time, and each
# retake waits on the request loop that holds it (a 25 ms group of decisions is ~40 rows).
_ROWS_PER_INSERT = 256  # 512 parameters, well under SQLite's limit; one statement text per size


@lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_rows(n: int) -> str:
    return "INSERT INTO log (kind, record) VALUES " + ",".join(["(?,?)"] * n)


# A consumer's entries come back from one step for the same reason: id, kind and record text
# joined by ASCII unit separators, entries by record separators (JSON text escapes both).
_READ_ROWS = (
    "SELECT group_concat(id || char(31) || kind || char(31) || record, char(30)) FROM"
    " (SELECT id, kind, record FROM log WHERE id > ? ORDER BY id LIMIT ?)"
)


def _entry(row: str) -> LogEntry:
    entry_id, kind, record = row.split("\x1f", 2)
    return LogEntry(entry_id, kind, load_record(record))


def _entry_id(entry: LogEntry) -> int:
    return int(entry.id)


_MAX_CLAIMS = 100_000  # claim_once keys kept in process (each a few hundred bytes)

# The learner reads every entry back within a fraction of a second of its commit, and reading it
# from the table (the query, then orjson again on its text) cost ~11 µs of CPU an entry. So the
# entries this process committed are kept, as the records it was given, until a consumer
# acknowledges them; a read that starts among them is answered from memory, then completed from
# the table (which also holds what other processes wrote). A consumer further behind (the
# promotion gate, the dashboard) reads the table as before. If nobody in this process consumes
# the log, the newest `_RECENT` are kept (~2.5 s of decisions at 1,600 a second; trimmed in bulk
# when twice as many have piled up).
_RECENT = 4096


class SqliteStorage:
    """The embedded default backend: one SQLite file (`FP_DB`)."""

    def __init__(self, path: str, *, clock: Clock | None = None, busy_timeout_ms: int = 5000):
        self.path = path
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {path!r}: {exc}") from exc
        if mode.lower() != "wal":
            raise StorageError(f"SQLite database {path!r} refused WAL mode (got {mode!r})")
        self._state: dict[str, tuple[dict[str, str], int]] = {}
        # Its own lock: a session lookup on the request path must never wait for a commit's fsync.
        self._state_lock = threading.Lock()
        self._claims: OrderedDict[str, tuple[str, int]] = OrderedDict()  # key → (value, expiry)
        self._updates = 0
        self._recent: dict[int, LogEntry] = {}  # id → entry committed here, oldest first

    # --- the log ------------------------------------------------------------------------------

    def append(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        texts = [dumped_record(record) for _, record in entries]
        rows = zip(entries, texts, strict=True)
        values = [value for (kind, _), (text, _) in rows for value in (kind, text)]
        step = 2 * _ROWS_PER_INSERT
        last_id = None
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for start in range(0, len(values), step):
                        chunk = values[start : start + step]
                        last_id = self._db.execute(_insert_rows(len(chunk) // 2), chunk).lastrowid
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLITE_FULL has already rolled it back
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite commit failed: {exc}") from exc
            if last_id:
                self._remember(entries, texts, last_id)

    def _remember(
        self, entries: list[tuple[str, dict[str, Any]]], texts: list[tuple[str, bool]], last_id: int
    ) -> None:
        """Keep committed entries for `read_log` (see `_RECENT`): those orjson wrote, which read
        back equal to their records; the stdlib fallback's (lone surrogates, non-str keys) are
        read back from the table."""
        recent = self._recent
        # One transaction's rows take consecutive ids: it holds the table's write lock.
        first_id = last_id - len(entries) + 1
        rows = enumerate(zip(entries, texts, strict=True), first_id)
        for entry_id, ((kind, record), (_, exact)) in rows:
            if exact:
                recent[entry_id] = LogEntry(str(entry_id), kind, record)
        if len(recent) > 2 * _RECENT:  # dropped in bulk: popping a dict's oldest keys one by
            self._recent = dict(list(recent.items())[-_RECENT:])  # one makes it scan past them

    def _position(self, consumer: str) -> int:
        row = self._db.execute(
            "SELECT position FROM cursors WHERE consumer = ?", (consumer,)
        ).fetchone()
        return row[0] if row else 0

    def read_log(self, consumer: str, count: int) -> list[LogEntry]:
        with self._lock:
            try:
                position = self._position(consumer)
                entries = self._recent_after(position, count)
                rows = None
                if len(entries) < count:
                    (rows,) = self._db.execute(
                        _READ_ROWS, (position + len(entries), count - len(entries))
                    ).fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite read failed: {exc}") from exc
        if rows is None:  # nothing (more) after the position
            return entries
        stored = [_entry(row) for row in rows.split("\x1e")]
        stored.sort(key=_entry_id)  # the aggregate's order is SQLite's to choose
        return entries + stored

    def _recent_after(self, position: int, count: int) -> list[LogEntry]:
        """Up to `count` entries from `position + 1` on, as long as they are recent ones."""
        recent = self._recent
        entries: list[LogEntry] = []
        entry = recent.get(position + 1)
        while entry is not None and len(entries) < count:
            entries.append(entry)
            position += 1
            entry = recent.get(position + 1)
        return entries

    def ack(self, consumer: str, entries: list[LogEntry]) -> None:
        if not entries:
            return
        position = max(int(e.id) for e in entries)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO cursors (consumer, position) VALUES (?, ?) ON CONFLICT(consumer)"
                    " DO UPDATE SET position = max(position, excluded.position)",
                    (consumer, position),
                )
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite cursor update failed: {exc}") from exc
            if self._recent:  # read by the consumer that keeps up: forgotten (rebuilt, as above)
                self._recent = {i: e for i, e in self._recent.items() if i > position}

    def processed_log(self, consumer: str, limit: int) -> list[LogEntry]:
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, kind, record FROM log WHERE id <= ? ORDER BY id DESC LIMIT ?",
                    (self._position(consumer), limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite read failed: {exc}") from exc
        return [LogEntry(str(i), kind, load_record(record)) for i, kind, record in reversed(rows)]

    def lag(self, consumer: str) -> int:
        with self._lock:
            position = self._position(consumer)
            row = self._db.execute("SELECT count(*) FROM log WHERE id > ?", (position,)).fetchone()
        return int(row[0])

    def log_count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                row = self._db.execute("SELECT count(*) FROM log").fetchone()
            else:
                row = self._db.execute(
                    "SELECT count(*) FROM log WHERE kind = ?", (kind,)
                ).fetchone()
        return int(row[0])

    # --- models -------------------------------------------------------------------------------

    def publish_model(self, model: StoredModel) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    # A rollback publishes a known version again: it becomes the newest row.
                    self._db.execute("DELETE FROM models WHERE version = ?", (model.version,))
                    self._db.execute(
                        "INSERT INTO models (version, sha256, body, published_ms)"
                        " VALUES (?, ?, ?, ?)",
                        (model.version, model.sha256, model.body, model.published_ms),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLITE_FULL has already rolled it back
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"cannot publish model {model.version}: {exc}") from exc

    def _models(self, columns: str, limit: int) -> list[Any]:
        with self._lock:
            return self._db.execute(
                f"SELECT {columns} FROM models ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()

    def current_model(self) -> StoredModel | None:
        history = self.model_history(1)
        return history[0] if history else None

    def current_model_sha256(self) -> str | None:
        rows = self._models("sha256", 1)
        return rows[0][0] if rows else None

    def model_history(self, limit: int = 20) -> list[StoredModel]:
        rows = self._models("version, sha256, body, published_ms", limit)
        return [StoredModel(*row) for row in rows]

    # --- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, name: str, body: str) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO checkpoints (name, body) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET body = excluded.body",
                    (name, body),
                )
            except sqlite3.Error as exc:
                raise StorageError(f"cannot save checkpoint {name!r}: {exc}") from exc

    def take_checkpoint(self, name: str) -> str | None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT body FROM checkpoints WHERE name = ?", (name,)
                ).fetchone()
                self._db.execute("DELETE FROM checkpoints WHERE name = ?", (name,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"cannot take checkpoint {name!r}: {exc}") from exc
        return row[0] if row else None

    # --- sessions and profiles (in process) ---------------------------------------------------

    def update_state(
        self, key: str, incr: dict[str, float], assign: dict[str, str], ttl_s: int
    ) -> None:
        now = self._clock.now_ms()
        with self._state_lock:
            fields, expires = self._state.get(key, ({}, 0))
            if expires <= now:
                fields = {}
            for name, amount in incr.items():
                total = float(fields.get(name, 0)) + amount
                fields[name] = str(int(total)) if total.is_integer() else repr(total)
            fields.update(assign)
            self._state[key] = (fields, now + ttl_s * 1000)
            self._updates += 1
            if self._updates % 4096 == 0:  # sweep expired sessions now and then
                self._state = {k: v for k, v in self._state.items() if v[1] > now}

    def get_state(self, key: str) -> dict[str, str]:
        with self._state_lock:
            held = self._state.get(key)
            if held is None:  # a first page: no clock to read, nothing to copy
                return {}
            fields, expires = held
            return dict(fields) if expires > self._clock.now_ms() else {}

    def claim_once(self, key: str, value: str, ttl_s: int) -> tuple[str, bool]:
        now = self._clock.now_ms()
        with self._state_lock:
            held = self._claims.get(key)
            if held is not None and held[1] > now:
                return held[0], False
            self._claims[key] = (value, now + ttl_s * 1000)
            self._claims.move_to_end(key)
            if len(self._claims) > _MAX_CLAIMS:  # the oldest go first; they expire first too
                self._claims.popitem(last=False)
            return value, True

    def forget_claim(self, key: str) -> None:
        with self._state_lock:
            self._claims.pop(key, None)

    def ping(self) -> None:
        with self._lock:
            try:
                self._db.execute("SELECT 1").fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite unavailable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
