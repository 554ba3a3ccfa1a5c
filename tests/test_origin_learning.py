"""The online learner wired into the origin: reward join, window expiry, publishing, learning.

In process, in simulated time (a ManualClock), on both real storage backends.
"""

from __future__ import annotations

import json
import random
import uuid

import pytest
from starlette.testclient import TestClient

from model_export.policy import load_model, seal
from model_export.simulate import GAP_MS, START_MS, Simulator, true_value
from origin.api import decide_slots
from origin.app import create_app
from origin.clock import ManualClock
from origin.services import Settings
from origin.storage.redis import RedisStorage
from origin.storage.sqlite import SqliteStorage
from tests.conftest import ROOT
from tests.support_origin import redis_server  # noqa: F401  (fixture)

SECRET = b"learning-test-secret"
WINDOW_S = 1800
N_DECISIONS = 4000


def neutral_model(path):
    """A starting model that knows nothing: equal biases, no weights (so it shows `default`)."""
    model = load_model((ROOT / "tests" / "golden" / "model.json").read_text())
    for slot in model["slots"].values():
        slot["bias"] = {v: -2.0 for v in slot["variants"]}
        slot["weights"] = {}
    path.write_text(json.dumps(seal({**model, "model_version": "20261101T000000Z-neutral"})))
    return path


@pytest.fixture(params=["sqlite", "redis"])
def client(request, tmp_path):
    clock = ManualClock(START_MS)
    common = dict(
        token_secret=SECRET,
        clock=clock,
        learner="manual",
        publish_interval_s=5,
        reward_window_s=WINDOW_S,
        model_path=str(neutral_model(tmp_path / "m.json")),
    )
    if request.param == "sqlite":
        app = create_app(Settings(db=str(tmp_path / "o.db"), **common))
    else:
        url = request.getfixturevalue("redis_server").url
        storage = RedisStorage(url, clock=clock, prefix=f"l{uuid.uuid4().hex[:8]}:")
        app = create_app(Settings(redis_url=url, **common), storage=storage)
    with TestClient(app) as client:
        client.origin = app.state.origin
        client.clock = clock
        yield client


def decide(client, context=None, slot="hero", visitor_id="v"):
    response = client.post(
        "/v1/decide", json={"slots": [slot], "context": context or {}, "visitor_id": visitor_id}
    )
    assert response.status_code == 200, response.text
    return response.json()["decisions"][0]


def click(client, token):
    response = client.post("/v1/events", json={"events": [{"type": "click", "token": token}]})
    assert response.status_code == 202, response.text


def settle(client):
    """Let the group committer flush (decisions from /v1/decide are queued), then step."""
    client.post("/v1/events", json={"events": [{"type": "view", "session_id": "flush"}]})
    return client.origin.learning.step()


def test_rewards_join_at_once_and_silence_becomes_reward_0_after_the_window(client):
    learning = client.origin.learning
    clicked, ignored = decide(client), decide(client)
    click(client, clicked["token"])
    settle(client)
    assert learning.examples == 1  # the click closed its decision at once
    assert learning.joiner.counts["rewards"] == 1 and len(learning.joiner) == 1
    client.clock.advance(WINDOW_S * 1000 - 1)
    settle(client)
    assert learning.examples == 1  # the other window is still open
    client.clock.advance(2)
    settle(client)
    assert learning.examples == 2 and learning.joiner.counts["expired"] == 1
    assert client.origin.storage.lag(learning.consumer) == 0
    assert ignored["decision_id"] not in {d for d in learning.joiner._open}


def test_a_second_click_on_one_decision_is_not_counted_twice(client):
    decision = decide(client)
    click(client, decision["token"])
    click(client, decision["token"])
    settle(client)
    assert client.origin.learning.examples == 1


