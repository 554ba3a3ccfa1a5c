"""Browser benchmark: what the snippet and the Pyodide worker cost the page, in Debian's Chromium.

- `fcp_ratio`: median first contentful paint over fresh contexts (cold HTTP cache) of the demo
  home page with the snippet (`data-fp-pyodide="off"`) / the same page without its script tag
  (`/fp/firstpaint.js`: model, site and snippet code). Both pages are a snapshot of the origin's
  `/`, served with every file they use by one in-process HTTP/1.1 server, so the only
  difference is that tag; the two pages alternate in pairs.
- `fcp_ratio_with_pyodide`: the same with the Pyodide worker on (it loads after `load`, when
  idle; each run waits until it is ready, so its download and start-up really happen), in a
  second phase of pairs with its own runs of the page without the snippet.
- `fcp_ratio_empty_script`: the same page with an empty script in place of the snippet's (same
  tag, same place, a zero-byte file) / the page without it, in a third phase of pairs: what any
  parser-blocking script in `<head>` costs first paint here, before its first byte of code.
- `pyodide_ready_cold_ms` / `pyodide_ready_warm_ms`: worker creation → Python policy ready
  (`firstpaint.pyodide.ready_ms`), on the real origin: a fresh context, then a reload in it;
  `pyodide_cold_phases_ms` splits the cold start (Pyodide itself, wheels, imports).
- `snippet_decide_ms_median`: the hero decision's own time in those fresh pages.
- `fcp_main_thread_cpu_ms`: CPU time (thread clock, from a Chromium trace) the renderer's main
  thread spent between navigation start and first contentful paint, median per page kind. Wall
  clock on a shared 2-core machine swings by tens of ms between identical runs; CPU time barely
  does, so this shows what the snippet itself adds to the critical path.
- `snippet_gzip_kb` (the snippet's code without the model, from the build manifest),
  `firstpaint_js_gzip_kb` (the whole first-paint file: with the model and the site's slot
  HTML), `after_paint_gzip_kb` (imported after `load`).
Targets: fcp ratios ≤ 1.05, snippet ≤ 4 KB gzipped.
"""

from __future__ import annotations

import gzip
import http.server
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT
from tests.support_browser import (
    DESKTOP_UA,
    DIST,
    GOLDEN_MODEL,
    SCRIPT_TAG,
    STABLE_MODEL,
    build_dist,
    launch,
    with_script_attributes,
)
from tests.support_origin import running_origin

RUNS = 15
TRACED_RUNS = 5
SETTLE_S = 1.0
PYODIDE_RUNS = 3
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
         ".wasm": "application/wasm", ".json": "application/json", ".zip": "application/zip",
         ".whl": "application/zip", ".html": "text/html; charset=utf-8"}  # fmt: skip


EMPTY_TAG = '<script src="/fp/empty.js"></script>'


def _pages(origin_url: str) -> dict[str, bytes]:
    """The origin's home page with the snippet (Pyodide on and off) and without it, and the
    snippet's one file, /fp/firstpaint.js (served below without its `?v=`); and the page with an
    empty script in the tag's place, /fp/empty.js."""
    page = httpx.get(origin_url + "/", headers={"user-agent": DESKTOP_UA}).text
    tag = SCRIPT_TAG.search(page)
    assert tag, "no /fp/firstpaint.js script tag in the home page"
    script = httpx.get(origin_url + tag.group(0).split('"')[1]).content
    return {
        "/with.html": page.encode(),
        "/snippet.html": with_script_attributes(page, 'data-fp-pyodide="off"').encode(),
        "/without.html": (page[: tag.start()] + page[tag.end() :]).encode(),
        "/empty.html": (page[: tag.start()] + EMPTY_TAG + page[tag.end() :]).encode(),
        "/fp/firstpaint.js": script,
        "/fp/empty.js": b"",
    }


