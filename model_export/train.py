"""Fit per-slot, per-variant logistic engagement models from a decision log (CONTRACT §8).

Each variant's model sees the decisions that showed it, weighted by 1/propensity (clipped), so
the logging policy's preferences do not bias the fit; L2-regularized scikit-learn
`LogisticRegression`. A held-out split gives each variant's log-loss and AUC.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from model_export.features import feature_names, features


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


# The fields training reads (CONTRACT §8): what each must be, and the test for it.
REQUIRED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "decision_id": ("a string", _is_string),
    "slot": ("a string", _is_string),
    "variant": ("a string", _is_string),
    "propensity": ("a number", _is_number),
    "context": ("an object", lambda value: isinstance(value, dict)),
    "visitor_id": ("a string", _is_string),
    "engaged": ("0 or 1", lambda value: _is_number(value) and value in (0, 1)),
}


class TrainingError(ValueError):
    """Training cannot go on: a bad log, or nothing to train on."""


class LogError(TrainingError):
    """A decision-log line that cannot be trained on; names the line and the field."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class Progress:
    """A dependency-free progress display on stderr (a bar on a terminal, lines otherwise)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total, self.stream = label, max(total, 1), stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        percent = min(100, done * 100 // self.total)
        step = percent if self.tty else percent // 25 * 25
        if step == self.shown:
            return
        self.shown = step
        bar = "#" * (percent // 5) + "." * (20 - percent // 5)
        end = "\r" if self.tty and percent < 100 else "\n"
        self.stream.write(f"{self.label} [{bar}] {percent:3d}% ({done}/{self.total}){end}")
        self.stream.flush()


def check_record(record: Any, line: int, slots: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise LogError unless `record` is a trainable decision for one of `slots`."""
    if not isinstance(record, dict):
        raise LogError(line, f"a decision is a JSON object, got {type(record).__name__}")
    for name, (want, valid) in REQUIRED.items():
        if name not in record:
            raise LogError(line, f"{name} missing")
        if not valid(record[name]):
            raise LogError(line, f"{name} must be {want}, got {json.dumps(record[name])}")
    propensity = record["propensity"]
    if not (0 < propensity <= 1):
        raise LogError(line, f"propensity must be in (0, 1], got {json.dumps(propensity)}")
    slot = slots.get(record["slot"])
    if slot is None:
        raise LogError(line, f"slot {record['slot']!r} is not one of {sorted(slots)}")
    if record["variant"] not in slot["variants"]:
        raise LogError(line, f"variant {record['variant']!r} is not in slot {record['slot']!r}")