def test_publishes_at_most_every_interval_with_a_new_etag(client):
    learning, holder = client.origin.learning, client.origin.holder
    first = client.get("/v1/model")
    click(client, decide(client)["token"])
    client.clock.advance(1000)
    settle(client)
    assert learning.published == 0  # learned, but the last version is less than 5 s old
    client.clock.advance(4000)
    settle(client)
    assert learning.published == 1
    second = client.get("/v1/model", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
    model = load_model(second.content)
    assert model["model_version"] == holder.version != load_model(first.content)["model_version"]
    assert client.origin.storage.current_model().sha256 == model["sha256"]
    client.clock.advance(10_000)
    settle(client)
    assert learning.published == 1  # nothing new learned: no new version
    assert (
        client.get("/v1/model", headers={"If-None-Match": second.headers["etag"]}).status_code
        == 304
    )


def test_learned_model_beats_its_starting_model_on_the_ground_truth(client):
    """Simulated visitors decided by the origin, engaging per the simulator's ground truth;
    the clicks come back through POST /v1/events in beacon-sized batches."""
    sim, outcomes = Simulator(seed=7), random.Random(11)
    origin = client.origin
    start = origin.holder.model
    slots = list(start["slots"])
    clicks = []
    for i in range(N_DECISIONS):
        t_ms = START_MS + i * GAP_MS
        client.clock.advance(t_ms - client.clock.now_ms())
        visitor_id, context = sim.visitor(t_ms)
        slot = slots[i % len(slots)]
        request = {
            "slots": [slot],
            "context": context,
            "session_id": None,
            "visitor_id": visitor_id,
        }
        decision = decide_slots(origin, request)[0]
        if sim.engaged(context, slot, decision["variant"], outcomes):
            clicks.append({"type": "click", "token": decision["token"], "ts_ms": t_ms})
        if i % 40 == 39:  # every 20 simulated minutes, inside the reward window
            if clicks:
                response = client.post("/v1/events", json={"events": clicks})
                assert response.status_code == 202, response.text
                clicks = []
            settle(client)
    client.clock.advance(WINDOW_S * 1000 + 1)
    settle(client)
    learned = origin.learning.maybe_publish(force=True) or origin.holder.model
    assert origin.learning.examples == N_DECISIONS
    assert origin.learning.published > 10  # it learned on-policy, version after version
    before = true_value(start, n=2000, seed=123)
    after = true_value(learned, n=2000, seed=123)
    print(f"true value: starting model {before:.4f}, learned model {after:.4f}")
    assert after > before


def test_open_decisions_survive_a_clean_learner_restart(tmp_path):
    clock = ManualClock(START_MS)
    settings = Settings(db=str(tmp_path / "o.db"), token_secret=SECRET, clock=clock,
                        learner="manual", reward_window_s=WINDOW_S)  # fmt: skip
    with TestClient(create_app(settings)) as first:
        first.origin = first.app.state.origin
        waiting = decide(first)
        settle(first)
        assert len(first.origin.learning.joiner) == 1  # open, waiting for a reward
    with TestClient(create_app(settings)) as second:  # the first stopped cleanly: checkpointed
        second.origin = second.app.state.origin
        assert len(second.origin.learning.joiner) == 1
        click(second, waiting["token"])
        settle(second)
        assert second.origin.learning.examples == 1
        assert second.origin.learning.joiner.counts["rewards"] == 1
    with TestClient(create_app(settings)) as third:  # nothing is left open
        assert len(third.app.state.origin.learning.joiner) == 0


def learned_and_stopped(tmp_path) -> tuple[Settings, ManualClock, TestClient]:
    """An origin (SQLite) that learned from 20 decisions, a third of them clicked, then
    stopped cleanly (its checkpoint publishes what it learned)."""
    clock = ManualClock(START_MS)
    settings = Settings(db=str(tmp_path / "o.db"), token_secret=SECRET, clock=clock,
                        learner="manual", reward_window_s=WINDOW_S,
                        model_path=str(neutral_model(tmp_path / "m.json")))  # fmt: skip
    with TestClient(create_app(settings)) as first:
        first.origin = first.app.state.origin
        for i in range(20):
            shown = decide(first, {"url": "https://shop.example/running"}, visitor_id=f"v{i}")
            if i % 3 == 0:
                click(first, shown["token"])
        settle(first)
        assert first.origin.learning.examples >= 7
    return settings, clock, first


def test_a_clean_restart_keeps_the_learners_step_sizes_unless_another_version_came_in_between(
    tmp_path,
):
    settings, clock, first = learned_and_stopped(tmp_path)
    learned = first.origin.learning.learner.state()  # after the checkpoint's own publish
    with TestClient(create_app(settings)) as second:
        learner = second.app.state.origin.learning.learner
        assert learner.state() == learned  # accumulators too, not only the published weights
        assert any(m["zn"] for m in learner.state()["slots"]["hero"].values())
        published = second.app.state.origin.holder.current()
        # Another publisher (an admin's rollback, say) puts out a version the learner did not make.
        other = seal({**published, "model_version": published["model_version"] + "-admin"})
    with TestClient(create_app(settings)) as third:
        third.app.state.origin.holder.publish(other, clock.now_ms())
    with TestClient(create_app(settings)) as fourth:
        learner = fourth.app.state.origin.learning.learner
        assert fourth.app.state.origin.holder.current()["sha256"] == other["sha256"]
        assert not any(m["zn"] for m in learner.state()["slots"]["hero"].values())  # afresh


def test_after_a_crash_the_learner_goes_on_from_the_state_of_its_last_published_version(
    tmp_path,
):
    settings, clock, first = learned_and_stopped(tmp_path)
    learning = first.origin.learning
    learned = learning.learner.state()  # as published by the clean stop's own publish
    published = first.app.state.origin.holder.current()
    # A kill -9 writes no checkpoint: drop the one the clean shutdown above just wrote.
    assert SqliteStorage(settings.db, clock=clock).take_checkpoint(learning.consumer)
    with TestClient(create_app(settings)) as second:
        learner = second.app.state.origin.learning.learner
        assert second.app.state.origin.holder.current()["sha256"] == published["sha256"]
        assert learner.state() == learned  # step sizes and counts, not a warm start
        assert any(m["zn"] for m in learner.state()["slots"]["hero"].values())
        # What it publishes next is what the first learner would have: the bonus is not
        # mistaken for learned weights (a warm start from `published` would add it again).
        assert learner.to_model("x")["slots"] == published["slots"]
    # It crashes again before publishing anything: the saved state is still there to take up.
    assert SqliteStorage(settings.db, clock=clock).take_checkpoint(learning.consumer)
    with TestClient(create_app(settings)) as third:
        assert third.app.state.origin.learning.learner.state() == learned


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_open_decisions_survive_a_learner_that_died_uncheckpointed(backend, tmp_path, request):
    """After a crash (no checkpoint), the restarted learner replays the log it had processed:
    decisions still waiting get their rewards, and one learned from before is not learned again."""
    clock = ManualClock(START_MS)
    common = dict(token_secret=SECRET, clock=clock, learner="manual", reward_window_s=WINDOW_S)
    if backend == "sqlite":
        settings = Settings(db=str(tmp_path / "o.db"), **common)
        storage = lambda: SqliteStorage(settings.db, clock=clock)  # noqa: E731
    else:
        url = request.getfixturevalue("redis_server").url
        prefix = f"c{uuid.uuid4().hex[:8]}:"
        settings = Settings(redis_url=url, **common)
        storage = lambda: RedisStorage(url, clock=clock, prefix=prefix)  # noqa: E731
    with TestClient(create_app(settings, storage=storage())) as first:
        first.origin = first.app.state.origin
        waiting, clicked = decide(first), decide(first)
        click(first, clicked["token"])
        settle(first)
        assert first.origin.learning.examples == 1 and len(first.origin.learning.joiner) == 1
    # A kill -9 writes no checkpoint: drop the one the clean shutdown above just wrote.
    assert storage().take_checkpoint(first.origin.learning.consumer) is not None
    clock.advance(60_000)
    with TestClient(create_app(settings, storage=storage())) as second:
        second.origin = second.app.state.origin
        learning = second.origin.learning
        assert set(learning.joiner._open) == {waiting["decision_id"]}
        click(second, clicked["token"])  # a second click on the one learned from before the crash
        click(second, waiting["token"])
        settle(second)
        assert learning.examples == 1  # the waiting decision's reward, and nothing twice
        assert learning.joiner.counts["rewards"] == 1 and learning.joiner.counts["closed"] == 1
        assert learning.joiner.counts["unknown"] == 0
