"""Helpers for the browser tests and bench: build `browser/dist`, drive Debian's Chromium, run the
real origin for the snippet, and read what was painted.

    build_dist()                                  # `node browser/build.mjs` (no-op when fresh)
    with sync_playwright() as pw:
        browser = launch(pw)
    with running_site(tmp_path, model=GOLDEN_MODEL) as site: ...   # the real origin, see below
    page.add_init_script(PAINT_LOG); ...; painted(page)            # slot log vs paint entries

`running_site` starts the real origin (`origin.app.create_app`, uvicorn) in a subprocess and adds
what the snippet needs from it and the origin does not serve yet — `GET /fp/model.js`, the model
tag in its pages, `POST /v1/decisions/client` (browser/INTEGRATION.md has the contract). Each is
added only when the origin's own app lacks it, so the origin's implementation wins once it lands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, GOLDEN, ROOT, free_port

DIST = ROOT / "browser" / "dist"
GOLDEN_MODEL = GOLDEN / "model.json"
TEST_SECRET = "test-secret-not-for-production"

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
    subprocess.run(["node", "browser/build.mjs"], cwd=ROOT, check=True, capture_output=True)
    return json.loads((DIST / "manifest.json").read_text())


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
  const note = (el) => log.push({slot: el.getAttribute('data-fp-slot'), t: performance.now(), frame: frames,
                                 html: el.innerHTML, variant: el.getAttribute('data-fp-variant')});
  new MutationObserver((records) => {
    const touched = new Set();
    for (const r of records) {
      for (const n of r.addedNodes) if (n.nodeType === 1 && n.matches('[data-fp-slot]')) touched.add(n);
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
        return [s for s, after in zip(self.states, self.states[1:] + [None]) if after is None or after["frame"] > s["frame"]]

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


# --- the origin, with what the snippet needs ----------------------------------------------------


def model_script(model: dict[str, Any], site_json: dict[str, Any]) -> bytes:
    """`/fp/model.js`: the current model and the slots' HTML as one cacheable script."""
    payload = json.dumps({"model": model, "site": site_json}, separators=(",", ":"))
    return f"window.firstpaintModel={payload};\n".encode()


def browser_app(argv: list[str]) -> Any:
    """The real origin's ASGI app plus the snippet's routes it does not serve yet."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from model_export.policy import decide, load_model
    from origin.app import create_app
    from origin.services import Settings
    from origin.storage import DECISION
    from origin.tokens import sign

    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    app = create_app(Settings.from_env(db=args.db, model_path=args.model))
    paths = {getattr(r, "path", None) for r in app.router.routes}

    def sha8(request: Request) -> str:
        return request.app.state.origin.holder.model["sha256"][:8]

    async def get_model_js(request: Request) -> Response:
        origin = request.app.state.origin
        fresh = request.query_params.get("v") == sha8(request)
        return Response(
            model_script(origin.holder.model, origin.site.to_json()),
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=31536000, immutable" if fresh else "no-cache"},
        )

    models: dict[str, dict[str, Any]] = {}

    async def post_client_decisions(request: Request) -> Response:
        origin = request.app.state.origin
        try:
            batch = json.loads(await request.body())["decisions"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "body must be {\"decisions\": [...]}"}, status_code=400)
        now = origin.clock.now_ms()
        tokens: dict[str, str] = {}
        rejected: dict[str, str] = {}
        logged = []
        for item in batch:
            version = item.get("model_version")
            if version not in models:
                for stored in origin.storage.model_history(100):
                    models.setdefault(stored.version, load_model(stored.body))
            model = models.get(version)
            if model is None:
                rejected[str(item.get("decision_id"))] = f"unknown model_version {version!r}"
                continue
            again = decide(model, item["context"], item["slot"], item["visitor_id"], item["decision_id"])
            if again.variant != item["variant"] or abs(again.propensity - item["propensity"]) > 1e-9:
                rejected[item["decision_id"]] = "the policy does not make this decision"
                continue
            tokens[again.decision_id] = sign(origin.secret, again.to_dict(), now)
            logged.append(
                (DECISION, {
                    "decision_id": again.decision_id, "slot": again.slot, "variant": again.variant,
                    "propensity": again.propensity, "model_version": again.model_version,
                    "visitor_id": item["visitor_id"], "context": item["context"],
                    "ts_ms": item.get("ts_ms", now), "holdout": again.holdout,
                })
            )  # fmt: skip
        await origin.writer.write(logged)
        return JSONResponse({"tokens": tokens, "rejected": rejected})

    if "/fp/model.js" not in paths:
        app.router.routes.insert(0, Route("/fp/model.js", get_model_js))
    if "/v1/decisions/client" not in paths:
        app.router.routes.insert(0, Route("/v1/decisions/client", post_client_decisions, methods=["POST"]))

    async def with_model_tag(scope: Any, receive: Any, send: Any) -> None:
        """Pages get `<script src="/fp/model.js?v=…">` before the snippet, if they lack it."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                if b"text/html" not in dict(message["headers"]).get(b"content-type", b""):
                    await send(message)
                return
            if b"text/html" not in dict(start["headers"]).get(b"content-type", b""):
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if b"/fp/model.js" not in body:
                version = app.state.origin.holder.model["sha256"][:8]
                tag = f'<script src="/fp/model.js?v={version}"></script>'.encode()
                body = body.replace(b'<script src="/fp/snippet.js">', tag + b'<script src="/fp/snippet.js">', 1)
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await app(scope, receive, capture)

    return with_model_tag


