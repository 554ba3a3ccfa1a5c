"""Offline policy evaluation: what would a candidate model have earned on the logged traffic?

Three estimators of the candidate's value V(π) from a log of decisions made by another policy μ
with their propensities μ(a|x) (CONTRACT §8), each with a bootstrap 95% interval:
- IPS:   mean of r·w, with w = π(a|x)/μ(a|x) — unbiased, high variance;
- SNIPS: Σ r·w / Σ w — self-normalized, a little biased, much steadier;
- DR:    mean of Σ_v π(v|x)·q̂(x,v) + w·(r − q̂(x,a)) — a cross-fitted reward model q̂ corrected
         by importance weighting, unbiased if either q̂ or μ is right.
The candidate's choice probabilities include its holdout exactly as `policy.decide` applies it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_export import obd
from model_export.features import Feature, dense, feature_names, features
from model_export.policy import (
    _TWO_32,
    _holdout_hash,
    choice_probabilities,
    load_model,
    scores,
)
from model_export.train import read_log

MIN_SAMPLES = 1000
ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass
class Report:
    """One slot's evaluation: the logged policy's own value and the candidate's estimates."""

    slot: str
    n: int
    effective_n: float
    logged: Estimate
    estimates: dict[str, Estimate]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- estimators ---------------------------------------------------------------------------------


def off_policy(
    reward: np.ndarray,
    propensity: np.ndarray,
    target: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
    *,
    slot: str = "",
    n_boot: int = 1000,
    seed: int = 0,
    min_samples: int = MIN_SAMPLES,
) -> Report:
    """Estimates of V(π) from per-row arrays: r, μ(a|x), π(a|x), q̂(x,a), Σ_v π(v|x) q̂(x,v)."""
    r = np.asarray(reward, dtype=float)
    w = np.asarray(target, dtype=float) / np.asarray(propensity, dtype=float)
    dr = np.asarray(q_target, dtype=float) + w * (r - np.asarray(q_logged, dtype=float))
    n = len(r)
    if n == 0:
        raise ValueError(f"slot {slot!r}: no logged decisions to evaluate")
    effective_n = float(w.sum() ** 2 / (w**2).sum()) if w.any() else 0.0

    def point(rows: np.ndarray | slice) -> dict[str, float]:
        wr, ww = r[rows] * w[rows], w[rows]
        total_w = ww.sum()
        return {
            "logged": float(r[rows].mean()),
            "ips": float(wr.mean()),
            "snips": float(wr.sum() / total_w) if total_w > 0 else 0.0,
            "dr": float(dr[rows].mean()),
        }

    center = point(slice(None))
    draws = bootstrap(point, n, n_boot, seed)
    interval = {
        k: Estimate(center[k], *np.percentile(draws[k], [2.5, 97.5]).tolist()) for k in center
    }
    warnings = []
    if n < min_samples:
        warnings.append(f"only {n} logged decisions (< {min_samples}): estimates are unreliable")
    if effective_n < min_samples:
        warnings.append(
            f"effective sample size {effective_n:.0f} (< {min_samples}): the candidate rarely "
            "agrees with the logged policy, so IPS/SNIPS rest on few decisions"
        )
    return Report(
        slot=slot,
        n=n,
        effective_n=round(effective_n, 1),
        logged=interval.pop("logged"),
        estimates=interval,
        warnings=warnings,
    )


