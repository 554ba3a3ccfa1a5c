"""The JS policy the snippet bundles (`edge/src/features.js` + `policy.js`), run by Chromium's V8
and Intl, reproduces every golden vector — the same files workerd runs at the edge."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT
from tests.support_browser import DESKTOP_UA, golden_mismatches

pytestmark = pytest.mark.browser

ENTRY = (
    "export { decide, loadModel } from './edge/src/policy.js';"
    "export { features } from './edge/src/features.js';"
)


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
    assert golden_mismatches(golden_cases, results) == []
