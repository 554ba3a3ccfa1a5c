"""The JS policy as the snippet ships it (`edge/src/features.js` + `policy.js`, bundled by
`browser/build.mjs` with the snippet's own options: its time-zone stand-in and without the
edge-only branches), run by Chromium's V8, reproduces every golden vector — the same files
workerd runs at the edge.

The snippet decides only in the browser's own zone (its stand-in knows no other), so each case
runs in a page whose clock is set to the case's zone; a case whose zone is no zone at all runs
in UTC, where the stand-in must find its local time unknown, as the contract does.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from typing import Any

import pytest

from model_export.features import _zone
from tests.conftest import ROOT
from tests.support_browser import DESKTOP_UA, golden_mismatches

pytestmark = pytest.mark.browser


def browser_zone(context: Any) -> str:
    """The zone to run a case's page in: its own when the contract knows it, else UTC."""
    zone = context.get("timezone") if isinstance(context, dict) else None
    return zone if isinstance(zone, str) and _zone(zone) is not None else "UTC"


def with_zone(case: dict[str, Any], zone: str, own: str) -> dict[str, Any]:
    """`case` with its context's `zone` spelled `own`, the browser's name for it."""
    context = case["context"]
    if own == zone or not isinstance(context, dict) or context.get("timezone") != zone:
        return case
    return {**case, "context": {**context, "timezone": own}}


def test_snippet_policy_in_chromium_reproduces_the_golden_vectors(
    chromium, site, golden_model, golden_cases
):
    bundle = subprocess.run(
        ["node", "browser/build.mjs", "--policy-bundle"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "fpPolicy" in bundle and "%f4%8" not in bundle  # without the edge's decodeChecked
    by_zone: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(golden_cases):
        by_zone[browser_zone(case["context"])].append(i)
    results: list[dict[str, Any]] = [{}] * len(golden_cases)
    for zone, indices in sorted(by_zone.items()):
        context = chromium.new_context(user_agent=DESKTOP_UA, timezone_id=zone)
        try:
            page = context.new_page()
            page.goto(site.url + "/healthz")  # a secure context (127.0.0.1): Web Crypto is there
            page.add_script_tag(content=bundle)
            # Chromium names some zones by another IANA name (America/Buenos_Aires for
            # America/Argentina/Buenos_Aires): a visitor there sends that name, which the
            # contract knows too. Such a case runs as that visitor's page states it.
            own = page.evaluate("fpPolicy.runtimeZone()")
            assert own == zone or _zone(own) is not None, own
            cases = [with_zone(golden_cases[i], zone, own) for i in indices]
            answers = page.evaluate(
                """async ([model, cases]) => {
                  await fpPolicy.loadModel(model);  // checks format and sha256 with Web Crypto
                  return cases.map((c) => {
                    const active = fpPolicy.features(c.context, model.features);
                    const ids = [c.visitor_id, c.decision_id];
                    return {
                      decision: fpPolicy.decide(model, c.context, c.slot, ...ids),
                      choice: fpPolicy.choose(model, active, c.slot, ...ids),
                      features: active,
                    };
                  });
                }""",
                [golden_model, cases],
            )
        finally:
            context.close()
        for i, answer in zip(indices, answers, strict=True):
            results[i] = answer
    assert golden_mismatches(golden_cases, results) == []
    # choose(), what the snippet calls, makes decide()'s choice in every case.
    keys = ("slot", "variant", "propensity", "holdout", "forced", "model_version", "decision_id")
    for case, result in zip(golden_cases, results, strict=True):
        assert result["choice"] == {k: result["decision"][k] for k in keys}, case["id"]