def bootstrap(statistic, n: int, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """`statistic` over `n_boot` resamples (with replacement) of `n` rows."""
    rng = np.random.default_rng(seed)
    results: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for k, v in statistic(rng.integers(0, n, size=n)).items():
            results.setdefault(k, []).append(v)
    return {k: np.asarray(v) for k, v in results.items()}


# --- the reward model for DR -----------------------------------------------------------------


def cross_fitted_rewards(
    x: np.ndarray, actions: np.ndarray, reward: np.ndarray, n_actions: int, folds: int = 2, seed=0
) -> np.ndarray:
    """q̂(x, v) for every row and action, each row predicted by models fit on the other folds.

    One L2 logistic regression per action; an action with too few rows or only one outcome in
    the training folds falls back to its smoothed click rate.
    """
    from sklearn.linear_model import LogisticRegression

    n = len(reward)
    fold = np.random.default_rng(seed).integers(0, folds, size=n)
    q = np.zeros((n, n_actions))
    for k in range(folds):
        train, test = fold != k, fold == k
        prior = reward[train].mean() if train.any() else 0.0
        for a in range(n_actions):
            rows = train & (actions == a)
            y = reward[rows]
            if rows.sum() >= 50 and 0 < y.sum() < len(y):
                fitted = LogisticRegression(C=1.0, solver="liblinear").fit(x[rows], y)
                q[test, a] = fitted.predict_proba(x[test])[:, 1]
            else:
                q[test, a] = (y.sum() + 10 * prior) / (len(y) + 10)
    return q


# --- decision logs and candidate models ------------------------------------------------------


def target_probabilities(
    model: Mapping[str, Any], slot: str, active: list[Feature], unit: str
) -> dict[str, float]:
    """π(v|x) of `model` given the active features, holdout included as `policy.decide` does.

    `unit` is the holdout unit: the visitor id, or the decision id when there is none.
    """
    config = model["slots"][slot]
    if _holdout_hash(unit, slot) / _TWO_32 < config.get("holdout", 0):
        return {v: float(v == config["default"]) for v in config["variants"]}
    return choice_probabilities(config, scores(config, active))


def evaluate_log(
    records: Iterable[Mapping[str, Any]],
    model: Mapping[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_samples: int = MIN_SAMPLES,
    estimators: Sequence[str] = ESTIMATORS,
) -> list[Report]:
    """One report per slot of `model` that appears in the log.

    A record may carry its active features as `features` (`[[name, value], ...]`, as the
    origin's learner keeps them) to skip recomputing them from `context`; without `dr` in
    `estimators` no reward model is fitted — the cheap path for repeated checks.
    """
    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        raise ValueError(f"unknown estimator(s) {sorted(unknown)}; choose from {ESTIMATORS}")
    by_slot: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        if record["slot"] in model["slots"]:
            by_slot.setdefault(record["slot"], []).append(record)
    spec = model["features"]
    names = feature_names(spec)
    reports = []
    for slot, rows in by_slot.items():
        variants = model["slots"][slot]["variants"]
        index = {v: i for i, v in enumerate(variants)}
        rows = [r for r in rows if r["variant"] in index]  # variants the candidate cannot show
        pi = np.zeros((len(rows), len(variants)))
        x = np.zeros((len(rows), len(names)))
        for i, r in enumerate(rows):
            given = r.get("features")
            active = (
                [(n, v) for n, v in given]
                if isinstance(given, list)
                else features(r.get("context", {}), spec)
            )
            unit = r.get("visitor_id") or r.get("decision_id") or ""
            pi[i] = list(target_probabilities(model, slot, active, unit).values())
            x[i] = dense(active, names)
        actions = np.array([index[r["variant"]] for r in rows])
        reward = np.array([float(r.get("engaged", r.get("reward", 0))) for r in rows])
        if "dr" in estimators:
            q = cross_fitted_rewards(x, actions, reward, len(variants), seed=seed)
        else:
            q = np.zeros((len(rows), len(variants)))
        at = np.arange(len(rows))
        report = off_policy(
            reward,
            np.array([float(r["propensity"]) for r in rows]),
            pi[at, actions],
            q[at, actions],
            (pi * q).sum(axis=1),
            slot=slot,
            n_boot=n_boot,
            seed=seed,
            min_samples=min_samples,
        )
        report.estimates = {k: e for k, e in report.estimates.items() if k in estimators}
        reports.append(report)
    return reports


def evaluate_obd(wheel: Path, campaign: str = "all", *, n_boot: int = 1000, seed: int = 0):
    """Uniform random's value estimated from the BTS log, next to the random log's own mean.

    Both logs come from the same site and weeks, so the random log's on-policy click rate is
    the ground truth the off-policy estimates from the BTS log should reach.
    """
    bts = obd.load(wheel, "bts", campaign)
    random = obd.load(wheel, "random", campaign)
    k = bts.n_actions
    actions = np.array([r.action for r in bts.rows])
    reward = np.array([float(r.reward) for r in bts.rows])
    positions = bts.positions
    # q̂ from the item and its position: the user features are hashed categories.
    x = np.array([[float(r.position == p) for p in positions] for r in bts.rows])
    q = cross_fitted_rewards(x, actions, reward, k, seed=seed)
    at = np.arange(len(actions))
    report = off_policy(
        reward,
        np.array([r.propensity for r in bts.rows]),
        np.full(len(actions), 1.0 / k),
        q[at, actions],
        q.mean(axis=1),
        slot=f"obd/{campaign}: uniform random from the bts log",
        n_boot=n_boot,
        seed=seed,
    )
    truth = bootstrap(
        lambda rows: {"mean": float(np.array([random.rows[i].reward for i in rows]).mean())},
        len(random.rows),
        min(n_boot, 200),
        seed,
    )["mean"]
    on_policy = float(np.mean([r.reward for r in random.rows]))
    return report, Estimate(on_policy, *np.percentile(truth, [2.5, 97.5]).tolist())


# --- command line ----------------------------------------------------------------------------


def table(reports: Sequence[Report], truth: Estimate | None = None) -> str:
    """The estimates as an aligned text table, warnings underneath."""
    lines = []
    for report in reports:
        lines.append(f"slot {report.slot}: n={report.n}, effective n={report.effective_n:.0f}")
        lines.append(f"  {'estimator':<28}{'value':>10}{'95% interval':>26}")
        rows = [("logged policy (on-policy)", report.logged)]
        rows += [(f"candidate {k.upper()}", e) for k, e in report.estimates.items()]
        if truth is not None:
            rows.append(("truth: random log on-policy", truth))
        for name, e in rows:
            lines.append(f"  {name:<28}{e.value:>10.5f}   [{e.low:>9.5f}, {e.high:>9.5f}]")
        lines += [f"  warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def add_cli(subparsers: Any) -> None:
    """Register `evaluate` on the `python -m model_export` argument parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="offline IPS/SNIPS/DR value of a model on a decision log, or on the OBD sample",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", type=Path, help="decision log, JSON lines (CONTRACT §8)")
    source.add_argument(
        "--obd",
        type=Path,
        metavar="CACHE_DIR",
        help="evaluate on the Open Bandit Dataset sample from the obp wheel in (or fetched to) "
        "this directory",
    )
    parser.add_argument("--model", type=Path, help="candidate model.json (with --log)")
    parser.add_argument("--campaign", default="all", choices=obd.CAMPAIGNS)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-samples", type=int, default=MIN_SAMPLES)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-invalid", action="store_true", help="skip and count bad lines")
    parser.set_defaults(run=cli)


def cli(args: argparse.Namespace) -> int:
    truth = None
    if args.obd is not None:
        report, truth = evaluate_obd(
            obd.fetch_wheel(args.obd), args.campaign, n_boot=args.bootstrap, seed=args.seed
        )
        reports = [report]
    else:
        if args.model is None:
            print("evaluate: --model is required with --log", file=sys.stderr)
            return 2
        try:
            model = load_model(args.model.read_text(encoding="utf-8"))
            log = read_log(args.log, model["slots"], skip_invalid=args.skip_invalid)
            if log.skipped:
                print(f"evaluate: skipped {log.skipped} invalid lines", file=sys.stderr)
            reports = evaluate_log(
                log.records,
                model,
                n_boot=args.bootstrap,
                seed=args.seed,
                min_samples=args.min_samples,
            )
        except (OSError, ValueError) as exc:  # TrainingError and ModelError are ValueErrors
            print(f"evaluate: {exc}", file=sys.stderr)
            return 1
        if not reports:
            print("evaluate: no logged decision is for a slot of this model", file=sys.stderr)
            return 1
    print(table(reports, truth))
    if args.json is not None:
        out: dict[str, Any] = {"reports": [r.to_dict() for r in reports]}
        if truth is not None:
            out["truth"] = asdict(truth)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0 if all(math.isfinite(e.value) for r in reports for e in r.estimates.values()) else 1
