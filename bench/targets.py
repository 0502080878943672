"""The benchmark's targets (docs/benchmark.md), as ratios measured in one run on one machine,
and the ratios themselves.

Reported with "met" or "NOT met", never enforced (timings depend on the machine; only a lost
record fails a run). A target whose figure the run did not measure (no floor, no 0.5x rate, no
1,000/s phase) is reported as not measured: value and met are None.

The throughput and cost targets are against the floor of the stack the relay is built on
(bench/floor_server.py), measured at the same moments on the same core (bench/paired.py): the
relay's own work is what it costs beyond that floor, and only such a ratio survives the
machine's drift. The bare endpoint's ratio (no Kafka at all) and the --compare-cmd relay's are
information, not targets.
"""

from __future__ import annotations

from typing import Any

CLOSED_RATIO_TO_FLOOR = 0.92  # relay acked/s over the floor's, paired closed loop
CPU_RATIO_TO_FLOOR_AT_LIGHT = 1.10  # relay cpu s/1k over the floor's, paired 1,000/s phase
OPEN_OF_CLOSED = 0.5  # the open-loop rate, as a fraction of the closed loop's acked/s
OPEN_P99_MS = 10.0
OPEN_P99_9_MS = 25.0
PEAK_RSS_MIB = 100.0


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def lower_by(mine: float | None, theirs: float | None) -> float | None:
    """How much lower mine is than theirs, as a fraction of theirs (negative: higher)."""
    r = ratio(mine, theirs)
    return None if r is None else round(1 - r, 3)


def versus(main: dict[str, Any], other: dict[str, Any]) -> dict[str, float | None]:
    """The relay's closed loop against another's: main over other, and the cost reduction."""
    mine = main["relay"].get("cpu_seconds_per_1000_requests")
    theirs = other["relay"].get("cpu_seconds_per_1000_requests")
    return {
        "acked_rps_ratio": ratio(main["acked_rps"], other["acked_rps"]),
        "cpu_seconds_per_1000_requests_ratio": ratio(mine, theirs),
        "cpu_seconds_per_1000_requests_lower_by": lower_by(mine, theirs),
        "peak_rss_mib_ratio": ratio(
            main["relay"].get("peak_rss_mib"), other["relay"].get("peak_rss_mib")
        ),
    }


def target(text: str, value: float | None, met: bool) -> dict[str, Any]:
    return {"target": text, "value": value, "met": met if value is not None else None}


def evaluate(
    *,
    closed_ratio_to_floor: float | None,
    cpu_ratio_to_floor_at_light: float | None,
    open_phase: dict[str, Any] | None,
    peak_rss_mib: float | None,
    records_lost: int,
) -> dict[str, dict[str, Any]]:
    """Each target: what it asks, the run's figure, and whether that meets it."""
    p99 = p99_9 = failed = None
    if open_phase:
        p99, p99_9 = open_phase["latency_ms"]["p99"], open_phase["latency_ms"]["p99_9"]
        failed = open_phase["non_200"] + sum(open_phase["errors"].values())
    at = f"open_{OPEN_OF_CLOSED:g}x"
    closed, light = closed_ratio_to_floor, cpu_ratio_to_floor_at_light
    return {
        "closed_ratio_to_floor": target(
            f">= {CLOSED_RATIO_TO_FLOOR:g}",
            closed,
            closed is not None and closed >= CLOSED_RATIO_TO_FLOOR,
        ),
        "cpu_s_per_1k_at_1000_ratio_to_floor": target(
            f"<= {CPU_RATIO_TO_FLOOR_AT_LIGHT:g}",
            light,
            light is not None and light <= CPU_RATIO_TO_FLOOR_AT_LIGHT,
        ),
        f"{at}_p99_ms": target(f"<= {OPEN_P99_MS:g}", p99, p99 is not None and p99 <= OPEN_P99_MS),
        f"{at}_p99_9_ms": target(
            f"<= {OPEN_P99_9_MS:g}", p99_9, p99_9 is not None and p99_9 <= OPEN_P99_9_MS
        ),
        f"{at}_non_200_and_errors": target("== 0", failed, failed == 0),
        "peak_rss_mib": target(
            f"<= {PEAK_RSS_MIB:g}",
            peak_rss_mib,
            peak_rss_mib is not None and peak_rss_mib <= PEAK_RSS_MIB,
        ),
        "records_lost": target("== 0", records_lost, records_lost == 0),
    }
