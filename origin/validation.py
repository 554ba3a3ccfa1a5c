"""Request bodies of `/v1/decisions`, `/v1/events` and `/v1/decide`, checked field by field.

Every problem is a `RequestError` whose message names the field (`events[3].token: missing`)
and whose status says what kind of problem it is: 400 malformed, 401 unreadable token,
403 forged or expired token, 413 too large, 415 wrong content type. A batch is accepted or
rejected whole, so a client never has to work out which half of its batch was stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from origin.tokens import TokenError, verify

REWARD_TYPES = ("impression", "click", "conversion")
EVENT_TYPES = (*REWARD_TYPES, "view")
_JSON_TYPES = ("application/json", "text/plain")  # text/plain: navigator.sendBeacon


class RequestError(ValueError):
    """A rejected request: `status`, a `reason` label for metrics, a message naming the field."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may carry."""

    max_body_bytes: int = 256 * 1024
    max_batch: int = 500
    max_slots: int = 8
    max_text: int = 2048
    max_context_bytes: int = 8 * 1024


def parse_json_body(content_type: str, body: bytes, limits: Limits) -> Any:
    """The JSON value of a request body (JSON or text/plain holding JSON)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES:
        raise RequestError(
            415, "content_type", f"content-type must be application/json, got {media or 'none'!r}"
        )
    if len(body) > limits.max_body_bytes:
        raise RequestError(
            413, "too_large", f"body is {len(body)} bytes; the limit is {limits.max_body_bytes}"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "json", f"body is not JSON: {exc}") from exc


def _bad(where: str, problem: str) -> RequestError:
    return RequestError(400, "invalid", f"{where}: {problem}")


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _text(item: dict[str, Any], key: str, where: str, limits: Limits, required: bool) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            raise _bad(_field(where, key), "missing")
        return None
    if not isinstance(value, str):
        raise _bad(_field(where, key), f"must be a string, got {type(value).__name__}")
    if len(value) > limits.max_text:
        raise _bad(_field(where, key), f"longer than {limits.max_text} characters")
    return value


def _number(item: dict[str, Any], key: str, where: str, required: bool = False) -> float | None:
    value = item.get(key)
    if value is None:
        if required:
            raise _bad(_field(where, key), "missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(_field(where, key), "must be a finite number")
    return float(value)


def _amount(item: dict[str, Any], key: str, where: str) -> float | None:
    """An optional finite number that must not be negative (a price, a conversion's value)."""
    value = _number(item, key, where)
    if value is not None and value < 0:
        raise _bad(_field(where, key), "must not be negative")
    return value


def _batch(body: Any, key: str, limits: Limits) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object")
    items = body.get(key)
    if items is None:
        raise _bad(key, "missing")
    if not isinstance(items, list):
        raise _bad(key, "must be a list")
    if not items:
        raise _bad(key, "empty")
    if len(items) > limits.max_batch:
        raise RequestError(
            413, "too_large", f"{key}: {len(items)} items; the limit is {limits.max_batch}"
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"{key}[{i}]", "must be an object")
    return items


def _context(item: dict[str, Any], where: str, limits: Limits) -> dict[str, Any]:
    context = item.get("context", {})
    if not isinstance(context, dict):
        raise _bad(_field(where, "context"), "must be an object")
    if len(orjson.dumps(context)) > limits.max_context_bytes:  # compact UTF-8, as it is stored
        raise RequestError(
            413,
            "too_large",
            f"{_field(where, 'context')}: larger than {limits.max_context_bytes} bytes",
        )
    return context


def check_token(secret: bytes, token: Any, where: str, now_ms: int, max_age_ms: int):
    """Verified claims of `token`, or a 401/403 naming `where`."""
    if token is None:
        raise _bad(where, "missing")
    try:
        claims = verify(secret, token)
    except TokenError as exc:
        if exc.forged:
            raise RequestError(403, "forged_token", f"{where}: {exc}") from exc
        raise RequestError(401, "bad_token", f"{where}: {exc}") from exc
    if now_ms - claims.issued_ms > max_age_ms:
        raise RequestError(403, "expired_token", f"{where}: expired (issued {claims.issued_ms})")
    return claims


def _decision(
    item: dict[str, Any], where: str, site_slots: dict[str, list[str]], now_ms: int, limits: Limits
) -> dict[str, Any]:
    """The decision-log record (CONTRACT §8) in one decision object."""
    record: dict[str, Any] = {
        "decision_id": _text(item, "decision_id", where, limits, True),
        "slot": _text(item, "slot", where, limits, True),
        "variant": _text(item, "variant", where, limits, True),
        "model_version": _text(item, "model_version", where, limits, True),
        "visitor_id": _text(item, "visitor_id", where, limits, False) or "",
    }
    if record["slot"] not in site_slots:
        raise _bad(f"{where}.slot", f"unknown slot {record['slot']!r}")
    if record["variant"] not in site_slots[record["slot"]]:
        raise _bad(f"{where}.variant", f"not a variant of slot {record['slot']!r}")
    propensity = _number(item, "propensity", where, required=True)
    if propensity is None or not 0 < propensity <= 1:
        raise _bad(f"{where}.propensity", "must be in (0, 1]")
    record["propensity"] = propensity
    record["ts_ms"] = int(_number(item, "ts_ms", where) or now_ms)
    holdout = item.get("holdout", False)
    if not isinstance(holdout, bool):
        raise _bad(f"{where}.holdout", "must be true or false")
    record["holdout"] = holdout
    record["context"] = _context(item, where, limits)
    return record


def decisions_batch(
    body: Any, site_slots: dict[str, list[str]], secret: bytes, now_ms: int, max_age_ms: int,
    limits: Limits,
) -> list[dict[str, Any]]:  # fmt: skip
    """Validated decision records from the edge (`POST /v1/decisions`), each with its token."""
    records = []
    for i, item in enumerate(_batch(body, "decisions", limits)):
        where = f"decisions[{i}]"
        record = _decision(item, where, site_slots, now_ms, limits)
        claims = check_token(secret, item.get("token"), f"{where}.token", now_ms, max_age_ms)
        signed = (claims.decision_id, claims.slot, claims.variant, claims.model_version)
        if signed != tuple(record[k] for k in ("decision_id", "slot", "variant", "model_version")):
            raise RequestError(403, "forged_token", f"{where}.token: does not match the decision")
        records.append(record)
    return records


def client_decisions_batch(
    body: Any, site_slots: dict[str, list[str]], now_ms: int, limits: Limits
) -> list[dict[str, Any]]:
    """Decisions the snippet made in the browser (`POST /v1/decisions/client`), unsigned."""
    return [
        _decision(item, f"decisions[{i}]", site_slots, now_ms, limits)
        for i, item in enumerate(_batch(body, "decisions", limits))
    ]


def held_events(body: Any, limits: Limits) -> list[dict[str, Any]]:
    """The optional `events` of `POST /v1/decisions/client`: engagement the snippet held while
    its decision had no token yet, sent with the decision at pagehide; each names its
    `decision_id` and gets that decision's token once the origin has re-decided and signed it."""
    if not isinstance(body, dict) or body.get("events") is None:
        return []
    items = _batch(body, "events", limits)
    for i, item in enumerate(items):
        where = f"events[{i}]"
        _text(item, "decision_id", where, limits, True)
        if item.get("type") not in REWARD_TYPES:
            raise _bad(f"{where}.type", f"must be one of {', '.join(REWARD_TYPES)}")
        _number(item, "ts_ms", where)
        _text(item, "session_id", where, limits, False)
        _amount(item, "value", where)
    return items


def events_batch(
    body: Any, secret: bytes, now_ms: int, max_age_ms: int, limits: Limits
) -> list[dict[str, Any]]:
    """Validated event records (`POST /v1/events`); reward events carry their token's claims."""
    records = []
    for i, item in enumerate(_batch(body, "events", limits)):
        where = f"events[{i}]"
        kind = item.get("type")
        if kind is None:
            raise _bad(f"{where}.type", "missing")
        if kind not in EVENT_TYPES:
            raise _bad(f"{where}.type", f"must be one of {', '.join(EVENT_TYPES)}")
        record: dict[str, Any] = {
            "type": kind,
            "ts_ms": int(_number(item, "ts_ms", where) or now_ms),
            "session_id": _text(item, "session_id", where, limits, kind == "view"),
        }
        if kind == "view":
            record["category"] = _text(item, "category", where, limits, False)
            record["price"] = _amount(item, "price", where)
            record["path"] = _text(item, "path", where, limits, False)
            record["visitor_id"] = _text(item, "visitor_id", where, limits, False)
        else:
            claims = check_token(secret, item.get("token"), f"{where}.token", now_ms, max_age_ms)
            record.update(decision_id=claims.decision_id, slot=claims.slot, variant=claims.variant)
            if kind == "conversion":
                record["value"] = _amount(item, "value", where)
        records.append(record)
    return records


def decide_request(body: Any, site_slots: dict[str, list[str]], limits: Limits) -> dict[str, Any]:
    """Validated `POST /v1/decide` body: slots, context, session_id, visitor_id."""
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object")
    slots = body.get("slots")
    if slots is None:
        raise _bad("slots", "missing")
    if not isinstance(slots, list) or not slots:
        raise _bad("slots", "must be a non-empty list of slot names")
    if len(slots) > limits.max_slots:
        raise RequestError(
            413, "too_large", f"slots: {len(slots)} slots; the limit is {limits.max_slots}"
        )
    for i, slot in enumerate(slots):
        if not isinstance(slot, str) or slot not in site_slots:
            raise _bad(f"slots[{i}]", f"unknown slot {slot!r}")
    return {
        "slots": list(dict.fromkeys(slots)),
        "context": _context(body, "", limits),
        "session_id": _text(body, "session_id", "", limits, False),
        "visitor_id": _text(body, "visitor_id", "", limits, False) or "",
    }
