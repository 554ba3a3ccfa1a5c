"""Redis killed mid-stream and restarted: the learner resumes from its consumer group, no event
is lost and none is counted twice.

A real `redis-server` (AOF, `appendfsync always`) is killed with SIGKILL at the worst moment —
after the learner has read and learned a batch, before it acknowledges it — and restarted on
the same port and directory. While it is down the origin answers 503 and acknowledges nothing.
"""

from __future__ import annotations

import signal
import time

import pytest
from starlette.testclient import TestClient

from origin.app import create_app
from origin.clock import ManualClock
from origin.services import Settings
from origin.storage import StorageError
from origin.storage.redis import RedisStorage
from tests.support_origin import start_redis

SECRET = b"redis-fault-secret"
WINDOW_S = 60


def wait_until_usable(storage: RedisStorage, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            storage.ping()
            return
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_learner_resumes_after_redis_is_killed_between_read_and_ack(tmp_path):
    directory = tmp_path / "redis"
    server = start_redis(directory)
    clock = ManualClock()
    storage = RedisStorage(server.url, clock=clock, prefix="faults:", timeout_s=2)
    settings = Settings(
        redis_url=server.url,
        token_secret=SECRET,
        clock=clock,
        learner="manual",
        reward_window_s=WINDOW_S,
        publish_interval_s=10**6,
    )
    try:
        with TestClient(create_app(settings, storage=storage)) as client:
            learning = client.app.state.origin.learning

            def decide(i: int) -> dict:
                response = client.post(
                    "/v1/decide", json={"slots": ["hero"], "visitor_id": f"v{i}"}
                )
                assert response.status_code == 200, response.text
                return response.json()["decisions"][0]

            def click(decision: dict) -> int:
                body = {"events": [{"type": "click", "token": decision["token"]}]}
                return client.post("/v1/events", json=body).status_code

            before = [decide(i) for i in range(30)]
            assert all(click(d) == 202 for d in before[::3])  # also commits the queued decisions

            # The learner reads and learns the batch; Redis dies before the acknowledgement.
            acknowledge = storage.ack

            def crash_before_ack(consumer, entries):
                server.process.send_signal(signal.SIGKILL)
                server.process.wait(timeout=10)
                return acknowledge(consumer, entries)

            storage.ack = crash_before_ack
            with pytest.raises(StorageError):
                learning.step()
            storage.ack = acknowledge
            learned_before_crash = learning.examples
            assert learned_before_crash == 10  # the ten clicks closed their decisions at once

            # Down: nothing is acknowledged.
            assert click(before[1]) == 503

            server = start_redis(directory, port=server.port)  # same port, same AOF
            wait_until_usable(storage)
            pending = server.client().xpending("faults:log", "learner")["pending"]
            assert pending == 40  # the group's delivered-but-unacknowledged entries survived

            after = [decide(100 + i) for i in range(20)]
            assert all(click(d) == 202 for d in after[::2])
            assert click(before[0]) == 202  # a replay of a click the learner already counted

            while learning.step():  # catch up: redelivered entries first, then the new ones
                pass
            clock.advance(WINDOW_S * 1000 + 1)
            learning.step()  # unclicked decisions' windows close: reward-0 examples
            counts = learning.joiner.counts
            assert storage.lag(learning.consumer) == 0
            assert counts["duplicate"] == 30  # redelivered decisions, recognised, not re-opened
            assert counts["rewards"] == 10 + 10  # each clicked decision once
            assert counts["closed"] == 10 + 1  # redelivered clicks and the replay: not counted
            assert learning.examples == 30 + 20  # every decision learned from exactly once
            assert storage.log_count() == 30 + 10 + 20 + 10 + 1
    finally:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=10)
