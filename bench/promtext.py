"""The relay's /metrics at the end of a run, as the result file keeps them.

Only whatsapp_relay_* samples, and no histogram buckets or _created timestamps: the result
holds counters and gauges to cross-check against the load generator, not a second copy of
what the run measured itself.
"""

from __future__ import annotations

import re
from collections import defaultdict

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
