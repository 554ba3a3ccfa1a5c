"""Edge worker benchmark → `build/bench/edge.json`.

- `decision_p50_us`, `decision_p99_us`: `decide()` on the 8-variant hero slot, each call timed
  alone (`edge/bench/decide.mjs`, node's V8 — workerd's clocks do not move during compute).
  `fixed_work_p50_us`/`fixed_work_p99_us`: a fixed arithmetic workload of the decisions' median
  size timed the same way — the tail this machine adds to any work of that size.
  `decision_worker_p50_us`/`_p99_us`: what the worker itself runs per slot, `features()` then
  `choose()` (the choice without `decide()`'s scores, probabilities and top features, which it
  never sends). A second figure only: `decision_p99_us` (the whole `decide()`) stays the headline.
- `added_p50_ms`, `added_p99_ms`, `throughput_ratio`: the rewriting worker against a
  pass-through worker in front of the same 127.0.0.1 origin, both in workerd, in one run
  (`edge/bench/http.mjs`): sequential interleaved requests, then paired concurrent rounds.
  The origin there is a trivial Node server, so the ratio is the workers' own cost; it shares
  the 2 cores with the load generator and all three workerd processes.
- `throughput_ratio_demo_origin` (and `*_demo_origin`): the same comparison in front of the
  real firstpaint origin serving the demo site (`python -m origin serve`, SQLite), which also
  receives the worker's decision log — what a site owner sees when the origin does real work.
  A second figure only: `throughput_ratio` stays the headline.
- `noop_rewriter_throughput_ratio`: the no-op HTMLRewriter worker (`edge/bench/noop_rewriter.js`,
  a handler on `[data-fp-slot]` that does nothing) over the pass-through one, same rounds: the
  most any worker that rewrites with HTMLRewriter can reach on this machine.
- `bundle_gzip_kb`: the minified esbuild bundle of the worker without the model, gzipped.
Targets: decision p99 ≤ 20 µs, added p50 ≤ 1 ms, throughput ratio ≥ 0.9, bundle ≤ 50 KB.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support_origin import TEST_SECRET, running_origin

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {
    "decision_p99_us": 20.0,
    "added_p50_ms": 1.0,
    "throughput_ratio": 0.9,
    "bundle_gzip_kb": 50.0,
}


def _node_json(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 600
) -> dict[str, Any]:
    done = subprocess.run(
        ["node", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"node {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bundle_size() -> dict[str, float]:
    """Gzipped size of the worker bundle without model.json (minified and as written)."""
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in (("bundle_gzip_kb", ["--minify"]), ("bundle_unminified_gzip_kb", [])):
            out = Path(tmp) / f"{name}.js"
            subprocess.run(
                ["node", "edge/build.mjs", str(out), "--no-model", *flags],
                cwd=ROOT, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            sizes[name] = round(len(gzip.compress(out.read_bytes(), 9)) / 1024, 2)
    model = (ROOT / "edge" / "src" / "model.json").read_bytes()
    sizes["model_gzip_kb"] = round(len(gzip.compress(model, 9)) / 1024, 2)
    return sizes


def demo_origin_throughput() -> dict[str, Any]:
    """The workers compared in front of the real origin serving the demo site."""
    keys = (
        "throughput_ratio",
        "throughput_ratio_vs_noop_rewriter",
        "noop_rewriter_throughput_ratio",
        "added_p50_ms",
        "rewrite_rps",
        "passthrough_rps",
        "noop_rewriter_rps",
        "workerd_cpu_ms_per_request_rewrite",
        "workerd_cpu_ms_per_request_passthrough",
        "rewritten_pages",
        "page_bytes",
    )
    with tempfile.TemporaryDirectory() as tmp:
        # The worker's starter model, so the origin accepts the decisions it logs; no republishing.
        env = {"FP_PUBLISH_INTERVAL_S": "3600"}
        with running_origin(
            Path(tmp), model=ROOT / "edge" / "src" / "model.json", env=env
        ) as origin:
            demo = _node_json(
                "edge/bench/http.mjs", "100", "2400", "8", origin.url,
                env={"FP_TOKEN_SECRET": TEST_SECRET},
            )  # fmt: skip
    return {f"{key}_demo_origin": demo[key] for key in keys}


def run() -> dict[str, Any]:
    results: dict[str, Any] = {"load_average_1m_before": round(os.getloadavg()[0], 2)}
    results.update(_node_json("edge/bench/decide.mjs", "50000"))
    results.update(_node_json("edge/bench/http.mjs", "400", "2400", "8"))
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    results.update(demo_origin_throughput())
    results.update(bundle_size())
    results["cpus"] = os.cpu_count()
    results["targets"] = TARGETS
    results["met"] = {
        "decision_p99_us": results["decision_p99_us"] <= TARGETS["decision_p99_us"],
        "added_p50_ms": results["added_p50_ms"] <= TARGETS["added_p50_ms"],
        "throughput_ratio": results["throughput_ratio"] >= TARGETS["throughput_ratio"],
        "bundle_gzip_kb": results["bundle_gzip_kb"] <= TARGETS["bundle_gzip_kb"],
    }
    return results


def summary(results: dict[str, Any]) -> str:
    return (
        f"decision p50 {results['decision_p50_us']} µs / p99 {results['decision_p99_us']} µs "
        f"(fixed work of that median: p99 {results.get('fixed_work_p99_us')} µs; the worker's "
        f"features + choose: p50 {results.get('decision_worker_p50_us')} µs / "
        f"p99 {results.get('decision_worker_p99_us')} µs); "
        f"added p50 {results['added_p50_ms']} ms / p99 {results['added_p99_ms']} ms; "
        f"throughput ratio {results['throughput_ratio']} "
        f"({results.get('throughput_ratio_vs_noop_rewriter')} vs a no-op HTMLRewriter, which "
        f"itself reaches {results.get('noop_rewriter_throughput_ratio')}; "
        f"{results.get('throughput_ratio_demo_origin')} in front of the demo origin); "
        f"bundle {results['bundle_gzip_kb']} KB gz (load avg {results.get('load_average_1m')})"
    )
