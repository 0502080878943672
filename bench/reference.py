"""The scale the relay is compared to: the same closed loop against bench/bare_server.py, the
cheapest useful webhook endpoint (aiohttp + uvloop, bearer check, orjson parse, no Kafka), on
the relay's cpu, with the relay's connections and warm-up (its measured seconds are
--reference-duration: acked/s is a rate, and the bare server's settles within seconds). The gap
between the two is what waiting for Kafka and the relay's work cost; their ratio is information
(docs/benchmark.md, "The floor").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import load
from bench.procstat import proc_cpu_seconds
from bench.progress import BenchError, log
from bench.servers import PlainServer


def measure(
    start: load.Start,
    *,
    duration: float,
    warmup: float,
    connections: int,
    token: str,
    workdir: Path,
    pinned: bool,
    notes: list[str],
) -> dict[str, Any] | None:
    """The reference figures, or None (with a note) when the server does not start."""
    log("reference: bare aiohttp + uvloop handler (token check + orjson parse, no Kafka)")
    server = PlainServer(
        "bench.bare_server", [], token=token, log_path=workdir / "bare.log", pinned=pinned
    )
    try:
        try:
            server.start(within=20)
        except BenchError as exc:
            notes.append(f"reference server failed to start: {exc}")
            return None
        phase = load.Phase("reference", "closed", duration, warmup, connections)
        before = proc_cpu_seconds(server.pid)
        phase.result = start(phase, server.url).result()
        after = proc_cpu_seconds(server.pid)
        m = phase.result["measured"]
        answered = phase.result["answered"]
        return {
            "what": "bench/bare_server.py: aiohttp + uvloop, bearer check, orjson parse, "
            "200; no Kafka",
            "connections": phase.connections,
            "warmup_seconds": phase.warmup,
            "duration_seconds": phase.duration,
            "acked_rps": round(m["ok_rps"], 1),
            "latency_ms": m["latency_ms"],
            "cpu_seconds_per_1000_requests": (
                round((after - before) / answered * 1000, 4)
                if before is not None and after is not None and answered
                else None
            ),
            "non_200": answered - phase.result["by_status"].get("200", 0),
        }
    finally:
        server.stop()
