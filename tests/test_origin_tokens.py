"""Decision tokens (CONTRACT §9): the origin verifies what the edge signs, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from origin.tokens import TokenError, sign, verify
from tests.conftest import GOLDEN


def vectors() -> list[dict]:
    return json.loads((GOLDEN / "token_vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["decision"]["decision_id"])
def test_edge_tokens_verify_and_ours_match_them(vector):
    secret = vector["secret"].encode("utf-8")
    claims = verify(secret, vector["token"])
    decision = vector["decision"]
    assert (claims.decision_id, claims.slot, claims.variant, claims.model_version) == (
        decision["decision_id"],
        decision["slot"],
        decision["variant"],
        decision["model_version"],
    )
    assert claims.propensity == decision["propensity"] and claims.issued_ms == vector["issued_ms"]
    assert vector["token"].split(".")[0] == vector["payload_b64"]
    assert sign(secret, decision, vector["issued_ms"]) == vector["token"]  # byte for byte


def test_a_token_from_another_secret_or_tampered_is_forged():
    token = vectors()[0]["token"]
    with pytest.raises(TokenError) as error:
        verify(b"wrong", token)
    assert error.value.forged
    payload, signature = token.split(".")
    with pytest.raises(TokenError) as error:
        verify(vectors()[0]["secret"].encode(), payload[:-2] + "AA." + signature)
    assert error.value.forged


@pytest.mark.parametrize(
    "token", [None, 3, "", ".", "abc", "a.b.c", "a=.b", "a.b=", "!!.??", "YQ.YQ"]
)
def test_malformed_tokens_are_not_forged_but_unreadable(token):
    with pytest.raises(TokenError) as error:
        verify(b"s", token)
    assert not error.value.forged


@pytest.mark.parametrize("length", [1, 12, 63, 64, 65, 130])
def test_signatures_are_hmac_sha256_for_secrets_of_any_length(length):
    secret = bytes((7 * i + length) % 256 for i in range(length))
    token = sign(secret, vectors()[0]["decision"], 1_764_000_000_000)
    payload, signature = token.split(".")
    expected = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == expected
    assert verify(secret, token).decision_id == vectors()[0]["decision"]["decision_id"]
