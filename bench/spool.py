"""The spooled path, measured next to the direct one: the relay with `spool.enabled` and
`spool.after_seconds: 0`, so that every request is answered once its frame is fsynced (group
commit) and the drainer delivers it to Kafka meanwhile. It runs the direct path's closed loop
and open-loop rates, then waits for the spool to drain before it stops, so that its records
are reconciled as strictly (docs/benchmark.md, "The spooled path").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.looplag import lag_during
from bench.progress import BenchError, log
from bench.promtext import Histogram, parse_histogram, parse_metrics
from bench.session import RelaySession

COMMIT_METRIC = "whatsapp_relay_spool_commit_duration_seconds"
DRAIN_BOUND_S = 120.0


def relay_env(directory: Path) -> list[str]:
    """What makes the relay spool every request, in `directory` (on the disk measured)."""
    return [
        "RELAY_SPOOL__ENABLED=true",
        f"RELAY_SPOOL__DIRECTORY={directory}",
        "RELAY_SPOOL__AFTER_SECONDS=0",
    ]


def commit_histogram(session: RelaySession) -> Histogram | None:
    status, body = session.relay.scrape("/metrics")
    return parse_histogram(body.decode(errors="replace"), COMMIT_METRIC) if status == 200 else None


def wait_drained(session: RelaySession) -> float:
    """Seconds from the end of the load until the spool held nothing Kafka had not
    acknowledged."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_BOUND_S:
        status, body = session.relay.scrape("/metrics")
        held = parse_metrics(body.decode(errors="replace")).get("whatsapp_relay_spool_requests")
        if status == 200 and held is not None and held.get("{}") == 0:
            return round(time.monotonic() - started, 2)
        time.sleep(0.2)
    raise BenchError(f"the spool did not drain within {DRAIN_BOUND_S:g} s of the load's end")


def group_commits(metrics: dict[str, Any], commits: dict[str, Any] | None) -> dict[str, Any]:
    """Requests spooled, fsyncs, and what one fsync cost per request."""
    spooled = sum(metrics.get("whatsapp_relay_spool_spooled_total", {}).values())
    count = metrics.get(f"{COMMIT_METRIC}_count", {}).get("{}", 0.0)
    seconds = metrics.get(f"{COMMIT_METRIC}_sum", {}).get("{}", 0.0)
    out: dict[str, Any] = {"requests": int(spooled), "commits": int(count), "commit_ms": commits}
    if count and spooled:
        out["requests_per_commit"] = round(spooled / count, 2)
        out["commit_ms_per_request"] = round(seconds / spooled * 1000, 4)
    return out


def measure_commits(before: Histogram | None, session: RelaySession) -> dict[str, Any] | None:
    after = commit_histogram(session)
    if after is None:
        return None
    if before is None:
        before = Histogram(tuple((le, 0.0) for le, _ in after.buckets), 0.0)
    return lag_during(before, after)


def file_system(directory: Path) -> str:
    """The type of the file system `directory` is on (its longest mount point in
    /proc/mounts), or "unknown"."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    path = str(directory.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def note_disk(directory: Path, notes: list[str]) -> str:
    kind = file_system(directory.parent)
    log(f"spool directory: {directory} ({kind})")
    if kind in ("tmpfs", "ramfs"):
        notes.append(f"the spool directory is on {kind}: its fsync costs nothing, unlike a disk's")
    return kind
