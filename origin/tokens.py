"""Decision tokens (CONTRACT §9): an HMAC-signed receipt for one decision.

`base64url(payload_json) + "." + base64url(HMAC-SHA256(secret, base64url(payload_json)))`,
base64url without padding, payload `{"d", "s", "v", "p", "m", "t"}`. A reward event must carry
the token of the decision it rewards, so a visitor cannot reward a decision that was never made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from model_export.policy import js_number

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_SIGNATURE_CHARS = 43  # 32 bytes of HMAC-SHA256 in unpadded base64url
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "d": str,
    "s": str,
    "v": str,
    "p": (int, float),
    "m": str,
    "t": (int, float),
}


class TokenError(ValueError):
    """A malformed token (`forged=False`) or one whose signature does not match (`forged=True`)."""

    def __init__(self, reason: str, *, forged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forged = forged

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token asserts about its decision."""

    decision_id: str
    slot: str
    variant: str
    propensity: float
    model_version: str
    issued_ms: int


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64encode(raw: bytes) -> bytes:
    """Unpadded base64url of `raw`, as ASCII bytes."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=")


def _b64decode(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise TokenError("token is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("token is not unpadded base64url") from exc


@lru_cache(maxsize=4)
def _keyed(secret: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hashes with `secret` keyed in (RFC 2104), made once.

    Each token copies them: two C-level hash copies, without `hmac.HMAC`'s Python-level copy
    and digest (about half the cost of a signature); tests/test_origin_tokens.py checks it
    against `hmac`.
    """
    key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
    key = key.ljust(_BLOCK, b"\0")
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in key)),
        hashlib.sha256(bytes(b ^ 0x5C for b in key)),
    )


_BLOCK = 64  # SHA-256's block size in bytes


def _signature(secret: bytes, encoded_payload: bytes) -> bytes:
    """The unpadded base64url HMAC-SHA256 of `encoded_payload` (ASCII bytes)."""
    inner, outer = _keyed(secret)
    inner, outer = inner.copy(), outer.copy()
    inner.update(encoded_payload)
    outer.update(inner.digest())
    return _b64encode(outer.digest())


def _ascii_string(value: str) -> str:
    """`value` as a JSON string: non-ASCII as lowercase \\uXXXX escapes, as the edge writes it."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # nothing to escape (ids, slot and variant names): json.dumps' text
    return json.dumps(value)


# Slot, variant and model version names repeat from token to token: quoted once each.
_quoted_name = lru_cache(maxsize=1024)(_ascii_string)


def sign(secret: bytes, decision: dict[str, Any], issued_ms: int) -> str:
    """The token for a decision (`decision_id`, `slot`, `variant`, `propensity`, `model_version`).

    The payload text is what the edge writes for the same decision (keys in contract order,
    JS number formatting, ASCII-only strings), so both runtimes issue byte-identical tokens.
    The token stays bytes until it is whole (one decode instead of one per part).
    """
    payload = (
        f'{{"d":{_ascii_string(decision["decision_id"])},"s":{_quoted_name(decision["slot"])},'
        f'"v":{_quoted_name(decision["variant"])},"p":{js_number(decision["propensity"])},'
        f'"m":{_quoted_name(decision["model_version"])},"t":{int(issued_ms)}}}'
    )
    encoded = _b64encode(payload.encode("ascii"))
    return (encoded + b"." + _signature(secret, encoded)).decode("ascii")


def verify(secret: bytes, token: Any) -> TokenClaims:
    """Claims of a token signed with `secret`; raises TokenError otherwise."""
    if not isinstance(token, str) or token.count(".") != 1:
        raise TokenError("token must be two base64url parts joined by '.'")
    encoded, signature = token.split(".")
    if not _BASE64URL.fullmatch(encoded) or not _BASE64URL.fullmatch(signature):
        raise TokenError("token is not unpadded base64url")
    if len(signature) != _SIGNATURE_CHARS:
        raise TokenError("token signature is not an HMAC-SHA256")
    if not hmac.compare_digest(_signature(secret, encoded.encode("ascii")), signature.encode()):
        raise TokenError("token signature does not match", forged=True)
    try:
        payload = json.loads(_b64decode(encoded))
    except ValueError as exc:
        raise TokenError("token payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise TokenError("token payload is not a JSON object")
    for key, kind in _FIELDS.items():
        value = payload.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TokenError(f"token payload field {key!r} missing or of the wrong type")
    return TokenClaims(
        decision_id=payload["d"],
        slot=payload["s"],
        variant=payload["v"],
        propensity=float(payload["p"]),
        model_version=payload["m"],
        issued_ms=int(payload["t"]),
    )
