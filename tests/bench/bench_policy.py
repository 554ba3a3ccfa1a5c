"""The Python policy's decision latency (8 variants) and training time on 100k decisions.

Baseline measured in the same run: feature extraction alone, the floor under every decision.
The simulated 100k log is cached under build/bench/, keyed by the simulator's and site's text.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from model_export import simulate
from model_export.export import model_from_fit, write_artifacts
from model_export.features import default_spec, features
from model_export.policy import decide, load_model
from model_export.site import SITE_TOML, load_site
from model_export.train import fit, read_log

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "golden" / "model.json"
DECISIONS = 5_000
TRAIN_N = 100_000


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latencies_us(call, inputs: list[Any]) -> list[float]:
    out = []
    for item in inputs:
        started = time.perf_counter_ns()
        call(item)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def _simulated_log() -> Path:
    source = Path(simulate.__file__).read_bytes() + SITE_TOML.read_bytes()
    path = ROOT / "build" / "bench" / f"simulated-{hashlib.sha256(source).hexdigest()[:8]}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        simulate.simulate_log(TRAIN_N, partial, seed=0)
        partial.rename(path)
    return path


def _train_seconds(log_path: Path) -> tuple[float, float]:
    """Wall and CPU time of `train --log`: read and check the log, fit, write both files."""
    site = load_site()
    slots = {name: slot.config() for name, slot in site.slots.items()}
    started, cpu = time.monotonic(), time.process_time()
    log = read_log(log_path, slots)
    model = model_from_fit(fit(log, default_spec(site.vocab()), slots))
    with tempfile.TemporaryDirectory() as out:
        write_artifacts(model, out)
    return time.monotonic() - started, time.process_time() - cpu


def run() -> dict:
    model = load_model(MODEL.read_text())
    sim = simulate.Simulator(seed=42)
    visitors = [sim.visitor(simulate.START_MS + i * 1000) for i in range(DECISIONS)]
    for visitor_id, context in visitors[:200]:  # warm caches (regexes, zones)
        decide(model, context, "hero", visitor_id)
    started = time.perf_counter()
    latencies = _latencies_us(lambda v: decide(model, v[1], "hero", v[0], "d"), visitors)
    elapsed = time.perf_counter() - started
    baseline = _latencies_us(lambda v: features(v[1], model["features"]), visitors)
    train_s, train_cpu_s = _train_seconds(_simulated_log())
    return {
        "variants": len(model["slots"]["hero"]["variants"]),
        "decisions": DECISIONS,
        "decisions_per_s": round(DECISIONS / elapsed),
        "p50_us": round(statistics.median(latencies), 1),
        "p99_us": round(_percentile(latencies, 0.99), 1),
        "features_p50_us": round(statistics.median(baseline), 1),
        "train_decisions": TRAIN_N,
        "train_100k_s": round(train_s, 1),
        "train_100k_cpu_s": round(train_cpu_s, 1),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine inflates wall time
    }


def summary(results: dict) -> str:
    return (
        f"Python policy, {results['variants']} variants: {results['decisions_per_s']} decisions/s, "
        f"p50 {results['p50_us']} µs, p99 {results['p99_us']} µs "
        f"(features alone p50 {results['features_p50_us']} µs); "
        f"train on {results['train_decisions'] // 1000}k decisions {results['train_100k_s']} s "
        f"({results['train_100k_cpu_s']} s CPU, load {results['load_average_1m']:.1f}; budget 60 s)"
    )
