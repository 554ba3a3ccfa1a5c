"""Closed-loop learning benchmark: does learning from each event beat a nightly batch?

The simulator drives the *running* origin over real HTTP (`POST /v1/decide`, then impression
and click events in batches on `POST /v1/events`) for days of simulated traffic with a drift
(social visitors switch from `sale` to `hiking`) and, at the same moment, a campaign launch
that brings first-time visitors for a category the starting model has never seen (camping).
The same visitors, in the same order, with the same uniform draw deciding each outcome
(common random numbers), are shown to the alternatives in `model_export.baselines`.

Curves and ratios use the ground-truth *expected* engagement of each shown variant (the
simulator's p), not the sampled clicks: same expectation, far less noise. Sampled clicks are
reported too, and they are what every learner learns from.

Simulated time: the origin runs its real app (`origin.app.create_app`: storage, learner
thread, promotion gate) with a `ManualClock`, which this harness moves forward from the
`x-fp-sim-now-ms` header of each request (see `serve`). So reward windows, token ages and
publish intervals all run in simulated time, and nothing waits in real time.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_export import baselines, simulate
from model_export.export import model_from_fit
from model_export.features import features
from model_export.train import DecisionLog, fit
from tests.conftest import ROOT, free_port

OUT = ROOT / "build" / "bench"
SEED = 7
REQUESTS = 25_000  # two slots each: 50,000 decisions
DAYS = 8
DRIFT_DAY = 4
WARMUP_DECISIONS = 6_000
SLOTS = ("hero", "promo")
EVENT_BATCH_REQUESTS = 10  # events go out in batches, at most 5 simulated minutes late
EVENT_MAX_DELAY_MS = 5 * 60_000
SIM_HEADER = "x-fp-sim-now-ms"
HOUR_MS = 3_600_000
START_MS = simulate.START_MS
SECRET = "bench-learning-secret"


# --- the origin, in simulated time -------------------------------------------------------------


class SimulatedTime:
    """ASGI middleware: the origin in simulated time, with its learner stepping in lockstep.

    Each request moves the app's ManualClock up to its `SIM_HEADER` time. After each batch
    of events the learner takes one `LearningLoop.step()` (read the log, join rewards, learn,
    publish if due) before the batch's response completes, so the next request comes after it
    and how much it has learned at a given simulated moment does not depend on how fast this
    machine runs the stream. (The learner thread of `python -m origin serve` polls every second
    of wall time instead: with days of traffic compressed into minutes, that would tie learning
    to CPU speed.) Stepping after the response had gone let the next batch start a second step
    while the first still ran: one run died of `deque mutated during iteration`.
    """

    def __init__(self, app: Any, clock: Any, step: Any) -> None:
        self.app = app
        self.clock = clock
        self.step = step

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == SIM_HEADER.encode():
                ahead = int(value) - self.clock.now_ms()
                if ahead > 0:
                    self.clock.advance(ahead)
        if scope["path"] != "/v1/events":
            await self.app(scope, receive, send)
            return
        import anyio

        async def step_before_the_end(message: dict) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await anyio.to_thread.run_sync(self.step)
            await send(message)

        await self.app(scope, receive, step_before_the_end)


def serve(port: int, db: str, model: str, start_ms: int) -> None:
    """Run the real origin app in simulated time (the benchmark's subprocess entry point)."""
    import uvicorn

    from origin.app import create_app
    from origin.clock import ManualClock
    from origin.services import Settings

    clock = ManualClock(start_ms)
    settings = Settings.from_env(db=db, model_path=model, learner="manual", clock=clock)
    app = create_app(settings)
    step = app.state.origin.learning.step
    uvicorn.run(SimulatedTime(app, clock, step), host="127.0.0.1", port=port, log_level="warning")


def start_origin(workdir: Path, model: Path, start_ms: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "FP_TOKEN_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
        # A load generator on one IP: the per-IP limit would throttle the run.
        "FP_RATE_LIMIT": "off",
        # The promotion gate re-evaluates the whole recent log (20k decisions, DR with a
        # fitted reward model) before every publish; compressed into minutes of wall time
        # that CPU starves the learner, so the closed loop runs without it (see the report).
        "FP_PROMOTION_MAX_DROP": "off",
    }
    log = open(workdir / "origin.log", "wb")  # noqa: SIM115 (the child writes to it)
    code = (
        "import sys; from tests.bench.bench_learning import serve; "
        "serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))"
    )
    args = [str(port), str(workdir / "origin.db"), str(model), str(start_ms)]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"origin exited: {(workdir / 'origin.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError("origin did not become ready in 60 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the starting model and the nightly trainer ------------------------------------------------


def train(
    records: Sequence[dict[str, Any]], spec: dict, slots: dict, now_ms: int
) -> dict[str, Any]:
    """firstpaint's batch training (`model_export.train.fit`) and export, quietly."""
    with open(os.devnull, "w") as quiet:
        stderr, sys.stderr = sys.stderr, quiet
        try:
            fitted = fit(DecisionLog(records=list(records)), spec, slots, seed=SEED)
        finally:
            sys.stderr = stderr
    return model_from_fit(fitted, datetime.fromtimestamp(now_ms / 1000, UTC))


def starting_point(sim: simulate.Simulator) -> tuple[dict, list[dict]]:
    """A model trained on a day of uniform-random traffic before the stream (no launch yet)."""
    before = simulate.Simulator(SEED + 100, launch_at_ms=None, site=sim.site)
    warmup_start = START_MS - simulate.GAP_MS * WARMUP_DECISIONS
    log = list(simulate.decisions(WARMUP_DECISIONS, simulator=before, start_ms=warmup_start))
    slots = {name: slot.config() for name, slot in sim.site.slots.items()}
    return train(log, sim.spec, slots, START_MS), log


# --- the run -----------------------------------------------------------------------------------


class Track:
    """Per-decision expected and sampled engagement of one policy."""

    def __init__(self, n: int) -> None:
        self.expected = np.zeros(n)
        self.sampled = np.zeros(n)
        self.k = 0

    def add(self, p: float, engaged: float) -> None:
        self.expected[self.k] = p
        self.sampled[self.k] = engaged
        self.k += 1


def run(requests: int = REQUESTS, days: int = DAYS) -> dict[str, Any]:
    import httpx

    gap_ms = days * 24 * HOUR_MS // requests
    batch_every = max(1, min(EVENT_BATCH_REQUESTS, EVENT_MAX_DELAY_MS // gap_ms))
    drift_ms = START_MS + DRIFT_DAY * 24 * HOUR_MS
    sim = simulate.Simulator(SEED, drift_at_ms=drift_ms, launch_at_ms=drift_ms)
    variants = {slot: list(sim.site.slots[slot].variants) for slot in SLOTS}
    print("[learning] training the starting model on a day of uniform-random traffic", flush=True)
    model, warmup = starting_point(sim)
    slots_config = {name: slot.config() for name, slot in sim.site.slots.items()}
    workdir = ROOT / "build" / "bench" / "learning"
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("origin.db*"):
        stale.unlink()
    model_path = workdir / "start-model.json"
    model_path.write_text(json.dumps(model))

    p_now: dict[str, dict[str, float]] = {}
    clock_ms = [START_MS]  # the nightly trainer stamps its models with the simulated time
    arms: dict[str, baselines.Arm] = {
        "nightly": baselines.NightlyBatch(
            model, lambda log, _m: train(log, sim.spec, slots_config, clock_ms[0]), warmup
        ),
        "random": baselines.UniformRandom(variants),
        # VW explores uniformly as much as site.toml's exploration does (ε, or K·floor).
        "vw": baselines.VowpalWabbit(
            variants,
            sim.spec,
            epsilon={slot: baselines.uniform_share(slots_config[slot]) for slot in SLOTS},
            seed=SEED,
        ),
        "oracle": baselines.Oracle(variants, lambda c, s, v: p_now[s][v]),
    }
    n = requests * len(SLOTS)
    tracks = {name: Track(n) for name in ("online", *arms, "single", "explore_cap")}
    truth_rows: list[tuple[str, dict[str, float]]] = []
    times = np.zeros(n, dtype=np.int64)
    segment = np.zeros(n, dtype=bool)
    outcomes = random.Random(SEED + 1)
    events: list[dict[str, Any]] = []
    versions: set[str] = set()
    process, url = start_origin(workdir, model_path, START_MS)
    started = time.monotonic()
    # One HTTP worker thread: the origin answers visitor i+1 while this thread scores visitor
    # i for the other policies. Requests stay in order, so the origin's clock only moves on.
    http = httpx.Client(base_url=url, timeout=120)
    wire = ThreadPoolExecutor(max_workers=1)

    def decide(t_ms: int, visitor_id: str, context: dict) -> list[dict[str, Any]]:
        body = {"slots": list(SLOTS), "context": context, "visitor_id": visitor_id}
        answer = http.post("/v1/decide", json=body, headers={SIM_HEADER: str(t_ms)})
        answer.raise_for_status()
        return answer.json()["decisions"]

    def send(batch: list[dict[str, Any]], t_ms: int) -> None:
        sent = http.post("/v1/events", json={"events": batch}, headers={SIM_HEADER: str(t_ms)})
        if sent.status_code != 202:
            raise RuntimeError(f"events refused: {sent.status_code} {sent.text}")

    sending: Future | None = None
    try:
        upcoming = (START_MS, *sim.visitor(START_MS))
        pending = wire.submit(decide, *upcoming)
        for i in range(requests):
            t_ms, visitor_id, context = upcoming
            clock_ms[0] = t_ms
            shown = {d["slot"]: d for d in pending.result()}
            if i + 1 < requests:
                t_next = START_MS + (i + 1) * gap_ms
                upcoming = (t_next, *sim.visitor(t_next))
                pending = wire.submit(decide, *upcoming)
            active = features(context, sim.spec)
            names = {name for name, _ in active}
            affected = bool({simulate.DRIFT_SEGMENT, "utm_campaign=camping_launch"} & names)
            for j, slot in enumerate(SLOTS):
                k = i * len(SLOTS) + j
                times[k], segment[k] = t_ms, affected
                p_now[slot] = true_probabilities(sim, active, t_ms, slot, variants[slot])
                if i % 1000 == 0:  # the shortcut must agree with the simulator itself
                    check_truth(sim, context, slot, p_now[slot])
                truth_rows.append((slot, p_now[slot]))
                tracks["explore_cap"].add(
                    baselines.exploration_ceiling(slots_config[slot], p_now[slot]), 0
                )
                u = outcomes.random()
                decision = shown[slot]
                versions.add(decision["model_version"])
                p = p_now[slot][decision["variant"]]
                tracks["online"].add(p, u < p)
                events.append(_event("impression", decision, t_ms + 1000))
                if u < p:
                    events.append(_event("click", decision, t_ms + 8000))
                decision_id = f"b{i}-{slot}"
                for name, arm in arms.items():
                    variant, propensity = arm.decide(t_ms, visitor_id, context, slot, decision_id)
                    q = p_now[slot][variant]
                    tracks[name].add(q, u < q)
                    arm.observe({
                        "decision_id": decision_id, "slot": slot, "variant": variant,
                        "propensity": propensity, "context": context,
                        "visitor_id": visitor_id, "ts_ms": t_ms, "engaged": int(u < q),
                    })  # fmt: skip
            if (i + 1) % batch_every == 0 or i + 1 == requests:
                if sending is not None:
                    sending.result()
                sending = wire.submit(send, events, t_ms)
                events = []
            if (i + 1) % 2500 == 0:
                so_far = {name: tracks[name].expected[: k + 1].mean() for name in tracks}
                print(
                    f"[learning] {i + 1}/{requests} requests, simulated day "
                    f"{(t_ms - START_MS) / 86_400_000:.1f}, {time.monotonic() - started:.0f} s: "
                    + ", ".join(f"{n} {so_far[n]:.4f}" for n in ("online", "nightly", "vw")),
                    flush=True,
                )
        if sending is not None:
            sending.result()
        metrics = http.get("/metrics").text
    finally:
        wire.shutdown(cancel_futures=True)
        http.close()
        stop(process)
        arms["vw"].close()  # type: ignore[attr-defined]
    single = baselines.best_single_variants(truth_rows)
    for slot, row in truth_rows:
        tracks["single"].add(row[single[slot]], 0)
    # Neither is replayed: the single variant is known only afterwards, the cap is analytic.
    tracks["single"].sampled[:] = tracks["explore_cap"].sampled[:] = np.nan
    return summarize(
        tracks, times, segment, drift_ms, single, len(versions), arms, metrics,
        http_s=time.monotonic() - started, gap_ms=gap_ms,
    )  # fmt: skip


def true_probabilities(
    sim: simulate.Simulator, active: list, t_ms: int, slot: str, variants: list[str]
) -> dict[str, float]:
    """`sim.engagement_probability` for every variant from one feature pass.

    The simulator recomputes the features for each variant; a page has twelve variants, so
    the run would spend most of its time there. `check_truth` holds this to the simulator.
    """
    drifted = sim.drift_at_ms is not None and t_ms >= sim.drift_at_ms
    result = {}
    for variant in variants:
        weights = simulate.TRUTH.get(slot, {}).get(variant, {})
        z = simulate.BASE_LOGIT
        for name, value in active:
            w = weights.get(name, 0.0)
            if drifted and name == simulate.DRIFT_SEGMENT:
                w = simulate.DRIFT.get((slot, variant), w)
            z += w * value
        result[variant] = 1.0 / (1.0 + math.exp(-z))
    return result


def check_truth(sim: simulate.Simulator, context: dict, slot: str, p: dict[str, float]) -> None:
    for variant, value in p.items():
        exact = sim.engagement_probability(context, slot, variant)
        if not math.isclose(value, exact, rel_tol=1e-12):
            raise AssertionError(f"ground truth shortcut drifted: {slot}/{variant} {value} {exact}")


def _event(kind: str, decision: dict, ts_ms: int) -> dict[str, Any]:
    # No session id: the simulator's context already says what the session holds.
    return {"type": kind, "token": decision["token"], "ts_ms": ts_ms}


# --- results ----------------------------------------------------------------------------------

LABELS = {
    "online": "(a) firstpaint online (running origin)",
    "nightly": "(b) nightly batch retraining",
    "random": "(c) uniform random",
    "single": "(d) best single variant (hindsight)",
    "vw": "(e) Vowpal Wabbit --cb_explore_adf",
    "oracle": "(f) oracle",
    "explore_cap": "ceiling: true scores with site.toml exploration + holdout",
}


def summarize(tracks, times, segment, drift_ms, single, n_versions, arms, metrics, **extra):
    n = len(times)
    half = slice(n // 2, n)
    after = (times >= drift_ms) & (times < drift_ms + 24 * HOUR_MS)
    oracle = tracks["oracle"].expected
    policies = {}
    for name, track in tracks.items():
        e = track.expected
        policies[name] = {
            "label": LABELS[name],
            "mean_engagement": round(float(e.mean()), 5),
            "cumulative_engagement": round(float(e.sum()), 1),
            "sampled_clicks": None if np.isnan(track.sampled).all() else int(track.sampled.sum()),
            "regret": round(float((oracle - e).sum()), 1),
            "last_half_engagement": round(float(e[half].mean()), 5),
            "after_drift_24h_engagement": round(float(e[after].mean()), 5),
            "after_drift_24h_affected_engagement": round(float(e[after & segment].mean()), 5),
        }
    on = policies["online"]

    def ratio(key: str, other: str) -> float:
        return round(on[key] / policies[other][key], 3)

    results = {
        "decisions": n,
        "simulated_days": round((times[-1] - times[0]) / 86_400_000, 2),
        "drift_at_ms": drift_ms,
        "after_drift_24h_decisions": int(after.sum()),
        "after_drift_24h_affected_decisions": int((after & segment).sum()),
        "online_vs_oracle": ratio("last_half_engagement", "oracle"),
        "online_vs_nightly_after_drift": ratio("after_drift_24h_affected_engagement", "nightly"),
        "online_vs_nightly_after_drift_all_traffic": ratio("after_drift_24h_engagement", "nightly"),
        "online_vs_random": ratio("mean_engagement", "random"),
        "online_vs_vw": ratio("mean_engagement", "vw"),
        "online_vs_exploration_ceiling": ratio("last_half_engagement", "explore_cap"),
        "online_model_versions_served": n_versions,
        "nightly_retrains": arms["nightly"].retrained_,
        "best_single_variants": single,
        "policies": policies,
        "metric": "ground-truth expected engagement of the shown variant (simulator p)",
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in extra.items()},
    }
    results["learner_metrics"] = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("fp_learner_", "fp_decisions_total", "fp_events_accepted_total"))
    }
    plot(tracks, times, drift_ms, OUT / "learning.png")
    return results


def plot(tracks: dict[str, Track], times: np.ndarray, drift_ms: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = (times - times[0]) / 86_400_000
    fig, (total, gap, rolling) = plt.subplots(1, 3, figsize=(18, 5.2))
    window = max(1, int(np.searchsorted(times, times[0] + 12 * HOUR_MS)))  # 12 simulated hours
    for name, track in tracks.items():
        style: dict[str, Any] = {"lw": 2.2 if name == "online" else 1.2}
        if name == "explore_cap":
            style.update(color="grey", ls=":")
        cumulative = np.cumsum(track.expected)
        total.plot(days, cumulative, label=LABELS[name], **style)
        gap.plot(days, np.cumsum(tracks["oracle"].expected) - cumulative, **style)
        smooth = np.convolve(track.expected, np.ones(window) / window, mode="valid")
        rolling.plot(days[window - 1 :], smooth, **style)
    for axis in (total, gap, rolling):
        axis.axvline((drift_ms - times[0]) / 86_400_000, color="grey", ls="--", lw=1)
        axis.set_xlabel("simulated days (dashed: drift + camping launch)")
        axis.grid(alpha=0.3)
    total.set_ylabel("cumulative expected engagements")
    total.set_title("Cumulative engagement (ground-truth expected p)")
    gap.set_ylabel("cumulative regret vs oracle")
    gap.set_title("Regret")
    rolling.set_ylabel("expected engagement per decision")
    rolling.set_title("Engagement, 12 simulated hours rolling mean")
    total.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(results: dict[str, Any]) -> str:
    return (
        f"{results['decisions']} decisions over {results['simulated_days']} simulated days: "
        f"online/oracle (last half) {results['online_vs_oracle']} (≥0.90), "
        f"online/nightly 24h after drift {results['online_vs_nightly_after_drift']} (≥1.2; "
        f"all traffic {results['online_vs_nightly_after_drift_all_traffic']}), "
        f"online/random {results['online_vs_random']} (≥1.5), "
        f"online/VW {results['online_vs_vw']} (≥0.95)"
    )


if __name__ == "__main__":
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else REQUESTS
    results = run(requests, int(sys.argv[2]) if len(sys.argv) > 2 else DAYS)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "learning.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(summary(results))
