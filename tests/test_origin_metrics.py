"""Prometheus text from `origin.metrics`: label keys, histogram buckets, exposition."""

from __future__ import annotations

from origin.metrics import Counter, Histogram, Registry


def test_histogram_buckets_hold_values_up_to_and_including_their_bound():
    histogram = Histogram("fp_t_seconds", "T.", (0.001, 0.01, 0.1))
    for value in (0.0005, 0.001, 0.0011, 0.01, 0.5, float("nan")):
        histogram.observe(value)
    assert histogram.render()[2:] == [
        'fp_t_seconds_bucket{le="0.001"} 2',
        'fp_t_seconds_bucket{le="0.01"} 4',
        'fp_t_seconds_bucket{le="0.1"} 4',
        'fp_t_seconds_bucket{le="+Inf"} 6',
        "fp_t_seconds_sum NaN",
        "fp_t_seconds_count 6",
    ]
    assert histogram.count == 6


def test_counter_labels_are_one_series_whatever_their_order():
    registry = Registry()
    counter = registry.add(Counter("fp_c_total", "C."))
    counter.inc(source="edge")
    counter.inc(2, source="edge")
    counter.inc(reason="x", source="y")
    counter.inc(source="y", reason="x")
    assert counter.value(source="edge") == 3
    assert counter.value(source="y", reason="x") == 2
    assert registry.render().splitlines()[2:] == [
        'fp_c_total{reason="x",source="y"} 2',
        'fp_c_total{source="edge"} 3',
    ]
