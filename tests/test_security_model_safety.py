"""Model safety: the promotion gate and the one-command rollback.

The decision log is written as the API writes it (decisions with their context and
propensity, click events naming their decision), deterministically, into a real SQLite file;
the gate evaluates on it with `model_export.evaluate` (SNIPS) — nothing is stubbed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from starlette.testclient import TestClient

from model_export.policy import canonical_json, decide, seal
from model_export.site import SITE_TOML, load_site
from origin.app import create_app
from origin.clock import ManualClock
from origin.models import cold_model
from origin.promotion import PromotionGate
from origin.services import Settings
from origin.storage import DECISION, EVENT
from tests.conftest import ROOT

SECRET = b"model-safety-secret"
ADMIN = "model-safety-admin"
CONTEXTS = [
    {"url": "/"},
    {"url": "/running"},
    {"url": "/camping?utm_source=newsletter"},
    {"url": "/sale"},
]


def favouring(model: dict, variant: str, version: str) -> dict:
    """`model` with `variant` made the clear favourite of the hero slot."""
    changed = json.loads(canonical_json(model))
    changed["slots"]["hero"]["bias"][variant] = 0.0
    changed["model_version"] = version
    return seal(changed)


def log_traffic(
    storage,
    model: dict,
    n: int,
    click_rates: dict[str, float],
    seed: int,
    start: int = 0,
    ts_ms: int = 0,
) -> None:
    """`n` hero decisions made by `model`, clicked with each variant's rate, appended to the log."""
    rng = random.Random(seed)
    entries = []
    for i in range(start, start + n):
        context = CONTEXTS[i % len(CONTEXTS)]
        made = decide(model, context, "hero", f"visitor-{i}", f"decision-{i}")
        entries.append(
            (
                DECISION,
                {
                    "decision_id": made.decision_id,
                    "slot": "hero",
                    "variant": made.variant,
                    "propensity": made.propensity,
                    "model_version": made.model_version,
                    "visitor_id": f"visitor-{i}",
                    "context": context,
                    "ts_ms": ts_ms,
                    "holdout": made.holdout,
                },
            )
        )
        if rng.random() < click_rates.get(made.variant, 0.0):
            entries.append(
                (
                    EVENT,
                    {
                        "type": "click",
                        "decision_id": made.decision_id,
                        "slot": "hero",
                        "variant": made.variant,
                        "ts_ms": ts_ms,
                        "session_id": None,
                    },
                )
            )
    storage.append(entries)


def start(tmp_path, model_path=None):
    clock = ManualClock()
    settings = Settings(
        db=str(tmp_path / "origin.db"),
        token_secret=SECRET,
        clock=clock,
        learner="manual",
        admin_token=ADMIN,
        reward_window_s=60,
        publish_interval_s=5,
        promotion_max_drop=0.10,
        model_path=model_path,
    )
    client = TestClient(create_app(settings))
    client.origin = client.app.state.origin
    client.clock = clock
    return client


@pytest.fixture
def origin(tmp_path):
    with start(tmp_path) as client:
        yield client


RUNNING_WORLD = {"running": 0.5, "default": 0.1, "camping": 0.05}


def test_gate_refuses_a_worse_candidate_and_promotes_a_better_one(origin):
    storage, current = origin.origin.storage, origin.origin.holder.model
    log_traffic(storage, current, 3000, RUNNING_WORLD, seed=1)
    gate = PromotionGate(storage, max_drop=0.10, min_decisions=1000)

    worse = gate.check(favouring(current, "sale", "worse"), current)
    assert not worse.promote and worse.reason.startswith("hero: snips")
    assert worse.candidate["hero"] < worse.current["hero"] * 0.9
    assert worse.decisions["hero"] == 3000

    better = gate.check(favouring(current, "running", "better"), current)
    assert better.promote and better.candidate["hero"] > better.current["hero"]
    assert gate.check(current, current).promote  # equal is never refused


def test_gate_lets_a_cold_start_learn(origin):
    storage, current = origin.origin.storage, origin.origin.holder.model
    log_traffic(storage, current, 200, RUNNING_WORLD, seed=2)
    verdict = PromotionGate(storage, min_decisions=500).check(
        favouring(current, "sale", "worse"), current
    )
    assert verdict.promote and "fewer than 500" in verdict.reason


