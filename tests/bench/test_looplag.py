"""The relay's event-loop lag during a phase, from its histogram scraped before and after."""

from __future__ import annotations

from bench.looplag import METRIC, lag_during
from bench.promtext import parse_histogram

BOUNDS = ("0.001", "0.005", "0.01", "0.025", "+Inf")


def exposition(counts: tuple[int, ...], total: float) -> str:
    """A /metrics text with the lag histogram (cumulative counts per bound) and its neighbours."""
    lines = [
        f"# HELP {METRIC} How late the event loop woke a task due every 100 ms.",
        f"# TYPE {METRIC} histogram",
    ]
    lines += [f'{METRIC}_bucket{{le="{le}"}} {c:.1f}' for le, c in zip(BOUNDS, counts, strict=True)]
    lines += [
        f"{METRIC}_count {counts[-1]:.1f}",
        f"{METRIC}_sum {total}",
        f"{METRIC}_created 1.7e9",
        'whatsapp_relay_publish_duration_seconds_bucket{le="0.001"} 99.0',
        "whatsapp_relay_publish_duration_seconds_sum 12.0",
    ]
    return "\n".join(lines) + "\n"


def test_the_histogram_is_read_from_an_exposition() -> None:
    h = parse_histogram(exposition((1, 2, 3, 3, 4), 20.0), METRIC)
    assert h is not None
    assert h.buckets == ((0.001, 1), (0.005, 2), (0.01, 3), (0.025, 3), (float("inf"), 4))
    assert h.sum == 20.0


def test_a_relay_without_the_metric_reports_nothing_not_zero() -> None:
    older = 'whatsapp_relay_requests_total{outcome="accepted"} 5.0\n'
    assert parse_histogram(older, METRIC) is None
    now = parse_histogram(exposition((1, 1, 1, 1, 1), 0.001), METRIC)
    assert lag_during(None, now) is None
    assert lag_during(now, None) is None


def test_only_the_samples_of_the_phase_count() -> None:
    before = parse_histogram(exposition((50, 50, 50, 50, 50), 0.01), METRIC)
    # 200 samples in the phase: 190 under 1 ms, 8 up to 5 ms, 1 up to 10 ms, 1 up to 25 ms.
    after = parse_histogram(exposition((240, 248, 249, 250, 250), 0.01 + 0.2), METRIC)
    lag = lag_during(before, after)
    assert lag == {"samples": 200, "mean_ms": 1.0, "p99_le_ms": 5.0, "max_le_ms": 25.0}


def test_the_p99_is_the_bucket_of_the_nearest_rank() -> None:
    before = parse_histogram(exposition((0, 0, 0, 0, 0), 0.0), METRIC)
    # 100 samples: the 99th smallest is the first in the 10 ms bucket.
    after = parse_histogram(exposition((90, 98, 99, 100, 100), 0.3), METRIC)
    lag = lag_during(before, after)
    assert lag is not None
    assert (lag["p99_le_ms"], lag["max_le_ms"]) == (10.0, 25.0)


def test_a_stall_beyond_the_largest_bucket_has_no_upper_bound() -> None:
    before = parse_histogram(exposition((0, 0, 0, 0, 0), 0.0), METRIC)
    after = parse_histogram(exposition((10, 10, 10, 10, 11), 30.0), METRIC)
    lag = lag_during(before, after)
    assert lag is not None
    assert lag["max_le_ms"] is None
    assert lag["beyond_ms"] == 25.0
    assert lag["p99_le_ms"] is None  # 11 samples: the p99 is the largest


def test_a_phase_without_samples_has_no_figures() -> None:
    h = parse_histogram(exposition((3, 3, 3, 3, 3), 0.0), METRIC)
    assert lag_during(h, h) == {"samples": 0}


def test_counts_that_went_backwards_are_not_a_phase() -> None:
    # A restarted relay starts its histogram again.
    before = parse_histogram(exposition((50, 50, 50, 50, 50), 1.0), METRIC)
    after = parse_histogram(exposition((10, 10, 10, 10, 10), 0.1), METRIC)
    assert lag_during(before, after) is None