@contextmanager
def _static(files: dict[str, bytes], roots: dict[str, Path]) -> Iterator[str]:
    """Serve `files` (path → bytes) and directories (`roots`: prefix → dir) on 127.0.0.1."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _body(self, path: str) -> bytes | None:
            if path in files:
                return files[path]
            for prefix, root in roots.items():
                if path.startswith(prefix):
                    target = (root / path[len(prefix) :]).resolve()
                    if target.is_file() and target.is_relative_to(root.resolve()):
                        return target.read_bytes()
            return None

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body(path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", TYPES.get(Path(path).suffix, "text/plain"))
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def do_POST(self) -> None:  # decisions and beacons: accepted, not recorded
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _fresh_page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context (cold HTTP cache, empty storage), closed afterwards."""
    context = browser.new_context(user_agent=DESKTOP_UA)
    try:
        yield context.new_page()
    finally:
        context.close()


def _open_until_fcp(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length")


def _fcp(browser: Any, url: str, wait_for_pyodide: bool = False) -> tuple[float, float | None]:
    """(first contentful paint, the hero decision's own time in the snippet or None)."""
    try:
        with _fresh_page(browser) as page:
            _open_until_fcp(page, url)
            fcp = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0].startTime"
            )
            decide_ms = page.evaluate(
                "window.firstpaint ? firstpaint.decisions.find((d) => d.slot === 'hero').decide_ms"
                " : null"
            )
            if wait_for_pyodide:
                page.wait_for_function(
                    "firstpaint.pyodide && firstpaint.pyodide.ready", timeout=180_000
                )
            return fcp, decide_ms
    finally:
        if wait_for_pyodide:
            time.sleep(SETTLE_S)  # let the closed worker's threads go before the next page


def _main_thread_cpu_ms(trace: dict[str, Any]) -> float:
    """CPU ms of the painting renderer's main thread, navigation start to FCP (outer slices)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    fcp = next(e for e in events if e.get("name") == "firstContentfulPaint")
    thread = (fcp["pid"], fcp["tid"])
    starts = [
        e["ts"] for e in events if e.get("name") == "navigationStart" and e["pid"] == fcp["pid"]
    ]
    begin = min(starts) if starts else 0
    slices = sorted(
        (
            e
            for e in events
            if (e.get("pid"), e.get("tid")) == thread and e.get("ph") == "X" and "tdur" in e
        ),
        key=lambda e: (e["ts"], -e["dur"]),
    )
    total, covered_until = 0.0, -1
    for event in slices:  # only outermost slices: nested ones are already inside their parent
        if event["ts"] >= covered_until:
            covered_until = event["ts"] + event["dur"]
            if begin <= event["ts"] < fcp["ts"]:
                total += event["tdur"] / 1000
    return total


def _traced_cpu_ms(browser: Any, url: str, trace_path: Path) -> float:
    """Main-thread CPU before FCP for one fresh page, from a Chromium trace."""
    with _fresh_page(browser) as page:
        browser.start_tracing(
            page=page, path=str(trace_path), categories=["devtools.timeline", "loading"]
        )
        _open_until_fcp(page, url)
        page.wait_for_timeout(200)  # let the trace buffer take the paint events
        browser.stop_tracing()
        return _main_thread_cpu_ms(json.loads(trace_path.read_text()))


def _pyodide_ready(browser: Any, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cold, warm) `firstpaint.pyodide`: a fresh context, then a reload in the same context."""
    with _fresh_page(browser) as page:
        times = []
        for _ in range(2):
            page.goto(url)
            page.wait_for_function(
                "firstpaint.pyodide && firstpaint.pyodide.ready", timeout=180_000
            )
            times.append(page.evaluate("firstpaint.pyodide"))
        return times[0], times[1]


