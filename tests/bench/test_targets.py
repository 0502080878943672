"""The benchmark's targets (docs/benchmark.md) and the ratios behind them, from figures a run
measured."""

from __future__ import annotations

from typing import Any

from bench.targets import evaluate, lower_by, ratio, versus


def closed(acked: float, cpu_per_1k: float | None, peak_rss: float) -> dict[str, Any]:
    return {
        "acked_rps": acked,
        "relay": {"cpu_seconds_per_1000_requests": cpu_per_1k, "peak_rss_mib": peak_rss},
    }


def open_phase(p99: float, p99_9: float, non_200: int = 0, errors: int = 0) -> dict[str, Any]:
    return {
        "latency_ms": {"p99": p99, "p99_9": p99_9},
        "non_200": non_200,
        "errors": {"timeout": errors} if errors else {},
    }


def test_ratios_and_how_much_lower() -> None:
    assert ratio(5200, 8000) == 0.65
    assert ratio(None, 8000) is None
    assert ratio(5200, None) is None
    assert ratio(5200, 0) is None
    assert lower_by(0.07, 0.1) == 0.3
    assert lower_by(0.12, 0.1) == -0.2  # higher


def test_the_relay_against_another_version() -> None:
    vs = versus(closed(4500, 0.063, 60.0), closed(3600, 0.09, 50.0))
    assert vs == {
        "acked_rps_ratio": 1.25,
        "cpu_seconds_per_1000_requests_ratio": 0.7,
        "cpu_seconds_per_1000_requests_lower_by": 0.3,
        "peak_rss_mib_ratio": 1.2,
    }
    # A relay whose CPU time could not be read has no cost ratio, rather than a made-up one.
    assert (
        versus(closed(4500, None, 60.0), closed(3600, 0.09, 50.0))[
            "cpu_seconds_per_1000_requests_lower_by"
        ]
        is None
    )


def test_every_target_met() -> None:
    t = evaluate(
        closed_ratio_to_floor=0.92,
        cpu_ratio_to_floor_at_light=1.10,
        open_phase=open_phase(9.9, 25.0),
        peak_rss_mib=100.0,
        records_lost=0,
    )
    assert {name: v["met"] for name, v in t.items()} == {
        "closed_ratio_to_floor": True,
        "cpu_s_per_1k_at_1000_ratio_to_floor": True,
        "open_0.5x_p99_ms": True,
        "open_0.5x_p99_9_ms": True,
        "open_0.5x_non_200_and_errors": True,
        "peak_rss_mib": True,
        "records_lost": True,
    }
    assert t["closed_ratio_to_floor"] == {"target": ">= 0.92", "value": 0.92, "met": True}
    assert t["cpu_s_per_1k_at_1000_ratio_to_floor"]["target"] == "<= 1.1"


def test_every_target_missed() -> None:
    t = evaluate(
        closed_ratio_to_floor=0.858,
        cpu_ratio_to_floor_at_light=1.113,
        open_phase=open_phase(12.9, 47.5, non_200=3, errors=1),
        peak_rss_mib=100.1,
        records_lost=1,
    )
    assert [v["met"] for v in t.values()] == [False] * 7
    assert t["open_0.5x_non_200_and_errors"]["value"] == 4


def test_what_the_run_did_not_measure_is_neither_met_nor_missed() -> None:
    # No floor, no 0.5x rate.
    t = evaluate(
        closed_ratio_to_floor=None,
        cpu_ratio_to_floor_at_light=None,
        open_phase=None,
        peak_rss_mib=57.0,
        records_lost=0,
    )
    unmeasured = {name for name, v in t.items() if v["met"] is None}
    assert unmeasured == {
        "closed_ratio_to_floor",
        "cpu_s_per_1k_at_1000_ratio_to_floor",
        "open_0.5x_p99_ms",
        "open_0.5x_p99_9_ms",
        "open_0.5x_non_200_and_errors",
    }
    assert all(t[name]["value"] is None for name in unmeasured)
    assert t["peak_rss_mib"]["met"] is True
