"""`GET /dashboard`: what the model is doing, per slot, readable at a glance.

Engagement by variant (95% Wilson intervals), lift over the holdout (95% interval on the
log-ratio), decisions per second, model version and age, event-to-model freshness and the
top feature weights — server-rendered HTML with inline SVG: no script, no external asset.

The page reads the decision/event log through its own consumer cursor (`dashboard`) and keeps
running totals in this process, so a render costs only the entries logged since the last one.
The cursor is stored with the log, so after a restart the totals start again from the
entries logged since (the first render reads a fresh log from its beginning). Decisions and
events are joined on `decision_id` (a click carries slot and variant, not the holdout flag).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from origin.clock import Clock
from origin.storage import DECISION, LogEntry, StoredModel

CONSUMER = "dashboard"
RATE_WINDOW_MS = 60_000
_REMEMBERED = 500_000  # decisions kept for the click join; older clicks count without holdout
_ENGAGED = ("click", "conversion")
_Z = 1.959964


class DashboardSource(Protocol):
    """The part of `origin.storage.Storage` the dashboard reads."""

    def read_log(self, consumer: str, count: int) -> list[LogEntry]: ...

    def ack(self, consumer: str, entries: list[LogEntry]) -> None: ...

    def lag(self, consumer: str) -> int: ...

    def current_model(self) -> StoredModel | None: ...


@dataclass
class Counts:
    decisions: int = 0
    engaged: int = 0

    @property
    def rate(self) -> float:
        return self.engaged / self.decisions if self.decisions else 0.0


@dataclass
class SlotTotals:
    variants: dict[str, Counts] = field(default_factory=dict)
    holdout: Counts = field(default_factory=Counts)
    personalized: Counts = field(default_factory=Counts)


def wilson(engaged: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a rate (sane at 0 and at small n)."""
    if n == 0:
        return 0.0, 1.0
    p = engaged / n
    centre = (p + _Z**2 / (2 * n)) / (1 + _Z**2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + _Z**2 / (4 * n * n)) / (1 + _Z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def lift(treated: Counts, holdout: Counts) -> tuple[float, float, float] | None:
    """Relative lift of `treated` over `holdout` with a 95% interval (log risk ratio)."""
    if not (treated.engaged and holdout.engaged and treated.decisions and holdout.decisions):
        return None
    ratio = treated.rate / holdout.rate
    se = math.sqrt(
        1 / treated.engaged - 1 / treated.decisions + 1 / holdout.engaged - 1 / holdout.decisions
    )
    return ratio - 1, ratio * math.exp(-_Z * se) - 1, ratio * math.exp(_Z * se) - 1


class DashboardStats:
    """Running totals from the log, read incrementally through the `dashboard` cursor."""

    def __init__(self, source: DashboardSource, batch: int = 5000, max_batches: int = 100):
        self.source = source
        self.batch = batch
        self.max_batches = max_batches
        self.slots: dict[str, SlotTotals] = {}
        self.behind = 0
        self._decisions: OrderedDict[str, tuple[str, str, bool, bool]] = OrderedDict()
        self._recent: deque[int] = deque()
        self._event_ts: deque[int] = deque(maxlen=100_000)
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Fold in entries logged since the last refresh (bounded work per call)."""
        with self._lock:
            for _ in range(self.max_batches):
                entries = self.source.read_log(CONSUMER, self.batch)
                for entry in entries:
                    self._fold(entry)
                self.source.ack(CONSUMER, entries)
                if len(entries) < self.batch:
                    break
            self.behind = self.source.lag(CONSUMER)

    def _fold(self, entry: LogEntry) -> None:
        record = entry.record
        if entry.kind == DECISION:
            slot, variant = record.get("slot"), record.get("variant")
            decision_id = record.get("decision_id")
            if not isinstance(slot, str) or not isinstance(variant, str) or not decision_id:
                return
            holdout = record.get("holdout") is True
            totals = self.slots.setdefault(slot, SlotTotals())
            totals.variants.setdefault(variant, Counts()).decisions += 1
            (totals.holdout if holdout else totals.personalized).decisions += 1
            self._decisions[decision_id] = (slot, variant, holdout, False)
            if len(self._decisions) > _REMEMBERED:
                self._decisions.popitem(last=False)
            if isinstance(record.get("ts_ms"), int):
                self._recent.append(record["ts_ms"])
        elif record.get("type") in _ENGAGED:
            if isinstance(record.get("ts_ms"), int):
                self._event_ts.append(record["ts_ms"])
            known = self._decisions.get(record.get("decision_id", ""))
            if known is None or known[3]:  # unknown decision, or already counted as engaged
                return
            slot, variant, holdout, _ = known
            self._decisions[record["decision_id"]] = (slot, variant, holdout, True)
            totals = self.slots[slot]
            totals.variants[variant].engaged += 1
            (totals.holdout if holdout else totals.personalized).engaged += 1

    def decisions_per_s(self, now_ms: int) -> float:
        while self._recent and self._recent[0] <= now_ms - RATE_WINDOW_MS:
            self._recent.popleft()
        return sum(1 for t in self._recent if t <= now_ms) / (RATE_WINDOW_MS / 1000)

    def freshness_ms(self, published_ms: int, now_ms: int) -> int:
        """Age of the oldest engagement event newer than the current model (0: none waiting)."""
        waiting = [t for t in self._event_ts if t > published_ms]
        return max(0, now_ms - min(waiting)) if waiting else 0


# --- SVG ---------------------------------------------------------------------------------------

_W, _LABEL, _ROW = 560, 150, 26


def _bar_chart(title: str, rows: list[tuple[str, float, float, float, str]], top: float) -> str:
    """Horizontal bars with interval whiskers: rows of (label, value, low, high, note)."""
    height = 30 + _ROW * len(rows)
    scale = (_W - _LABEL - 90) / (top or 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{_W}" '
        f'height="{height}" viewBox="0 0 {_W} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="14" class="title">{escape(title)}</text>',
    ]
    for i, (label, value, low, high, note) in enumerate(rows):
        y = 24 + i * _ROW
        x0, x1 = _LABEL + low * scale, _LABEL + high * scale
        parts += [
            f'<g class="bar" data-label="{escape(label)}">',
            f'<text x="{_LABEL - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>',
            f'<rect x="{_LABEL}" y="{y + 3}" width="{max(value * scale, 1):.1f}" height="16"/>',
            f'<line class="ci" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y + 11}" y2="{y + 11}"/>',
            f'<line class="ci" x1="{x0:.1f}" x2="{x0:.1f}" y1="{y + 6}" y2="{y + 16}"/>',
            f'<line class="ci" x1="{x1:.1f}" x2="{x1:.1f}" y1="{y + 6}" y2="{y + 16}"/>',
            f'<text x="{_LABEL + high * scale + 6:.1f}" y="{y + 14}" class="note">'
            f"{escape(note)}</text>",
            "</g>",
        ]
    return "".join(parts) + "</svg>"


def _lift_chart(interval: tuple[float, float, float] | None) -> str:
    """The lift and its interval on an axis centred on 0 (no lift)."""
    if interval is None:
        return '<p class="empty">Lift over the holdout: not enough engaged decisions yet.</p>'
    value, low, high = interval
    span = max(abs(low), abs(high), 0.1) * 1.15
    mid, half = _W / 2, (_W - 40) / 2

    def x(v: float) -> float:
        return mid + v / span * half

    verdict = "better" if low > 0 else "worse" if high < 0 else "not yet distinguishable"
    return (
        f'<svg class="chart lift" role="img" aria-label="lift over holdout" width="{_W}" '
        f'height="88" viewBox="0 0 {_W} 88" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="0" y="14" class="title">Lift over the holdout: {value:+.1%}</text>'
        f'<text x="0" y="30" class="note">95% interval {low:+.1%} to {high:+.1%}: '
        f"{verdict}</text>"
        f'<line class="axis" x1="{mid}" x2="{mid}" y1="38" y2="80"/>'
        f'<text x="{mid + 3}" y="86" class="note">0</text>'
        f'<line class="ci" x1="{x(low):.1f}" x2="{x(high):.1f}" y1="58" y2="58"/>'
        f'<circle cx="{x(value):.1f}" cy="58" r="6"/></svg>'
    )


def _weights_chart(slot: str, config: dict[str, Any], limit: int = 10) -> str:
    """The largest |weights| of the slot's model, positive and negative bars from a centre."""
    weights = [
        (f"{variant} · {name}", w)
        for variant, table in config.get("weights", {}).items()
        for name, w in table.items()
    ]
    weights.sort(key=lambda item: -abs(item[1]))
    weights = weights[:limit]
    if not weights:
        return '<p class="empty">No feature weights yet (the model has only biases).</p>'
    big = max(abs(w) for _, w in weights)
    label, height = 330, 30 + _ROW * len(weights)
    mid, half = label + (_W + 140 - label) / 2, (_W + 140 - label) / 2 - 50
    parts = [
        f'<svg class="chart weights" role="img" aria-label="top feature weights {escape(slot)}" '
        f'width="{_W + 140}" height="{height}" viewBox="0 0 {_W + 140} {height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        '<text x="0" y="14" class="title">Top feature weights (log-odds)</text>',
        f'<line class="axis" x1="{mid}" x2="{mid}" y1="20" y2="{height}"/>',
    ]
    for i, (name, w) in enumerate(weights):
        y = 24 + i * _ROW
        length = abs(w) / big * half
        x = mid if w >= 0 else mid - length
        sign = "pos" if w >= 0 else "neg"
        parts += [
            f'<text x="{label - 6}" y="{y + 14}" text-anchor="end">{escape(name)}</text>',
            f'<rect class="{sign}" x="{x:.1f}" y="{y + 3}" width="{max(length, 1):.1f}" '
            'height="16"/>',
            f'<text x="{mid + (length + 4 if w >= 0 else -length - 4):.1f}" y="{y + 14}" '
            f'class="note" text-anchor="{"start" if w >= 0 else "end"}">{w:+.2f}</text>',
        ]
    return "".join(parts) + "</svg>"


# --- the page -----------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2733;background:#fafbfc}
h1{font-size:20px;margin:0 0 12px} h2{font-size:17px;margin:28px 0 8px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:8px 14px;min-width:150px}
.tile b{display:block;font-size:20px} .tile span{color:#57606a;font-size:12px}
.chart{display:block;margin:8px 0;background:#fff;border:1px solid #d8dee4;border-radius:6px}
.chart text{font-size:12px;fill:#1d2733} .chart .title{font-weight:600;font-size:13px}
.chart .note{fill:#57606a} .chart rect{fill:#3b82c4} .chart .ci{stroke:#1d2733;stroke-width:1.5}
.chart .axis{stroke:#8c959f;stroke-dasharray:3 3} .chart circle{fill:#3b82c4}
.chart rect.pos{fill:#2da44e} .chart rect.neg{fill:#cf222e}
.empty,.warn{color:#57606a} .warn{color:#9a6700}
"""


def _duration(ms: float) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def render(stats: DashboardStats, model: StoredModel | None, now_ms: int) -> str:
    """The whole page as HTML (every name from the log or the model is escaped)."""
    slots_config: dict[str, Any] = json.loads(model.body)["slots"] if model else {}
    tiles = [("decisions / s (last minute)", f"{stats.decisions_per_s(now_ms):.1f}")]
    if model is not None:
        tiles += [
            ("model version", model.version),
            ("model age", _duration(now_ms - model.published_ms)),
            (
                "oldest event not yet in the model",
                _duration(stats.freshness_ms(model.published_ms, now_ms)),
            ),
        ]
    else:
        tiles.append(("model", "none published yet"))
    body = [
        "<h1>firstpaint — live</h1>",
        '<div class="tiles">'
        + "".join(
            f'<div class="tile"><span>{escape(k)}</span><b>{escape(v)}</b></div>' for k, v in tiles
        )
        + "</div>",
    ]
    if stats.behind:
        body.append(f'<p class="warn">Still reading the log: {stats.behind} entries behind.</p>')
    for slot in sorted(set(slots_config) | set(stats.slots)):
        totals = stats.slots.get(slot, SlotTotals())
        config = slots_config.get(slot, {})
        order = list(config.get("variants", [])) + sorted(
            set(totals.variants) - set(config.get("variants", []))
        )
        rows = []
        for variant in order:
            counts = totals.variants.get(variant, Counts())
            low, high = wilson(counts.engaged, counts.decisions)
            note = f"{counts.rate:.1%} of {counts.decisions}" if counts.decisions else "no traffic"
            rows.append(
                (
                    variant,
                    counts.rate,
                    low if counts.decisions else 0.0,
                    high if counts.decisions else 0.0,
                    note,
                )
            )
        top = max((r[3] for r in rows), default=0.0)
        body += [
            f'<section class="slot" data-slot="{escape(slot)}"><h2>Slot {escape(slot)}</h2>',
            _bar_chart(f"Engagement by variant — {slot} (95% intervals)", rows, top),
            _lift_chart(lift(totals.personalized, totals.holdout)),
            _weights_chart(slot, config),
            "</section>",
        ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>firstpaint dashboard</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def dashboard_routes(
    source: DashboardSource, clock: Clock, stats: DashboardStats | None = None
) -> list[Route]:
    """The `/dashboard` route, to mount on the origin app."""
    stats = stats or DashboardStats(source)
    model_of: Callable[[], StoredModel | None] = source.current_model

    async def dashboard(request: Request) -> HTMLResponse:
        await run_in_threadpool(stats.refresh)
        model = await run_in_threadpool(model_of)
        page = render(stats, model, clock.now_ms())
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    return [Route("/dashboard", dashboard, methods=["GET"])]