@dataclass
class Site:
    """The running origin for browser tests: `url`, its SQLite `db`, the subprocess."""

    url: str
    db: Path
    process: subprocess.Popen
    log: Path

    def records(self, kind: str) -> list[dict[str, Any]]:
        """Committed log records of `kind` (`decision` or `event`), read from the SQLite file."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT record FROM log WHERE kind = ? ORDER BY id", (kind,)).fetchall()
        return [json.loads(r[0]) for r in rows]


@contextlib.contextmanager
def running_site(tmp_path: Path, model: Path = GOLDEN_MODEL) -> Iterator[Site]:
    """The origin serving the demo site and `browser/dist` on a free 127.0.0.1 port."""
    port = free_port()
    db = Path(tmp_path) / f"origin-{port}.db"
    log = Path(tmp_path) / f"origin-{port}.log"
    command = [sys.executable, "-m", "tests.support_browser", "--port", str(port), "--db", str(db)]
    command += ["--model", str(model)]
    env = {**os.environ, "FP_TOKEN_SECRET": TEST_SECRET, "FP_PUBLISH_INTERVAL_S": "3600"}
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    site = Site(f"http://127.0.0.1:{port}", db, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"origin did not start:\n{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(site.url + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield site
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def policy_variant(model: dict[str, Any], context: dict[str, Any], slot: str, visitor: str, decision_id: str) -> str:
    """What `model_export.policy` chooses (bots get the default, as in every runtime)."""
    from model_export.features import is_bot
    from model_export.policy import decide

    if is_bot(context.get("user_agent", ""), model["features"]["rules"]):
        return model["slots"][slot]["default"]
    return decide(model, context, slot, visitor, decision_id).variant


def local_hour(zone: str, now_ms: float) -> float:
    local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(zone))
    return local.hour + local.minute / 60


# --- fixtures (import them into a test module to use them) -------------------------------------


@pytest.fixture(scope="session")
def dist() -> dict[str, Any]:
    """`browser/dist`, built by the tests themselves so a clean clone works."""
    return build_dist()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def site(dist: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The origin with the golden model, serving the demo site and the built snippet."""
    with running_site(tmp_path_factory.mktemp("site")) as running:
        yield running


def main(argv: list[str]) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.support_browser")
    parser.add_argument("--port", type=int, required=True)
    args, rest = parser.parse_known_args(argv)
    uvicorn.run(browser_app(rest), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