def run() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    manifest = build_dist()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = launch(playwright)
        with running_origin(Path(tmp), model=GOLDEN_MODEL, env=STABLE_MODEL) as origin:
            pages = _pages(origin.url)
            ready = [_pyodide_ready(browser, origin.url + "/") for _ in range(PYODIDE_RUNS)]
        roots = {
            "/fp/pyodide/": ROOT / "node_modules" / "pyodide",
            "/fp/": DIST,
            "/static/": ROOT / "origin" / "site" / "static",
        }
        fcp: dict[str, list[float]] = {
            "without": [], "snippet": [], "base": [], "with": [], "floor": [], "empty": []
        }  # fmt: skip
        decide_ms: list[float] = []
        with _static(pages, roots) as url:
            # Two phases of pairs in alternating order, so each kind follows each other kind
            # equally often: a closed Pyodide page leaves worker threads winding down, and
            # whatever runs next pays for them (with triples, `snippet` followed `with` half the
            # time and `without` never did). `base` (phase two) and `floor` (phase three) are the
            # page without the snippet.
            for pair in (("without", "snippet"), ("base", "with"), ("floor", "empty")):
                for i in range(RUNS):
                    for name in pair if i % 2 else pair[::-1]:
                        page = "without" if name in ("base", "floor") else name
                        paint, decided = _fcp(browser, f"{url}/{page}.html", name == "with")
                        fcp[name].append(paint)
                        if decided is not None:
                            decide_ms.append(decided)
            cpu: dict[str, list[float]] = {"without": [], "snippet": []}
            for i in range(TRACED_RUNS):
                for name in ["without", "snippet"] if i % 2 else ["snippet", "without"]:
                    cpu[name].append(
                        _traced_cpu_ms(browser, f"{url}/{name}.html", Path(tmp) / "trace.json")
                    )
        browser.close()
    median = {name: statistics.median(values) for name, values in fcp.items()}
    return {
        "fcp_ratio": round(median["snippet"] / median["without"], 3),
        "fcp_ratio_with_pyodide": round(median["with"] / median["base"], 3),
        "fcp_ratio_empty_script": round(median["empty"] / median["floor"], 3),
        "fcp_median_ms": {name: round(value, 1) for name, value in median.items()},
        "fcp_runs": RUNS,
        "fcp_main_thread_cpu_ms": {
            name: round(statistics.median(values), 1) for name, values in cpu.items()
        },
        "fcp_main_thread_cpu_added_ms": round(
            statistics.median(cpu["snippet"]) - statistics.median(cpu["without"]), 1
        ),
        "fcp_traced_runs": TRACED_RUNS,
        # The hero's decision in a fresh page (first use of features.js: regexes, time zone).
        "snippet_decide_ms_median": round(statistics.median(decide_ms), 1),
        "snippet_gzip_kb": round(manifest["snippet_gzip_bytes"] / 1024, 2),
        "firstpaint_js_gzip_kb": round(len(gzip.compress(pages["/fp/firstpaint.js"])) / 1024, 2),
        "after_paint_gzip_kb": round(manifest["after_paint_gzip_bytes"] / 1024, 2),
        "pyodide_ready_cold_ms": round(statistics.median(c["ready_ms"] for c, _ in ready)),
        "pyodide_ready_warm_ms": round(statistics.median(w["ready_ms"] for _, w in ready)),
        # Inside the worker, cold: Pyodide's own start, our two wheels, importing the policy.
        "pyodide_cold_phases_ms": {
            phase: round(statistics.median(c["phases"][phase] for c, _ in ready))
            for phase in ready[0][0]["phases"]
        },
        "pyodide_runs": PYODIDE_RUNS,
    }


def summary(results: dict[str, Any]) -> str:
    return (
        f"fcp ×{results['fcp_ratio']} with the snippet, ×{results['fcp_ratio_with_pyodide']} with "
        f"Pyodide (target ≤ 1.05), ×{results['fcp_ratio_empty_script']} with an empty script "
        f"in its place, +{results['fcp_main_thread_cpu_added_ms']} ms main-thread CPU "
        f"before FCP; snippet {results['snippet_gzip_kb']} KB gz (target ≤ 4) "
        f"+ {results['after_paint_gzip_kb']} KB after paint; Pyodide ready "
        f"{results['pyodide_ready_cold_ms']} ms cold, {results['pyodide_ready_warm_ms']} ms warm"
    )