@dataclass
class DecisionLog:
    """The valid decisions of a log, and how many invalid lines were skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    first_skipped: list[str] = field(default_factory=list)


def read_log(
    source: str | Path | Iterable[str],
    slots: Mapping[str, Mapping[str, Any]],
    skip_invalid: bool = False,
) -> DecisionLog:
    """Parse and check a JSON-lines decision log; the first bad line raises unless skipped."""
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as stream:
            return read_log(stream, slots, skip_invalid)
    log = DecisionLog()
    for number, text in enumerate(source, start=1):
        if not text.strip():
            continue
        try:
            try:
                record = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise LogError(number, f"not JSON ({exc.msg} at column {exc.colno})") from None
            check_record(record, number, slots)
        except LogError as exc:
            if not skip_invalid:
                raise
            log.skipped += 1
            if len(log.first_skipped) < 5:
                log.first_skipped.append(str(exc))
            continue
        log.records.append(record)
    return log


# The fields that read `timezone`, `now_ms` or `session` (CONTRACT §4). The other fields read
# only the other keys, whose values logs repeat (URLs, referrers, user agents), so that part of
# a row is computed once per distinct value: the regexes over those strings are most of the cost.
_PER_ROW_KEYS = ("timezone", "now_ms", "session")
_PER_ROW_FIELDS = {
    "hour_sin",
    "hour_cos",
    "weekday",
    "session_categories",
    "price_band",
    "session_pages",
    "last_event",
}


def encode(contexts: list[Any], spec: Mapping[str, Any], label: str = "features") -> np.ndarray:
    """The dense feature rows of `contexts` (`feature_names(spec)` columns), float64."""
    names = feature_names(spec)
    index = {name: i for i, name in enumerate(names)}
    per_row = {**spec, "fields": [f for f in spec["fields"] if f["name"] in _PER_ROW_FIELDS]}
    rest_spec = {**spec, "fields": [f for f in spec["fields"] if f["name"] not in _PER_ROW_FIELDS]}

    def columns(part: Mapping[str, Any], part_spec: Mapping[str, Any]) -> list[tuple[int, float]]:
        return [(index[name], value) for name, value in features(part, part_spec)]

    repeated: dict[str, list[tuple[int, float]]] = {}
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    progress = Progress(label, len(contexts))
    for r, context in enumerate(contexts):
        if not isinstance(context, Mapping):
            context = {}
        rest = {k: v for k, v in context.items() if k not in _PER_ROW_KEYS}
        key = json.dumps(rest, sort_keys=True)
        if key not in repeated:
            repeated[key] = columns(rest, rest_spec)
        own = columns({k: context[k] for k in _PER_ROW_KEYS if k in context}, per_row)
        for col, value in repeated[key] + own:
            rows.append(r)
            cols.append(col)
            values.append(value)
        if r % 5000 == 0:
            progress.update(r)
    progress.update(len(contexts))
    dense = np.zeros((len(contexts), len(names)))
    dense[rows, cols] = values
    return dense


@dataclass
class Fitted:
    """A trained model: slot configs with bias and weights, the estimators, and the report."""

    spec: dict[str, Any]
    slots: dict[str, dict[str, Any]]
    estimators: dict[str, dict[str, LogisticRegression | None]]
    report: dict[str, Any]


def _variant_report(
    estimator: LogisticRegression | None, bias: float, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    if len(y) == 0:
        return {"n_test": 0, "log_loss": None, "auc": None}
    if estimator is None:
        p = np.full(len(y), 1 / (1 + math.exp(-bias)))
    else:
        p = estimator.predict_proba(x)[:, 1]
    return {
        "n_test": int(len(y)),
        "log_loss": round(float(log_loss(y, p, labels=[0, 1])), 5),
        "auc": round(float(roc_auc_score(y, p)), 5) if 0 < y.sum() < len(y) else None,
    }


def fit(
    log: DecisionLog,
    spec: dict[str, Any],
    slots: Mapping[str, Mapping[str, Any]],
    clip: float = 20.0,
    c: float = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Fitted:
    """Fit one logistic model per (slot, variant) on the decisions that showed that variant."""
    started = time.monotonic()
    names = feature_names(spec)
    x_all = encode([r["context"] for r in log.records], spec)
    slot_of = np.array([r["slot"] for r in log.records])
    variant_of = np.array([r["variant"] for r in log.records])
    y_all = np.array([r["engaged"] for r in log.records], dtype=np.int64)
    weight_all = np.minimum(1.0 / np.array([r["propensity"] for r in log.records]), clip)
    held_out = np.random.default_rng(seed).random(len(log.records)) < test_fraction
    fitted_slots: dict[str, dict[str, Any]] = {}
    estimators: dict[str, dict[str, LogisticRegression | None]] = {}
    report: dict[str, Any] = {}
    progress = Progress("fitting", sum(len(s["variants"]) for s in slots.values()))
    done = 0
    for slot_name, slot in slots.items():
        config = {key: slot[key] for key in ("variants", "default", "exploration", "holdout")}
        config["bias"], config["weights"] = {}, {}
        estimators[slot_name], report[slot_name] = {}, {}
        for variant in slot["variants"]:
            rows = (slot_of == slot_name) & (variant_of == variant)
            train, test = rows & ~held_out, rows & held_out
            x, y, w = x_all[train], y_all[train], weight_all[train]
            estimator: LogisticRegression | None = None
            if len(set(y.tolist())) == 2:
                estimator = LogisticRegression(C=c, max_iter=1000)
                # One BLAS thread: these matrices are small, and on a busy 2-core machine
                # two spinning BLAS threads made each fit ~10x slower than one.
                with threadpool_limits(limits=1, user_api="blas"):
                    estimator.fit(x, y, sample_weight=w / w.mean())
                bias = float(estimator.intercept_[0])
                coef = estimator.coef_[0]
                config["weights"][variant] = {
                    n: float(v) for n, v in zip(names, coef, strict=True) if v
                }
            else:  # too few decisions to fit: the smoothed engagement rate, no weights
                bias = math.log((y.sum() + 0.5) / (len(y) - y.sum() + 0.5))
            config["bias"][variant] = bias
            estimators[slot_name][variant] = estimator
            report[slot_name][variant] = {
                "n_train": int(train.sum()),
                "engaged_rate": round(float(y.mean()), 5) if len(y) else None,
                "fit": "logistic" if estimator else "constant",
                **_variant_report(estimator, bias, x_all[test], y_all[test]),
            }
            done += 1
            progress.update(done)
        fitted_slots[slot_name] = config
    summary = {
        "decisions": len(log.records),
        "skipped": log.skipped,
        "features": len(names),
        "train_s": round(time.monotonic() - started, 2),
        "slots": report,
    }
    return Fitted(spec=spec, slots=fitted_slots, estimators=estimators, report=summary)
