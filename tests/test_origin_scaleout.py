"""Scale-out on Redis: two serving workers (`--learner off`) and one `python -m origin learn`.

A browser decision sent twice, once to each worker (the snippet's token request and its pagehide
beacon), is logged once and gets one token. Clicks arrive at one worker; the learner (one
consumer group, so it sees every decision and reward) publishes a new model; the *other* worker
serves it.
"""

from __future__ import annotations

import time

import httpx
import pytest

from model_export.policy import decide
from tests.support_origin import redis_server, running_origin, start_learner, stop_process  # noqa: F401


@pytest.mark.redis
def test_two_workers_and_one_learner_share_redis(tmp_path, redis_server):  # noqa: F811
    redis = redis_server.client()
    redis.flushdb()
    env = {"FP_PUBLISH_INTERVAL_S": "1", "FP_RATE_LIMIT": "off"}
    with (
        running_origin(
            tmp_path / "a", redis_url=redis_server.url, env=env, args=["--learner", "off"]
        ) as a,
        running_origin(
            tmp_path / "b", redis_url=redis_server.url, env=env, args=["--learner", "off"]
        ) as b,
    ):
        model = httpx.get(b.url + "/v1/model").json()
        made = decide(model, {"url": "/camping"}, "hero", "v9", "client-twice").to_dict()
        record = {k: made[k] for k in ("decision_id", "slot", "variant", "propensity")}
        record.update(model_version=model["model_version"], visitor_id="v9", ts_ms=1,
                      context={"url": "/camping"})  # fmt: skip
        tokens = [
            httpx.post(w.url + "/v1/decisions/client", json={"decisions": [record]}).json()
            for w in (a, b)
        ]
        assert tokens[0]["tokens"] == tokens[1]["tokens"] and "client-twice" in tokens[0]["tokens"]
        logged = [
            fields["r"] for _, fields in redis.xrange("fp:log") if "client-twice" in fields["r"]
        ]
        assert len(logged) == 1, logged
        start = httpx.get(b.url + "/v1/model").headers["etag"]
        learner = start_learner(tmp_path, redis_url=redis_server.url, env=env)
        try:
            decisions = httpx.post(
                a.url + "/v1/decide",
                json={"slots": ["hero", "promo"], "context": {}, "visitor_id": "v1"},
            ).json()["decisions"]
            clicks = [{"type": "click", "token": d["token"]} for d in decisions]
            assert httpx.post(a.url + "/v1/events", json={"events": clicks}).status_code == 202
            deadline, etag = time.monotonic() + 30, start
            while time.monotonic() < deadline and etag == start:
                time.sleep(0.3)
                etag = httpx.get(b.url + "/v1/model").headers["etag"]
            assert etag != start, "worker b never served a model learned from worker a's clicks"
            while (
                time.monotonic() < deadline
                and httpx.get(a.url + "/v1/model").headers["etag"] != etag
            ):
                time.sleep(0.3)  # worker a follows the published model too
            assert httpx.get(a.url + "/v1/model").headers["etag"] == etag
            assert "learner" in {g["name"] for g in redis.xinfo_groups("fp:log")}
        finally:
            stop_process(learner)
