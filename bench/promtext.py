"""The relay's /metrics: at the end of a run, as the result file keeps them, and one histogram
at a time, for what changed in it during a phase.

The kept samples are whatsapp_relay_* ones without histogram buckets or _created timestamps:
the result holds counters and gauges to cross-check against the load generator, not a second
copy of what the run measured itself.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# name{labels} value
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """whatsapp_relay_* samples, histogram buckets left out: {name: {labels: value}}."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        if not line.startswith("whatsapp_relay_"):
            continue
        if "_bucket{" in line or line.split("{")[0].split(" ")[0].endswith("_created"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), (m.group(2) or "{}"), m.group(3)
        try:
            out[name][labels] = float(value)
        except ValueError:
            continue
    return dict(out)


@dataclass(frozen=True)
class Histogram:
    """One unlabelled histogram as scraped: cumulative counts by upper bound (the last one,
    +Inf, counts every observation) and the observations' sum."""

    buckets: tuple[tuple[float, float], ...]
    sum: float


def parse_histogram(text: str, name: str) -> Histogram | None:
    """The histogram `name` in an exposition, or None when the process does not export it."""
    for family in text_string_to_metric_families(text):
        if family.name != name or family.type != "histogram":
            continue
        buckets = [
            (float(sample.labels["le"]), sample.value)  # float("+Inf") is math.inf
            for sample in family.samples
            if sample.name == f"{name}_bucket"
        ]
        total = next((s.value for s in family.samples if s.name == f"{name}_sum"), None)
        if buckets and total is not None:
            return Histogram(tuple(sorted(buckets)), total)
    return None