def test_a_learned_model_that_evaluates_worse_is_held_until_an_operator_promotes_it(tmp_path):
    """Drift: the learner learned mostly from an old world (sale clicked); the recent log says
    running. The learner's candidate evaluates worse than the current model and is held."""
    cold = cold_model(load_site(SITE_TOML), ManualClock().now_ms())
    current = favouring(cold, "running", "20261125T200000Z-running0")
    (tmp_path / "model.json").write_text(canonical_json(current))
    with start(tmp_path, str(tmp_path / "model.json")) as origin:
        held_until_promoted(origin, current)


def held_until_promoted(origin, current):
    loop, holder, storage = origin.origin.learning, origin.origin.holder, origin.origin.storage
    assert holder.version == current["model_version"]
    loop.gate.log.window = 1500
    loop.gate.min_decisions = 1000
    log_traffic(
        storage, current, 6000, {"sale": 1.0, "camping": 1.0}, seed=3, ts_ms=origin.clock.now_ms()
    )
    while loop.step():  # the old world, learned (the publish interval has not passed)
        pass
    log_traffic(
        storage, current, 1500, RUNNING_WORLD, seed=4, start=6000, ts_ms=origin.clock.now_ms()
    )
    origin.clock.advance(61_000)
    while loop.step():
        pass
    assert loop.published == 0 and loop.refused >= 1
    assert holder.version == current["model_version"]
    assert (
        loop.held is not None and loop.gate.last.candidate["hero"] < loop.gate.last.current["hero"]
    )

    listing = origin.get("/admin/models", headers={"authorization": f"Bearer {ADMIN}"}).json()
    assert listing["held"] == loop.held["model_version"] and listing["gate"]["promote"] is False
    held = loop.held["model_version"]
    response = origin.post("/admin/promote", headers={"authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 201 and holder.version == held
    assert (
        origin.post("/admin/promote", headers={"authorization": f"Bearer {ADMIN}"}).status_code
        == 409
    )


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "origin", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rollback_is_one_command_and_the_learner_continues_from_it(origin, tmp_path):
    holder, loop, storage = origin.origin.holder, origin.origin.learning, origin.origin.storage
    db = str(tmp_path / "origin.db")
    first = holder.version
    auth = {"authorization": f"Bearer {ADMIN}"}
    bad = favouring(holder.model, "sale", "20261125T210000Z-badmodel")
    assert origin.post("/admin/models", content=json.dumps(bad), headers=auth).status_code == 201
    assert holder.version == bad["model_version"]

    def learn_a_little(seed: int) -> None:
        log_traffic(
            storage,
            holder.model,
            50,
            RUNNING_WORLD,
            seed=seed,
            start=seed * 1000,
            ts_ms=origin.clock.now_ms(),
        )
        origin.clock.advance(61_000)
        loop.step()

    learn_a_little(1)  # the learner notices the admin publish and continues from it
    learn_a_little(2)
    learned_from_bad = holder.version
    assert (
        learned_from_bad not in (first, bad["model_version"])
        and holder.model["slots"]["hero"]["bias"]["sale"] > -1
    )

    done = run_cli("rollback", "--to", first, "--db", db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"now serving {first}" in done.stdout
    assert holder.refresh() and holder.version == first  # a running origin follows the storage
    assert run_cli("models", "--db", db).stdout.splitlines()[0].startswith(first)

    learn_a_little(3)  # not overwritten with weights learned on the bad model…
    assert holder.version == first and loop.learner.model_["model_version"] == first
    learn_a_little(4)  # …but learned on from the rolled-back one
    assert holder.version != first and holder.model["slots"]["hero"]["bias"]["sale"] < -1.5

    refused = run_cli("rollback", "--to", "no-such-version", "--db", db)
    assert refused.returncode == 1 and "unknown model version 'no-such-version'" in refused.stdout
    previous = origin.post("/admin/rollback", headers=auth)  # no version: the one before
    assert previous.status_code == 200 and previous.json()["current"] == first
