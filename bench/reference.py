"""The scale the relay is compared to: the same closed loop against bench/bare_server.py, the
cheapest useful webhook endpoint (aiohttp + uvloop, bearer check, orjson parse, no Kafka), on
the relay's cpu, with the relay's connections and warm-up (its measured seconds are
--reference-duration: acked/s is a rate, and the bare server's settles within seconds). The gap
between the two figures is what the relay's work costs; their ratio is one of the benchmark's
targets (docs/benchmark.md).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.cpus import RELAY_CPU, on_cpu
from bench.procstat import proc_cpu_seconds
from bench.progress import log
from devsupport.ports import LOOPBACK, free_port

BARE_SERVER = Path(__file__).resolve().parent / "bare_server.py"


def measure(
    loadgen_bin: Path,
    *,
    duration: float,
    warmup: float,
    connections: int,
    token: str,
    payload_file: Path,
    request_timeout: float,
    workdir: Path,
    pinned: bool,
    notes: list[str],
) -> dict[str, Any] | None:
    """The reference figures, or None (with a note) when the server does not start."""
    port = free_port()
    cmd = [sys.executable, str(BARE_SERVER), "--port", str(port), "--token", token]
    log("reference: bare aiohttp + uvloop handler (token check + orjson parse, no Kafka)")
    proc = subprocess.Popen(
        on_cpu(cmd, RELAY_CPU, pinned),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # It has no readiness endpoint: listening is ready.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, port), timeout=0.5),
            ):
                break
            if proc.poll() is not None:
                notes.append("reference server failed to start")
                return None
            time.sleep(0.1)
        phase = load.Phase("reference", "closed", duration, warmup, connections)
        before = proc_cpu_seconds(proc.pid)
        phase.result = load.run_phase(
            loadgen_bin,
            phase,
            url=f"http://{LOOPBACK}:{port}/webhook",
            token=token,
            payload_file=payload_file,
            request_timeout=request_timeout,
            workdir=workdir,
            pinned=pinned,
        )
        after = proc_cpu_seconds(proc.pid)
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
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
