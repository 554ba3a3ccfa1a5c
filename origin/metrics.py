"""Prometheus text exposition (format 0.0.4) for the few metrics the origin keeps.

Counters, gauges and histograms with labels; thread-safe; rendered on `GET /metrics`.
Gauges may be callables, read at scrape time (model age, learner lag).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable
from typing import Any

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for _, v in items)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(items, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        # One label (every counter on the hot path) needs no sorting into its key.
        key = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def labels(self, **labels: str) -> Callable[[float], None]:
        """`inc` for one fixed set of labels, its key made once: for a counter on the hot path,
        where building the keyword arguments and the key cost as much as the increment."""
        key = tuple(sorted(labels.items()))
        values, lock = self._values, self._lock

        def inc(amount: float = 1.0) -> None:
            with lock:
                values[key] = values.get(key, 0.0) + amount

        return inc

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], dict[Labels, float]]) -> None:
        super().__init__(name, help_text)
        self._read = read

    def render(self) -> list[str]:
        try:
            items = sorted(self._read().items())
        except Exception:  # a scrape must not fail because one source is down
            items = []
        return self.header() + [f"{self.name}{_labels(k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # The first bucket with value <= bound; NaN is <= none of them (+Inf's count).
        index = bisect.bisect_left(self.buckets, value) if value == value else len(self.buckets)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def render(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines, cumulative = self.header(), 0
        for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
            cumulative += n
            lines.append(f"{self.name}_bucket{_labels((), (('le', _number(bound)),))} {cumulative}")
        lines += [f"{self.name}_sum {_number(total)}", f"{self.name}_count {cumulative}"]
        return lines


class Registry:
    """The metrics of one app."""

    def __init__(self) -> None:
        self._metrics: list[Any] = []

    def add(self, metric: Any) -> Any:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        return "\n".join(line for m in self._metrics for line in m.render()) + "\n"
