"""Helpers for the browser tests and bench: build `browser/dist`, drive Debian's Chromium, read
what was painted and what reached the origin.

    build_dist()                                   # `node browser/build.mjs` (no-op when fresh)
    with sync_playwright() as pw:
        browser = launch(pw)
    page.add_init_script(PAINT_LOG); ...; painted(page)   # slot states vs rendering updates
    records(origin, "event")                       # what the origin committed

Fixtures (`pytest_plugins = ["tests.support_browser"]`): `dist`, `chromium`, `site` (the real
origin with the golden model, tests/support_origin.py), `edge` (the worker in front of it).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, GOLDEN, ROOT
from tests.support_edge import EdgeWorker, edge_worker
from tests.support_origin import TEST_SECRET, RunningOrigin, running_origin

DIST = ROOT / "browser" / "dist"
GOLDEN_MODEL = GOLDEN / "model.json"
STABLE_MODEL = {"FP_PUBLISH_INTERVAL_S": "3600"}  # the learner must not republish mid-test

DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
MOBILE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Mobile Safari/537.36"
)
REFERRERS = {
    "search": ("https://www.google.com/search?q=trail+running+shoes", ""),
    "social": ("https://www.facebook.com/", ""),
    "email": (None, "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale"),
    "direct": (None, ""),
}
# Zones with whole-hour offsets, one per UTC offset, to find local mornings and evenings.
ZONES = [
    "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
    "America/Chicago", "America/New_York", "America/Halifax", "America/Sao_Paulo",
    "Atlantic/South_Georgia", "Atlantic/Azores", "Europe/London", "Europe/Paris",
    "Europe/Athens", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Dhaka",
    "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane", "Pacific/Noumea",
    "Pacific/Auckland",
]  # fmt: skip


def build_dist() -> dict[str, Any]:
    """Run `node browser/build.mjs` (it only rebuilds what changed) and return its manifest."""
    built = subprocess.run(["node", "browser/build.mjs"], cwd=ROOT, capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"node browser/build.mjs failed:\n{built.stdout}{built.stderr}"[-4000:])
    return json.loads((DIST / "manifest.json").read_text())


# The demo pages' one script tag: the snippet's attributes go on it.
SCRIPT_TAG = re.compile(r'(<script src="/fp/firstpaint\.js\?v=[0-9a-f]+")></script>')


def with_script_attributes(page: str, attributes: str) -> str:
    """`page` with `attributes` (e.g. `data-fp-pyodide="off"`) on its firstpaint script tag."""
    tag = SCRIPT_TAG.search(page)
    assert tag, "no /fp/firstpaint.js script tag in the page"
    return page[: tag.end(1)] + " " + attributes + page[tag.end(1) :]


def launch(playwright: Any, **options: Any) -> Any:
    """Debian's Chromium through Playwright (`playwright install` cannot download here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, **options)


def zone_at(hour: float, now: datetime | None = None) -> str:
    """The zone in ZONES whose local time is now closest to `hour` o'clock."""
    now = now or datetime.now(ZoneInfo("UTC"))

    def distance(zone: str) -> float:
        local = now.astimezone(ZoneInfo(zone))
        gap = abs(local.hour + local.minute / 60 - hour)
        return min(gap, 24 - gap)

    return min(ZONES, key=distance)


# --- what was painted --------------------------------------------------------------------------

# Installed with `add_init_script`, before any page script: every state of each slot, with the
# time it was reached (the paint entries' clock) and how many rendering updates had run by then
# (a requestAnimationFrame counter): a state followed by another within the same frame count was
# never rendered.
PAINT_LOG = """
(() => {
  const log = (window.__fpSlotLog = []);
  let frames = 0;
  const tick = () => { frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const note = (el) => log.push({slot: el.getAttribute('data-fp-slot'), t: performance.now(),
    frame: frames, html: el.innerHTML, variant: el.getAttribute('data-fp-variant')});
  new MutationObserver((records) => {
    const touched = new Set();
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType === 1 && n.matches('[data-fp-slot]')) touched.add(n);
      }
      let el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      while (el && !(el.matches && el.matches('[data-fp-slot]'))) el = el.parentElement;
      if (el) touched.add(el);
    }
    for (const el of touched) note(el);
  }).observe(document, {childList: true, subtree: true, characterData: true, attributes: true});
})();
"""


