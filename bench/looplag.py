"""The relay's event-loop lag during one phase, from its own histogram
(whatsapp_relay_event_loop_lag_seconds: how late the loop woke a task due every 100 ms) scraped
before and after the phase.

A stall of the loop delays every request waiting on it, so a latency tail at a light load shows
here as lag. The histogram keeps counts per bucket, not samples: the p99 and the maximum are
known only up to the bucket they fell in, and are reported as that bucket's upper bound.
"""

from __future__ import annotations

import math
from typing import Any

from bench.promtext import Histogram

METRIC = "whatsapp_relay_event_loop_lag_seconds"


def bucket_bound(deltas: list[tuple[float, float]], rank: int) -> float:
    """The upper bound of the bucket holding the rank-th smallest sample (cumulative deltas)."""
    return next(le for le, cumulative in deltas if cumulative >= rank)


def ms(bound: float) -> float | None:
    # Beyond the largest finite bucket there is no upper bound.
    return None if math.isinf(bound) else round(bound * 1000, 3)


def lag_during(before: Histogram | None, after: Histogram | None) -> dict[str, Any] | None:
    """Samples, mean, and upper bounds of the p99 and the maximum (ms) of the lag observed
    between two scrapes; None when the relay does not export the histogram (nothing is known,
    which is not zero lag) or its counts went backwards (a restart)."""
    if before is None or after is None:
        return None
    if [le for le, _ in before.buckets] != [le for le, _ in after.buckets]:
        return None
    deltas = [(le, a - b) for (le, a), (_, b) in zip(after.buckets, before.buckets, strict=True)]
    # The +Inf bucket counts every sample.
    samples = int(deltas[-1][1])
    if any(d < 0 for _, d in deltas):
        return None
    out: dict[str, Any] = {"samples": samples}
    if samples == 0:
        return out
    out["mean_ms"] = round((after.sum - before.sum) / samples * 1000, 3)
    # Nearest rank: the p99 is the ceil(0.99 n)-th smallest sample; the maximum the n-th.
    p99 = bucket_bound(deltas, math.ceil(0.99 * samples))
    top = bucket_bound(deltas, samples)
    out["p99_le_ms"] = ms(p99)
    out["max_le_ms"] = ms(top)
    finite = [le for le, _ in deltas if not math.isinf(le)]
    if math.isinf(top) and finite:
        # None above means "more than this".
        out["beyond_ms"] = ms(finite[-1])
    return out
