"""Per-IP and per-visitor token buckets on the write and decide endpoints: 429 with Retry-After.

A bucket holds up to `burst` tokens and refills at `rate` tokens a second; each request takes
one. A client over its budget gets `429 Too Many Requests` with `Retry-After` (whole seconds
until a token is back), before its body is read, so a flood costs the origin almost nothing.

Two keys are checked, the IP first:
- the client IP (the TCP peer; behind a proxy, put the limit on the proxy or pass the real IP),
- the visitor, from the first-party `fp_vid` (else `fp_sid`) cookie. A client can drop its
  cookies, so the visitor limit is for fairness between visitors behind one NAT (the IP limit
  can then be generous); the IP limit is what stops a flood.

Configuration (`RateLimits.from_env`): `FP_RATE_LIMIT_IP` and `FP_RATE_LIMIT_VISITOR` as
`RATE:BURST` (requests per second : bucket size), `FP_RATE_LIMIT=off` to disable (load tests
from one loopback address). Buckets are kept per process, at most `max_keys` of them (least
recently used dropped first), so memory stays bounded however many addresses a flood uses.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

LIMITED_PATHS = frozenset({"/v1/events", "/v1/decide"})


class RateLimitConfigError(ValueError):
    """A malformed `FP_RATE_LIMIT_*` value; the message names the variable and the format."""


@dataclass(frozen=True)
class Bucket:
    """`rate` tokens a second, at most `burst` held."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1 and math.isfinite(self.rate + self.burst)):
            raise RateLimitConfigError(f"a rate limit needs rate > 0 and burst >= 1, got {self}")

    @classmethod
    def parse(cls, name: str, text: str) -> Bucket:
        rate, sep, burst = text.partition(":")
        try:
            return cls(float(rate), float(burst) if sep else float(rate))
        except ValueError as exc:
            raise RateLimitConfigError(
                f"{name} must be RATE:BURST (e.g. 50:200), got {text!r}"
            ) from exc


@dataclass(frozen=True)
class RateLimits:
    """The buckets for one process; `None` turns a key kind off."""

    per_ip: Bucket | None = Bucket(100, 400)
    per_visitor: Bucket | None = Bucket(20, 60)
    max_keys: int = 100_000

    @classmethod
    def off(cls) -> RateLimits:
        return cls(per_ip=None, per_visitor=None)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RateLimits:
        """On by default (100/s burst 400 per IP, 20/s burst 60 per visitor); see the module doc."""
        if env.get("FP_RATE_LIMIT", "").strip().lower() in ("off", "0", "false", "no"):
            return cls.off()
        default = cls()
        ip = env.get("FP_RATE_LIMIT_IP")
        visitor = env.get("FP_RATE_LIMIT_VISITOR")
        return cls(
            per_ip=Bucket.parse("FP_RATE_LIMIT_IP", ip) if ip else default.per_ip,
            per_visitor=Bucket.parse("FP_RATE_LIMIT_VISITOR", visitor)
            if visitor
            else default.per_visitor,
        )


class TokenBuckets:
    """Token buckets by key, least recently used evicted past `max_keys`; thread-safe."""

    def __init__(
        self, bucket: Bucket, max_keys: int, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.bucket = bucket
        self.max_keys = max_keys
        self._now = now
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0 if allowed, else the seconds until one is available."""
        now = self._now()
        with self._lock:
            tokens, at = self._levels.pop(key, (self.bucket.burst, now))
            tokens = min(self.bucket.burst, tokens + (now - at) * self.bucket.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.bucket.rate
            self._levels[key] = (tokens - 1 if wait == 0 else tokens, now)
            if len(self._levels) > self.max_keys:
                self._levels.popitem(last=False)
        return wait


def visitor_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The visitor id from the `fp_vid` (else `fp_sid`) cookie, if any."""
    for name, value in headers:
        if name == b"cookie":
            cookies = SimpleCookie()
            try:
                cookies.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header identifies nobody
                return None
            for cookie in ("fp_vid", "fp_sid"):
                if cookie in cookies and cookies[cookie].value:
                    return cookies[cookie].value[:64]
    return None


class RateLimitMiddleware:
    """ASGI middleware answering 429 when a POST to a limited path is over its budget."""

    def __init__(
        self,
        app: ASGIApp,
        limits: RateLimits,
        on_limited: Callable[[str], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.on_limited = on_limited
        self.ip = limits.per_ip and TokenBuckets(limits.per_ip, limits.max_keys, now)
        self.visitor = limits.per_visitor and TokenBuckets(limits.per_visitor, limits.max_keys, now)

    def wait(self, scope: Scope) -> tuple[float, str]:
        """(seconds to wait, which limit) for this request; 0 when it may go on."""
        if self.ip:
            client = scope.get("client")
            wait = self.ip.take(client[0] if client else "unknown")
            if wait:
                return wait, "ip"
        if self.visitor:
            visitor = visitor_key(scope.get("headers", []))
            if visitor is not None:
                wait = self.visitor.take(visitor)
                if wait:
                    return wait, "visitor"
        return 0.0, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in LIMITED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        wait, which = self.wait(scope)
        if not wait:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            self.on_limited(which)
        retry_after = str(max(1, math.ceil(wait)))
        body = (
            f'{{"error":"rate limit exceeded for this {which}; retry after {retry_after} s",'
            f'"reason":"rate_limited"}}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", retry_after.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