@dataclass
class Painted:
    """A slot's logged states and the first contentful paint (ms, page clock)."""

    fcp: float
    states: list[dict[str, Any]]  # {t, frame, html, variant}

    def rendered(self) -> list[dict[str, Any]]:
        """States a rendering update could have shown: all but those replaced within one frame."""
        return [
            s
            for s, after in zip(self.states, self.states[1:] + [None], strict=True)
            if after is None or after["frame"] > s["frame"]
        ]

    def at_paint(self) -> dict[str, Any]:
        """The slot's state at the first contentful paint ({} if it was not in the document yet)."""
        before = [s for s in self.states if s["t"] <= self.fcp]
        return before[-1] if before else {}

    def first_rendered(self) -> dict[str, Any]:
        rendered = self.rendered()
        return rendered[0] if rendered else {}

    def changed_after_first_render(self) -> list[dict[str, Any]]:
        """Rendered states whose HTML differs from the first rendered one: visible flicker."""
        rendered = self.rendered()
        return [s for s in rendered if s["html"] != rendered[0]["html"]]


def painted(page: Any, slot: str = "hero") -> Painted:
    """Wait for the first contentful paint and return `slot`'s logged states."""
    page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    fcp = page.evaluate(
        "(() => { const e = performance.getEntriesByName('first-contentful-paint')[0];"
        " return e.paintTime || e.startTime; })()"
    )
    states = page.evaluate("(slot) => window.__fpSlotLog.filter((s) => s.slot === slot)", slot)
    return Painted(fcp=fcp, states=states)


def fcp_ms(page: Any) -> float:
    """The first contentful paint's start time (ms since navigation start)."""
    page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    return page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")


# --- the origin --------------------------------------------------------------------------------


def records(origin: RunningOrigin, kind: str) -> list[dict[str, Any]]:
    """The origin's committed log records of `kind` (`decision` or `event`), from its SQLite."""
    with contextlib.closing(sqlite3.connect(f"file:{origin.db}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT record FROM log WHERE kind = ? ORDER BY id", (kind,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def policy_variant(
    model: dict[str, Any], context: dict[str, Any], slot: str, visitor: str, decision_id: str
) -> str:
    """What `model_export.policy` chooses (bots get the default, as in every runtime)."""
    from model_export.features import is_bot
    from model_export.policy import decide

    if is_bot(context.get("user_agent", ""), model["features"]["rules"]):
        return model["slots"][slot]["default"]
    return decide(model, context, slot, visitor, decision_id).variant


def local_hour(zone: str, now_ms: float) -> float:
    local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(zone))
    return local.hour + local.minute / 60


def close(a: float, b: float) -> bool:
    """Within the contract's parity tolerance."""
    return abs(a - b) <= 1e-6


def golden_mismatches(cases: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    """Ids of golden cases a runtime's `{decision, features}` results do not reproduce."""
    mismatches = []
    for case, result in zip(cases, results, strict=True):
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
            and all(
                close(a[1], b[1])
                for a, b in zip(decision["top_features"], case["top_features"], strict=True)
            )
        )
        if not same:
            mismatches.append(case["id"])
    return mismatches


# --- fixtures (import them into a test module to use them) -------------------------------------


@pytest.fixture(scope="session")
def dist() -> dict[str, Any]:
    """`browser/dist`, built by the tests themselves so a clean clone works."""
    return build_dist()


# Module scope: Playwright's sync API keeps an asyncio loop running in the main thread while it is
# open, which breaks any later test module that calls asyncio.run() or starts its own Playwright.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def site(dist: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOrigin]:
    """The real origin with the golden model (no republishing), serving the demo and the snippet."""
    with running_origin(
        tmp_path_factory.mktemp("site"), model=GOLDEN_MODEL, env=STABLE_MODEL
    ) as origin:
        yield origin


@pytest.fixture(scope="session")
def edge(site: RunningOrigin) -> Iterator[EdgeWorker]:
    """The edge worker in front of the origin, once it decides with the origin's model."""
    with edge_worker(
        site.url, token_secret=TEST_SECRET, vars={"FP_MODEL_REFRESH_S": "0"}
    ) as worker:
        sha = httpx.get(site.url + "/v1/model").headers["etag"].strip('"')
        for _ in range(300):
            httpx.get(worker.url + "/", headers={"user-agent": DESKTOP_UA}, timeout=30)
            if worker.status()["sha256"] == sha:
                break
            time.sleep(0.1)
        assert worker.status()["sha256"] == sha
        yield worker
