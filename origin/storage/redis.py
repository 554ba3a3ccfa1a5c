"""Redis backend, for many origin workers sharing one Redis.

- The log is a Stream (`<prefix>log`); each consumer (the learner) is a consumer group of the
  same name, so a restarted learner resumes from the group's position: entries it read but did
  not acknowledge are delivered to it again first.
- Sessions and profiles are hashes with a TTL (`<prefix>state:<key>`).
- The current model is one hash (`<prefix>model:current`) replaced in a MULTI/EXEC transaction
  together with its history entry, so readers see the old model or the new one, whole.

A 202 means the entry was written; that it survives a crash of Redis itself depends on the
server's `appendonly yes` / `appendfsync always` (the test fixture starts it that way).
"""

from __future__ import annotations

from typing import Any

import redis

from origin.clock import Clock
from origin.storage import LogEntry, StorageError, StoredModel, dump_record, load_record

_MODEL_FIELDS = ("version", "sha256", "body", "published_ms")


class RedisStorage:
    """Storage on a Redis server (`FP_REDIS_URL`)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        prefix: str = "fp:",
        history: int = 50,
        timeout_s: float = 5.0,
    ):
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._clock = clock
        self._log = f"{prefix}log"
        self._prefix = prefix
        self._history = history
        self._groups: set[str] = set()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StorageError(f"Redis {what} failed: {exc}") from exc

    # --- the log ------------------------------------------------------------------------------

    def append(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for kind, record in entries:
            pipe.xadd(self._log, {"k": kind, "r": dump_record(record)})
        self._call("append", pipe.execute)

    def _group(self, consumer: str) -> None:
        if consumer in self._groups:
            return
        try:
            self._redis.xgroup_create(self._log, consumer, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StorageError(f"Redis consumer group {consumer!r}: {exc}") from exc
        except redis.RedisError as exc:
            raise StorageError(f"Redis consumer group {consumer!r}: {exc}") from exc
        self._groups.add(consumer)

    def read_log(self, consumer: str, count: int) -> list[LogEntry]:
        self._group(consumer)
        # Entries delivered before but never acknowledged come first ("0"), then new ones (">").
        for start in ("0", ">"):
            reply = self._call(
                "read",
                self._redis.xreadgroup,
                consumer,
                consumer,
                {self._log: start},
                count=count,
            )
            entries = [
                LogEntry(entry_id, fields["k"], load_record(fields["r"]))
                for _, messages in reply or []
                for entry_id, fields in messages
                if fields
            ]
            if entries:
                return entries
        return []

    def ack(self, consumer: str, entries: list[LogEntry]) -> None:
        if entries:
            self._call("ack", self._redis.xack, self._log, consumer, *[e.id for e in entries])

    def processed_log(self, consumer: str, limit: int) -> list[LogEntry]:
        self._group(consumer)
        groups = self._call("xinfo", self._redis.xinfo_groups, self._log)
        last = next((g["last-delivered-id"] for g in groups if g["name"] == consumer), "0-0")
        if last == "0-0":
            return []
        # Delivered but never acknowledged (the consumer died mid-step): not processed, and
        # read_log hands them out again, so they are not replayed.
        pending = {
            p["message_id"]
            for p in self._call(
                "xpending", self._redis.xpending_range, self._log, consumer, "-", last, limit
            )
        }
        reply = self._call(
            "read", self._redis.xrevrange, self._log, last, "-", count=limit + len(pending)
        )
        entries = [
            LogEntry(entry_id, fields["k"], load_record(fields["r"]))
            for entry_id, fields in reply
            if fields and entry_id not in pending
        ]
        return entries[:limit][::-1]

    def lag(self, consumer: str) -> int:
        self._group(consumer)
        groups = self._call("xinfo", self._redis.xinfo_groups, self._log)
        for group in groups:
            if group["name"] == consumer:
                return int(group.get("lag") or 0) + int(group.get("pending") or 0)
        return 0

    def log_count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._call("xlen", self._redis.xlen, self._log))
        total = 0
        last = "-"
        while True:
            batch = self._call("xrange", self._redis.xrange, self._log, last, "+", count=1000)
            if last != "-":
                batch = batch[1:]
            if not batch:
                return total
            total += sum(1 for _, fields in batch if fields.get("k") == kind)
            last = batch[-1][0]

    # --- models -------------------------------------------------------------------------------

    def publish_model(self, model: StoredModel) -> None:
        fields = {name: getattr(model, name) for name in _MODEL_FIELDS}
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(f"{self._prefix}model:{model.version}", mapping=fields)  # type: ignore[arg-type]
        pipe.delete(f"{self._prefix}model:current")
        pipe.hset(f"{self._prefix}model:current", mapping=fields)  # type: ignore[arg-type]
        pipe.lrem(f"{self._prefix}models", 0, model.version)  # a rollback re-publishes a version
        pipe.lpush(f"{self._prefix}models", model.version)
        pipe.ltrim(f"{self._prefix}models", 0, self._history - 1)
        self._call("publish", pipe.execute)

    @staticmethod
    def _stored(fields: dict[str, str]) -> StoredModel | None:
        if not fields:
            return None
        return StoredModel(
            fields["version"], fields["sha256"], fields["body"], int(fields["published_ms"])
        )

    def current_model(self) -> StoredModel | None:
        return self._stored(self._call("read", self._redis.hgetall, f"{self._prefix}model:current"))

    def current_model_sha256(self) -> str | None:
        return self._call("read", self._redis.hget, f"{self._prefix}model:current", "sha256")

    def model_history(self, limit: int = 20) -> list[StoredModel]:
        versions = self._call("read", self._redis.lrange, f"{self._prefix}models", 0, limit - 1)
        pipe = self._redis.pipeline(transaction=False)
        for version in versions:
            pipe.hgetall(f"{self._prefix}model:{version}")
        models = [self._stored(fields) for fields in self._call("read", pipe.execute)]
        return [m for m in models if m is not None]

    # --- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, name: str, body: str) -> None:
        self._call("checkpoint save", self._redis.set, f"{self._prefix}checkpoint:{name}", body)

    def take_checkpoint(self, name: str) -> str | None:
        return self._call("checkpoint take", self._redis.getdel, f"{self._prefix}checkpoint:{name}")

    # --- sessions and profiles ----------------------------------------------------------------

    def update_state(
        self, key: str, incr: dict[str, float], assign: dict[str, str], ttl_s: int
    ) -> None:
        name = f"{self._prefix}state:{key}"
        pipe = self._redis.pipeline(transaction=True)
        for field, amount in incr.items():
            pipe.hincrbyfloat(name, field, amount)
        if assign:
            pipe.hset(name, mapping=assign)  # type: ignore[arg-type]
        pipe.expire(name, ttl_s)
        self._call("session update", pipe.execute)

    def get_state(self, key: str) -> dict[str, str]:
        fields = self._call("session read", self._redis.hgetall, f"{self._prefix}state:{key}")
        return dict(fields)

    def claim_once(self, key: str, value: str, ttl_s: int) -> tuple[str, bool]:
        name = f"{self._prefix}claim:{key}"
        for _ in range(3):  # SET NX, then GET (SET NX GET would need Redis 7)
            if self._call("claim", self._redis.set, name, value, nx=True, ex=ttl_s):
                return value, True
            held = self._call("claim", self._redis.get, name)
            if held is not None:
                return held, False  # (None: it expired between the two calls; try again)
        raise StorageError(f"Redis claim of {key!r} expired three times while it was read")

    def forget_claim(self, key: str) -> None:
        self._call("claim forget", self._redis.delete, f"{self._prefix}claim:{key}")

    def ping(self) -> None:
        self._call("ping", self._redis.ping)

    def close(self) -> None:
        self._redis.close()
