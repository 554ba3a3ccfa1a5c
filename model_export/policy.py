"""The decision policy: load `model.json`, score variants, choose with exploration.

Standard library only, so the same file runs in the origin and inside Pyodide. CONTRACT.md
§5–§6 is the specification; the JS port in `edge/src/policy.js` follows it line by line.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from model_export.features import Feature, SpecError, features, per_object, validate_spec

FORMAT = "firstpaint.model/1"
_TWO_32 = 4294967296.0


class ModelError(ValueError):
    """A model file that must not be used: wrong format, bad checksum or inconsistent slots."""


@dataclass(frozen=True)
class Decision:
    """One slot's decision, with what is needed to log it and to explain it."""

    slot: str
    variant: str
    propensity: float
    holdout: bool
    explored: bool
    scores: dict[str, float]
    probabilities: dict[str, float]
    model_version: str
    decision_id: str
    top_features: list[list[Any]] = field(default_factory=list)
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- canonical JSON and checksum (CONTRACT §5) ------------------------------------------------


def js_number(x: float) -> str:
    """`x` as ECMAScript's Number.prototype.toString writes it (shortest round-trip digits)."""
    if not math.isfinite(x):
        raise ModelError(f"non-finite number {x!r} cannot be stored in a model")
    if x == 0:
        return "0"
    text = repr(float(x))
    if "e" not in text:
        # Python writes 1e-4 <= |x| < 1e16 positionally, and JS does too (1e-6 <= |x| < 1e21),
        # with the same shortest round-trip digits; JS only drops a ".0".
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exp = text.removeprefix("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    significant = (whole + frac).lstrip("0")
    n = len(whole) - (len(whole + frac) - len(significant)) + int(exp or 0)
    digits = significant.rstrip("0")
    k = len(digits)
    sign = "-" if x < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    fraction = "." + digits[1:] if k > 1 else ""
    return f"{sign}{digits[0]}{fraction}e{'+' if n >= 1 else '-'}{abs(n - 1)}"


def canonical_json(value: Any) -> str:
    """Sorted keys, no white space, JS number formatting: the text the sha256 covers."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return "{" + ",".join(f"{canonical_json(k)}:{canonical_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    raise ModelError(f"cannot store a {type(value).__name__} in a model")


def model_sha256(model: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of `model` without its own `sha256` key."""
    body = {k: v for k, v in model.items() if k != "sha256"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def seal(model: dict[str, Any]) -> dict[str, Any]:
    """Return `model` with its `sha256` set (integral floats stored as integers)."""
    body = json.loads(canonical_json({k: v for k, v in model.items() if k != "sha256"}))
    body["sha256"] = model_sha256(body)
    return body


# --- loading ----------------------------------------------------------------------------------


def _check_slot(name: str, slot: Mapping[str, Any]) -> None:
    variants = slot.get("variants")
    if not isinstance(variants, list) or not variants or len(set(variants)) != len(variants):
        raise ModelError(f"slots.{name}.variants must be a non-empty list of distinct names")
    if slot.get("default") not in variants:
        raise ModelError(f"slots.{name}.default {slot.get('default')!r} is not among its variants")
    holdout = slot.get("holdout", 0)
    if not isinstance(holdout, int | float) or not 0 <= holdout < 1:
        raise ModelError(f"slots.{name}.holdout must be in [0, 1), got {holdout!r}")
    exploration = slot.get("exploration") or {}
    kind = exploration.get("kind")
    if kind == "egreedy":
        if not 0 <= exploration.get("epsilon", -1) <= 1:
            raise ModelError(f"slots.{name}.exploration.epsilon must be in [0, 1]")
    elif kind == "softmax":
        t, f = exploration.get("temperature", 0), exploration.get("floor", -1)
        if not t > 0 or not 0 <= f or len(variants) * f > 1:
            raise ModelError(f"slots.{name}.exploration: need temperature > 0, 0 <= K·floor <= 1")
    else:
        raise ModelError(f"slots.{name}.exploration.kind must be 'egreedy' or 'softmax'")


def check_model(model: Any) -> dict[str, Any]:
    """Validate a parsed model (format, sha256, slots, spec) and return it."""
    if not isinstance(model, dict):
        raise ModelError("a model is a JSON object")
    if model.get("format") != FORMAT:
        raise ModelError(f"format must be {FORMAT!r}, got {model.get('format')!r}")
    if model.get("sha256") != model_sha256(model):
        raise ModelError("sha256 does not match the model's content")
    try:
        validate_spec(model.get("features") or {})
    except SpecError as exc:
        raise ModelError(str(exc)) from exc
    slots = model.get("slots")
    if not isinstance(slots, dict) or not slots:
        raise ModelError("slots must be a non-empty object")
    for name, slot in slots.items():
        _check_slot(name, slot)
    return model


def load_model(source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Parse (if needed) and validate a model; raises ModelError."""
    if isinstance(source, str | bytes):
        try:
            source = json.loads(source)
        except ValueError as exc:
            raise ModelError(f"model is not JSON: {exc}") from exc
    if not isinstance(source, Mapping):
        raise ModelError("a model is a JSON object")
    return check_model(dict(source))


# --- scoring and choosing (CONTRACT §6) -------------------------------------------------------


_FNV_BASIS = 2166136261


def fnv1a32(text: str, basis: int = _FNV_BASIS) -> int:
    """FNV-1a 32-bit over the UTF-8 bytes of `text`.

    `basis` is the offset basis, or the hash of a prefix to continue from: FNV reads its bytes
    in order, so `fnv1a32(b, fnv1a32(a)) == fnv1a32(a + b)`.
    """
    h = basis
    for byte in text.encode("utf-8", "surrogatepass"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


_HOLDOUT_BASIS = fnv1a32("holdout\x1f")  # every holdout hash starts with these bytes


# FNV-1a in Python costs ~0.2 µs a byte (its 32-bit state is a two-digit int): the two hashes of
# a decision were ~14 µs of the origin's ~35 µs `decision_fields`. Both start with the visitor
# and the slot, which repeat from one page of a visit to the next: the holdout hash is a pure
# function of them, and the draw continues from their prefix over the decision id alone.
@lru_cache(maxsize=16_384)
def _holdout_hash(unit: str, slot: str) -> int:
    """`fnv1a32("holdout\x1f" + unit + "\x1f" + slot)` (CONTRACT §6.3)."""
    return fnv1a32(f"{unit}\x1f{slot}", _HOLDOUT_BASIS)


@lru_cache(maxsize=16_384)
def _draw_basis(visitor_id: str, slot: str) -> int:
    """The draw's hash state after `visitor + "\x1f" + slot + "\x1f"` (CONTRACT §6.4)."""
    return fnv1a32(f"{visitor_id}\x1f{slot}\x1f")


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0


def _sigmoids(logits: list[float]) -> list[float]:
    """`sigmoid` of each logit, without a function call per variant (the same operations)."""
    exp = math.exp
    return [1.0 / (1.0 + exp(-z)) if z >= -700 else 0.0 for z in logits]


# The weights of one active feature: its (variant index, weight) pairs, in variant order.
_Row = list[tuple[int, float]]


class _Scorer:
    """A slot's parameters laid out for scoring, built once per slot object.

    `rows[name]` holds the (variant index, weight) pairs of feature `name`, so one pass over the
    active features updates every variant's logit instead of one dict lookup per variant and
    feature. Each logit still starts from its bias and adds its terms in feature order, so the
    scores are bit-for-bit those of the definition (CONTRACT §6).
    """

    def __init__(self, slot: Mapping[str, Any]) -> None:
        self.variants: list[str] = list(slot["variants"])
        bias, all_weights = slot["bias"], slot["weights"]
        self.bias = [float(bias.get(v, 0.0)) for v in self.variants]
        rows: dict[str, _Row] = {}
        for i, variant in enumerate(self.variants):
            for name, w in (all_weights.get(variant) or {}).items():
                if w is not None:
                    rows.setdefault(name, []).append((i, w))
        self.rows = rows

    def logits(self, active: list[Feature]) -> tuple[list[float], list[tuple[str, float, _Row]]]:
        """The logits in variant order, and the active features that have weights (name, value,
        row), in feature order: what `_top_features` reads."""
        z = self.bias.copy()
        row_of = self.rows.get
        hits = []
        for name, value in active:
            row = row_of(name)
            if row is not None:
                hits.append((name, value, row))
                for i, w in row:
                    z[i] += w * value
        return z, hits


_SCORERS: dict[int, tuple[Any, _Scorer]] = {}


def scores(slot: Mapping[str, Any], active: list[Feature]) -> dict[str, float]:
    """Engagement probability per variant: σ(b_v + Σ w_v,f · x_f), summed in feature order."""
    logits = per_object(_SCORERS, slot, _Scorer).logits(active)[0]
    return dict(zip(slot["variants"], _sigmoids(logits), strict=True))


def _best(values: list[float]) -> int:
    """The index of the first of the highest scores (never NaN: `_sigmoids` maps NaN to 0)."""
    return values.index(max(values))


def choice_probabilities(slot: Mapping[str, Any], p: Mapping[str, float]) -> dict[str, float]:
    """π_v from the slot's exploration setting."""
    variants = slot["variants"]
    return dict(zip(variants, _choice_list(slot, [p[v] for v in variants]), strict=True))


def _choice_list(slot: Mapping[str, Any], values: list[float]) -> list[float]:
    """`choice_probabilities` in variant order, from the scores in variant order."""
    k = len(values)
    exploration = slot["exploration"]
    if exploration["kind"] == "egreedy":
        e = exploration["epsilon"]
        best = _best(values)
        return [e / k + (1 - e) * (i == best) for i in range(k)]
    t, floor = exploration["temperature"], exploration["floor"]
    m = max(values)
    exp = math.exp
    expd = [exp((x - m) / t) for x in values]
    total = sum(expd)
    spread = 1 - k * floor
    return [floor + spread * (x / total) for x in expd]


def _top_features(hits: list[tuple[str, float, _Row]], chosen: int) -> list[list[Any]]:
    """Up to 3 `[name, w·x]` of variant `chosen` by |w·x| descending (ties: feature order)."""
    contributions = []
    for name, value, row in hits:
        for i, w in row:
            if i == chosen:
                if w * value != 0:
                    contributions.append([name, w * value])
                break
    if len(contributions) > 1:
        contributions.sort(key=_magnitude, reverse=True)  # stable: ties keep feature order
        del contributions[3:]
    return contributions


def _magnitude(contribution: list[Any]) -> float:
    return abs(contribution[1])


def decide(
    model: Mapping[str, Any],
    context: Mapping[str, Any],
    slot: str,
    visitor_id: str = "",
    decision_id: str | None = None,
    force: str | None = None,
    active: list[Feature] | None = None,
) -> Decision:
    """Decide `slot` for `context`; deterministic given (visitor_id, slot, decision_id).

    `active` is `features(context, model["features"])` when the caller already has it (one
    request deciding several slots computes the features once).
    """
    return Decision(**decision_fields(model, context, slot, visitor_id, decision_id, force, active))


def decision_fields(
    model: Mapping[str, Any],
    context: Mapping[str, Any],
    slot: str,
    visitor_id: str = "",
    decision_id: str | None = None,
    force: str | None = None,
    active: list[Feature] | None = None,
) -> dict[str, Any]:
    """`decide`'s Decision as a dict of its fields, in their order, without the object (the
    origin answers with this dict; a frozen dataclass of eleven fields costs a few µs to build).
    """
    decision_id = decision_id or uuid.uuid4().hex
    config = model["slots"][slot]
    scorer = per_object(_SCORERS, config, _Scorer)
    variants = scorer.variants
    if active is None:
        active = features(context, model["features"])
    logits, hits = scorer.logits(active)
    values = _sigmoids(logits)
    shares = _choice_list(config, values)
    propensity, holdout, explored, forced = 1.0, False, False, False
    if force is not None and force in variants:
        chosen, forced = variants.index(force), True
    else:
        unit = visitor_id or decision_id
        rate = config.get("holdout", 0)
        # A hash / 2^32 is never below a rate of 0: no hash to compute without a holdout.
        if rate > 0 and _holdout_hash(unit, slot) / _TWO_32 < rate:
            chosen, holdout = variants.index(config["default"]), True
        else:
            u = fnv1a32(decision_id, _draw_basis(visitor_id, slot)) / _TWO_32
            cumulative = 0.0
            chosen = len(variants) - 1
            for i, share in enumerate(shares):
                cumulative += share
                if u < cumulative:
                    chosen = i
                    break
            propensity = shares[chosen]
            explored = chosen != _best(values)
    return {
        "slot": slot,
        "variant": variants[chosen],
        "propensity": propensity,
        "holdout": holdout,
        "explored": explored,
        # One value per variant by construction; zip's `strict=` keyword alone costs ~0.5 µs.
        "scores": dict(zip(variants, values)),  # noqa: B905
        "probabilities": dict(zip(variants, shares)),  # noqa: B905
        "model_version": model["model_version"],
        "decision_id": decision_id,
        "top_features": _top_features(hits, chosen),
        "forced": forced,
    }
