"""Offline policy evaluation against the simulator's ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from model_export import evaluate, simulate
from model_export.export import build_model
from model_export.features import default_spec, features
from tests.conftest import ROOT

N_LOG = 25_000
SEED = 11


def hero_model(weights: dict, bias: float, epsilon: float) -> dict:
    site = simulate.load_site()
    config = site.slots["hero"].config()
    config.update(
        bias={v: bias for v in config["variants"]},
        weights=weights,
        exploration={"kind": "egreedy", "epsilon": epsilon},
    )
    return build_model(default_spec(site.vocab()), {"hero": config}, datetime.fromtimestamp(0, UTC))


CANDIDATES = {
    # shaped like the ground truth: a strong personalized policy
    "truth-shaped": hero_model(simulate.TRUTH["hero"], simulate.BASE_LOGIT, 0.1),
    # preferences shifted one variant along: a confidently wrong policy
    "shifted": hero_model(
        dict(
            zip(
                ["running", "camping", "hiking", "cycling", "sale", "default"],
                [
                    simulate.TRUTH["hero"][v]
                    for v in ["default", "running", "camping", "hiking", "cycling", "sale"]
                ],
                strict=True,
            )
        ),
        simulate.BASE_LOGIT,
        0.2,
    ),
}


@pytest.fixture(scope="module")
def uniform_log() -> list[dict]:
    """Hero decisions logged by the uniform-random policy (propensity 1/8, 5% holdout)."""
    logging_policy = hero_model({}, 0.0, 1.0)
    return list(simulate.decisions(N_LOG, model=logging_policy, seed=SEED))


@pytest.fixture(scope="module")
def reports(uniform_log) -> dict[str, evaluate.Report]:
    return {
        name: evaluate.evaluate_log(uniform_log, model, n_boot=300, seed=1)[0]
        for name, model in CANDIDATES.items()
    }


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_estimates_are_within_10_percent_of_the_true_value(uniform_log, reports, name):
    # Same seed: the ground truth is taken over the same visitors the log holds.
    truth = simulate.true_value(CANDIDATES[name], n=N_LOG, seed=SEED)
    report = reports[name]
    assert report.slot == "hero" and report.n == N_LOG
    for estimator, estimate in report.estimates.items():
        assert abs(estimate.value - truth) <= 0.10 * truth, (estimator, estimate, truth)
        assert estimate.low <= truth <= estimate.high, (estimator, estimate, truth)
    assert not report.warnings
    assert report.logged.value == pytest.approx(np.mean([r["engaged"] for r in uniform_log]))


def test_estimates_rank_candidates_as_the_truth_does(reports):
    for estimator in evaluate.ESTIMATORS:
        strong = reports["truth-shaped"].estimates[estimator]
        weak = reports["shifted"].estimates[estimator]
        assert strong.low > weak.high, estimator


def synthetic_log(rng: np.random.Generator, n: int):
    """A 3-armed bandit with two contexts; logged uniformly; target = always the best arm."""
    p = np.array([[0.10, 0.30, 0.05], [0.25, 0.05, 0.10]])
    x = rng.integers(0, 2, size=n)
    a = rng.integers(0, 3, size=n)
    r = (rng.random(n) < p[x, a]).astype(float)
    best = p.argmax(axis=1)
    target = (a == best[x]).astype(float)
    q = np.full((n, 3), r.mean())  # a deliberately poor reward model: DR must still be right
    truth = p.max(axis=1).mean()
    return r, np.full(n, 1 / 3), target, q[np.arange(n), a], q[np.arange(n), 0], truth


def test_bootstrap_intervals_cover_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    covered = {name: 0 for name in evaluate.ESTIMATORS}
    runs = 120
    for i in range(runs):
        r, mu, target, q_logged, q_target, truth = synthetic_log(rng, 1500)
        report = evaluate.off_policy(r, mu, target, q_logged, q_target, n_boot=200, seed=i)
        for name, estimate in report.estimates.items():
            covered[name] += estimate.low <= truth <= estimate.high
    for name, hits in covered.items():
        assert 0.85 <= hits / runs <= 0.995, (name, hits)


def test_warns_below_the_minimum_sample_size(uniform_log):
    candidate = CANDIDATES["truth-shaped"]
    (small,) = evaluate.evaluate_log(uniform_log[:300], candidate, n_boot=50, min_samples=1000)
    assert any("only 300 logged decisions" in w for w in small.warnings)
    assert any("effective sample size" in w for w in small.warnings)
    (enough,) = evaluate.evaluate_log(uniform_log[:300], candidate, n_boot=50, min_samples=20)
    assert not enough.warnings


def evaluate_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model_export", "evaluate", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ('{"slot": "hero", "variant": "running", "propensity": 0}', "line 2: "),
        ("PROPENSITY", "line 2: propensity must be in (0, 1], got 1.5"),
    ],
)
def test_bad_log_line_is_named_by_the_cli(uniform_log, tmp_path, line, message):
    log, model = tmp_path / "log.jsonl", tmp_path / "model.json"
    if line == "PROPENSITY":
        line = json.dumps({**uniform_log[1], "propensity": 1.5})
    log.write_text(json.dumps(uniform_log[0]) + "\n" + line + "\n")
    model.write_text(json.dumps(CANDIDATES["truth-shaped"]))
    done = evaluate_cli("--log", str(log), "--model", str(model), "--bootstrap", "10")
    assert done.returncode != 0
    assert message in done.stderr
    skipped = evaluate_cli("--log", str(log), "--model", str(model), "--bootstrap", "10",
                           "--skip-invalid", "--min-samples", "1")  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 1 invalid lines" in skipped.stderr


def test_cli_prints_a_table_and_writes_json(uniform_log, tmp_path):
    log, model, out = tmp_path / "log.jsonl", tmp_path / "model.json", tmp_path / "eval.json"
    log.write_text("".join(json.dumps(r) + "\n" for r in uniform_log[:3000]))
    model.write_text(json.dumps(CANDIDATES["truth-shaped"]))
    done = evaluate_cli(
        "--log", str(log), "--model", str(model), "--bootstrap", "100", "--json", str(out)
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    for label in ("candidate IPS", "candidate SNIPS", "candidate DR", "logged policy"):
        assert label in printed
    (report,) = json.loads(out.read_text())["reports"]
    assert report["slot"] == "hero" and report["n"] == 3000
    assert set(report["estimates"]) == {"ips", "snips", "dr"}


def test_cheap_path_gives_the_same_snips_from_stored_features(uniform_log):
    candidate = CANDIDATES["truth-shaped"]
    rows = uniform_log[:2000]
    spec = candidate["features"]
    stored = [{**r, "context": {}, "features": [list(f) for f in features(r["context"], spec)]}
              for r in rows]  # fmt: skip
    (full,) = evaluate.evaluate_log(rows, candidate, n_boot=20)
    (cheap,) = evaluate.evaluate_log(stored, candidate, n_boot=20, estimators=("snips",))
    assert set(cheap.estimates) == {"snips"}
    assert cheap.estimates["snips"] == full.estimates["snips"]
    with pytest.raises(ValueError, match="unknown estimator"):
        evaluate.evaluate_log(rows, candidate, estimators=("magic",))
