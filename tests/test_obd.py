"""The Open Bandit Dataset sample, read straight from the obp wheel, and evaluated offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_export import evaluate, obd
from tests.conftest import ROOT

CACHE = ROOT / "build" / "cache"


@pytest.fixture(scope="module")
def wheel() -> Path:
    try:
        return obd.fetch_wheel(CACHE)
    except obd.ObdError as exc:
        pytest.skip(f"OBD SAMPLE NOT TESTED: the obp wheel could not be downloaded ({exc})")


@pytest.mark.parametrize("policy", obd.POLICIES)
@pytest.mark.parametrize("campaign", obd.CAMPAIGNS)
def test_every_sample_loads_with_10000_rows_and_valid_propensities(wheel, policy, campaign):
    log = obd.load(wheel, policy, campaign)
    assert len(log.rows) == 10_000
    assert all(0 < r.propensity <= 1 for r in log.rows)
    assert all(0 <= r.action < log.n_actions for r in log.rows)
    assert log.positions == [1, 2, 3]
    assert {r.reward for r in log.rows} == {0, 1}
    first = log.rows[0]
    assert sorted(k for k in first.context if k.startswith("user_feature_")) == [
        f"user_feature_{i}" for i in range(4)
    ]
    assert len(first.context["affinity"]) == log.n_actions


def test_random_log_propensity_is_one_over_the_number_of_items(wheel):
    log = obd.load(wheel, "random", "all")
    assert log.n_actions == 80
    assert {r.propensity for r in log.rows} == {1 / 80}


def test_unknown_sample_is_refused(wheel):
    with pytest.raises(obd.ObdError, match="no OBD sample"):
        obd.load(wheel, "greedy", "all")


def test_uniform_random_from_bts_log_is_near_the_random_logs_click_rate(wheel):
    report, truth = evaluate.evaluate_obd(wheel, "all", n_boot=200)
    assert report.n == 10_000
    # Click rates here are ~0.4% on 10,000 rows: the estimates are loose, but must bracket
    # the on-policy truth and stay on the same order of magnitude.
    for name in ("ips", "snips"):
        estimate = report.estimates[name]
        assert estimate.low <= truth.value <= estimate.high, (name, estimate, truth)
        assert truth.value / 3 < estimate.value < truth.value * 3
    # BTS concentrates on a few items, so uniform random's effective sample is small: say so.
    assert any("effective sample size" in w for w in report.warnings)


def test_cli_evaluates_obd_and_writes_json(wheel, tmp_path):
    out = tmp_path / "obd.json"
    done = subprocess.run(
        [sys.executable, "-m", "model_export", "evaluate", "--obd", str(wheel.parent),
         "--bootstrap", "50", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "truth: random log on-policy" in done.stdout
    results = json.loads(out.read_text())
    assert results["truth"]["value"] > 0
    assert set(results["reports"][0]["estimates"]) == {"ips", "snips", "dr"}
