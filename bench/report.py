"""The result of a run, as one JSON document (schema 1, described in docs/benchmark.md).

Everything a reader needs to judge the figures travels with them: the settings, the payload
mix, each phase's latencies and costs, the reconciliation, the relay's own metrics, the
versions and the machine, and notes on anything that skewed the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import payloads as payload_gen
from bench.cpus import LOAD_CPU, RELAY_CPU
from bench.load import Phase
from bench.procstat import loadavg, machine_info

# The targets, reported (never enforced: timings depend on the machine).
TARGET_THROUGHPUT = 10_000
TARGET_P99_RATE = 5_000
TARGET_P99_MS = 10.0
TARGET_RSS_MIB = 100.0


def pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def command_line() -> str:
    """How to run this again (argv[0] is bench/__main__.py under `python -m bench`)."""
    return shlex.join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]])


def phase_summary(ph: Phase) -> dict[str, Any]:
    r, m = ph.result, ph.result["measured"]
    out = {
        "name": ph.name,
        "mode": ph.mode,
        "connections": ph.connections,
        "duration_seconds": ph.duration,
        "warmup_seconds": ph.warmup,
        "offered_rps": ph.rate,
        "throughput_rps": round(m["throughput_rps"], 1),
        "acked_rps": round(m["ok_rps"], 1),
        "latency_ms": {k: round(v, 3) for k, v in m["latency_ms"].items()},
        "requests": r["sent"],
        "answered": r["answered"],
        "by_status": r["by_status"],
        "errors": r["errors"],
        "non_200": r["answered"] - r["by_status"].get("200", 0),
        "relay": ph.relay,
        "loadgen_cpu_seconds": round(
            r["loadgen"]["cpu_user_seconds"] + r["loadgen"]["cpu_system_seconds"], 3
        ),
        "histogram": m["histogram"],
        "per_second": m["per_second"],
    }
    if ph.mode == "open":
        out["service_time_ms"] = {k: round(v, 3) for k, v in m["service_time_ms"].items()}
        out["send_lag_ms"] = {k: round(v, 3) for k, v in m["send_lag_ms"].items()}
        out["late_sends"] = m["late"]
        out["late_threshold_ms"] = m["late_threshold_ms"]
        out["max_inflight"] = m["max_inflight"]
        out["connection_pool_exhausted"] = m["pool_exhausted"]
        # The relay did not keep up with the schedule: requests queued for a free
        # connection, or the answers came in slower than offered.
        out["saturated"] = bool(m["pool_exhausted"] or m["ok_rps"] < 0.97 * (ph.rate or 0))
    return out


def targets(
    closed: list[dict[str, Any]], opened: list[dict[str, Any]], peak_rss_mib: float | None
) -> dict[str, Any]:
    at_target = next((o for o in opened if o["offered_rps"] == TARGET_P99_RATE), None)
    best = max((c["acked_rps"] for c in closed), default=None)
    return {
        "throughput_rps": {
            "target": f">= {TARGET_THROUGHPUT}",
            "value": best,
            "met": best is not None and best >= TARGET_THROUGHPUT,
        },
        f"p99_ms_at_{TARGET_P99_RATE}_rps": {
            "target": f"<= {TARGET_P99_MS}",
            "value": at_target["latency_ms"]["p99"] if at_target else None,
            "met": (
                at_target is not None
                and at_target["latency_ms"]["p99"] <= TARGET_P99_MS
                and at_target["non_200"] == 0
                and not sum(at_target["errors"].values())
            ),
        },
        "peak_rss_mib": {
            "target": f"<= {TARGET_RSS_MIB:g}",
            "value": peak_rss_mib,
            "met": peak_rss_mib is not None and peak_rss_mib <= TARGET_RSS_MIB,
        },
    }


def build(
    args: argparse.Namespace,
    *,
    run_id: str,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    pinned: bool,
    topics: dict[str, str],
    payloads: list[payload_gen.Payload],
    phases: list[Phase],
    relay_info: dict[str, Any],
    reference: dict[str, Any] | None,
    recon: dict[str, Any],
    metrics: dict[str, Any],
    kafka_version: str | None,
    busy_before_run: dict[str, float] | None,
    notes: list[str],
    problems: list[str],
) -> dict[str, Any]:
    closed = [phase_summary(p) for p in phases if p.mode == "closed"]
    opened = [phase_summary(p) for p in phases if p.mode == "open"]
    # A few seconds on a shared runner say nothing about the targets.
    goals = None if args.smoke else targets(closed, opened, relay_info.get("peak_rss_mib"))
    total_answered = sum(p.result["answered"] for p in phases)
    return {
        "schema": 1,
        "ok": not problems,
        "problems": list(problems),
        "notes": notes,
        "run_id": run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "command": command_line(),
        "smoke": args.smoke,
        "settings": {
            "pinned": pinned,
            "relay_cpu": RELAY_CPU if pinned else None,
            "broker_and_load_cpu": LOAD_CPU if pinned else None,
            "topics": topics,
            "partitions": args.partitions,
            "payload_count": args.payload_count,
            "seed": args.seed,
            "request_timeout_seconds": args.request_timeout,
            "relay_env": args.relay_env,
        },
        "payloads": payload_gen.summary(payloads),
        "closed_loop": closed,
        "open_loop": opened,
        "reference": reference,
        "relay": {
            **relay_info,
            "requests_total": total_answered,
            "cpu_seconds_per_1000_requests": (
                round(relay_info["cpu_seconds_total"] / total_answered * 1000, 4)
                if relay_info.get("cpu_seconds_total") and total_answered
                else None
            ),
        },
        "reconciliation": recon,
        "metrics": metrics,
        "targets": goals,
        "versions": {
            "python": platform.python_version(),
            "whatsapp_relay": pkg_version("whatsapp-relay"),
            "aiohttp": pkg_version("aiohttp"),
            "aiokafka": pkg_version("aiokafka"),
            "orjson": pkg_version("orjson"),
            "uvloop": pkg_version("uvloop"),
            "kafka_broker": kafka_version,
            "go": phases[0].result.get("loadgen", {}).get("go_version") if phases else None,
        },
        "machine": {
            **machine_info(),
            "busy_before_run": busy_before_run,
            "loadavg_at_end": loadavg(),
        },
    }
