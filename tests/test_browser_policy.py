"""The JS policy the snippet bundles (`edge/src/features.js` + `policy.js`), run by Chromium's V8
and Intl, reproduces every golden vector — the same files workerd runs at the edge."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT
from tests.support_browser import DESKTOP_UA

pytestmark = pytest.mark.browser

ENTRY = (
    "export { decide, loadModel } from './edge/src/policy.js';"
    "export { features } from './edge/src/features.js';"
)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6


def test_js_policy_in_chromium_reproduces_the_golden_vectors(
    chromium, site, golden_model, golden_cases
):
    bundle = subprocess.run(
        [str(ROOT / "node_modules/.bin/esbuild"), "--bundle", "--format=iife",
         "--global-name=fpPolicy", "--loader=js", "--sourcefile=entry.js"],
        input=ENTRY, cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    context = chromium.new_context(user_agent=DESKTOP_UA)
    try:
        page = context.new_page()
        page.goto(site.url + "/healthz")  # a secure context (127.0.0.1): Web Crypto is there
        page.add_script_tag(content=bundle)
        results = page.evaluate(
            """async ([model, cases]) => {
              await fpPolicy.loadModel(model);  // checks format and sha256 with Web Crypto
              return cases.map((c) => ({
                decision: fpPolicy.decide(model, c.context, c.slot, c.visitor_id, c.decision_id),
                features: fpPolicy.features(c.context, model.features),
              }));
            }""",
            [golden_model, golden_cases],
        )
    finally:
        context.close()
    mismatches = []
    for case, result in zip(golden_cases, results, strict=True):
        decision, active = result["decision"], result["features"]
        same = (
            [n for n, _ in active] == [n for n, _ in case["features"]]
            and all(close(a[1], b[1]) for a, b in zip(active, case["features"], strict=True))
            and all(close(decision["scores"][v], p) for v, p in case["scores"].items())
            and all(
                close(decision["probabilities"][v], p) for v, p in case["probabilities"].items()
            )
            and (decision["variant"], decision["holdout"], decision["explored"])
            == (case["variant"], case["holdout"], case["explored"])
            and close(decision["propensity"], case["propensity"])
            and [n for n, _ in decision["top_features"]] == [n for n, _ in case["top_features"]]
        )
        if not same:
            mismatches.append(case["id"])
    assert mismatches == []
