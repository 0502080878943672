"""The result of a run, as one JSON document (schema 2, described in docs/benchmark.md).

Everything a reader needs to judge the figures travels with them: the settings, the payload
mix, each phase's latencies, costs and event-loop lag, the reference and the comparison relay
with their ratios, the reconciliation, the relay's own metrics, the targets, the versions and
the machine, and notes on anything that skewed the run.
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
from bench import spool as spooling
from bench import targets
from bench.cpus import LOAD_CPU, RELAY_CPU
from bench.floor import WHAT, Floor
from bench.load import Phase
from bench.procstat import loadavg, machine_info
from bench.session import RelaySession


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
        "offered_of_closed": ph.of_closed,
        "throughput_rps": round(m["throughput_rps"], 1),
        "acked_rps": round(m["ok_rps"], 1),
        "latency_ms": {k: round(v, 3) for k, v in m["latency_ms"].items()},
        "requests": r["sent"],
        "answered": r["answered"],
        "by_status": r["by_status"],
        "errors": r["errors"],
        "non_200": r["answered"] - r["by_status"].get("200", 0),
        "relay": ph.relay,
        # None: the relay does not export its loop lag (an older version), which is not zero.
        "event_loop_lag": ph.lag,
        "loadgen_cpu_seconds": round(
            r["loadgen"]["cpu_user_seconds"] + r["loadgen"]["cpu_system_seconds"], 3
        ),
        "histogram": m["histogram"],
        "per_second": m["per_second"],
    }
    if ph.mode == "open":
        out["arrivals"] = ph.arrivals
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


def relay_summary(session: RelaySession) -> dict[str, Any]:
    info = session.info
    answered = sum(p.result["answered"] for p in session.phases)
    return {
        **info,
        "requests_total": answered,
        "cpu_seconds_per_1000_requests": (
            round(info["cpu_seconds_total"] / answered * 1000, 4)
            if info.get("cpu_seconds_total") and answered
            else None
        ),
    }


def comparison(
    compare: RelaySession, main_closed: dict[str, Any], paired: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The --compare-cmd relay's closed loop, the relay's against it, and both at once."""
    closed = phase_summary(compare.phases[0])
    return {
        "command": compare.info["command"],
        "closed_loop": closed,
        "versus": targets.versus(main_closed, closed),
        "paired": paired,
        "relay": relay_summary(compare),
        "reconciliation": compare.recon,
        "metrics": compare.metrics,
    }


def spool_summary(spooled: RelaySession, info: dict[str, Any]) -> dict[str, Any]:
    """The spooled path's phases, what its group commits cost, and its reconciliation."""
    return {
        **info,
        "closed_loop": [phase_summary(p) for p in spooled.phases if p.mode == "closed"],
        "open_loop": [phase_summary(p) for p in spooled.phases if p.mode == "open"],
        "group_commit": spooling.group_commits(spooled.metrics, info.get("commit_ms")),
        "relay": relay_summary(spooled),
        "reconciliation": spooled.recon,
        "metrics": spooled.metrics,
    }


def floor_summary(
    floor: Floor, main: list[dict[str, Any]], paired: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The floor's phases, the relay's against each (phase by phase: information), and the
    paired ratios the targets use."""
    phases = [phase_summary(p) for p in floor.phases]
    by_name = {p["name"].removeprefix("floor-"): p for p in phases}
    versus = {}
    for mine in main:
        theirs = by_name.get(mine["name"])
        if theirs is not None:
            versus[mine["name"]] = {
                "acked_rps_ratio": targets.ratio(mine["acked_rps"], theirs["acked_rps"]),
                "cpu_seconds_per_1000_requests_ratio": targets.ratio(
                    mine["relay"].get("cpu_seconds_per_1000_requests"),
                    theirs["relay"].get("cpu_seconds_per_1000_requests"),
                ),
            }
    return {
        "what": WHAT,
        "command": floor.command,
        "closed_loop": [p for p in phases if p["mode"] == "closed"],
        "open_loop": [p for p in phases if p["mode"] == "open"],
        "versus_phase_by_phase": versus,
        "paired": paired,
        "peak_rss_mib": floor.peak_rss_mib,
        "reconciliation": floor.recon,
    }


def paired_ratio(paired: list[dict[str, Any]] | None, mode: str) -> float | None:
    for section in paired or ():
        if section["mode"] == mode:
            value: float | None = section["ratio_median"]
            return value
    return None


def build(
    args: argparse.Namespace,
    *,
    run_id: str,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    pinned: bool,
    payloads: list[payload_gen.Payload],
    main: RelaySession,
    compare: RelaySession | None,
    spooled: tuple[RelaySession, dict[str, Any]] | None,
    reference: dict[str, Any] | None,
    floor: Floor | None,
    paired_floor: list[dict[str, Any]] | None,
    paired_compare: list[dict[str, Any]] | None,
    kafka_version: str | None,
    busy_before_run: dict[str, float] | None,
    notes: list[str],
    problems: list[str],
) -> dict[str, Any]:
    closed = [phase_summary(p) for p in main.phases if p.mode == "closed"]
    opened = [phase_summary(p) for p in main.phases if p.mode == "open"]
    if reference:
        reference["relay_closed_loop_ratio"] = targets.ratio(
            closed[0]["acked_rps"], reference["acked_rps"]
        )
    compared = comparison(compare, closed[0], paired_compare) if compare else None
    floored = floor_summary(floor, closed + opened, paired_floor) if floor else None
    relay = relay_summary(main)
    # A few seconds on a shared runner say nothing about the targets.
    goals = None
    if not args.smoke:
        goals = targets.evaluate(
            closed_ratio_to_floor=paired_ratio(paired_floor, "closed"),
            cpu_ratio_to_floor_at_light=paired_ratio(paired_floor, "open"),
            open_phase=next(
                (o for o in opened if o["offered_of_closed"] == targets.OPEN_OF_CLOSED), None
            ),
            peak_rss_mib=relay.get("peak_rss_mib"),
            records_lost=sum(main.recon["lost"].values()),
        )
    return {
        "schema": 2,
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
            "topics": main.topics,
            "partitions": args.partitions,
            "payload_count": args.payload_count,
            "seed": args.seed,
            "request_timeout_seconds": args.request_timeout,
            "relay_env": args.relay_env,
            "arrivals": args.arrivals,
            "paired_rounds": args.paired_rounds if floor else None,
        },
        "payloads": payload_gen.summary(payloads),
        "closed_loop": closed,
        "open_loop": opened,
        "reference": reference,
        "floor": floored,
        "comparison": compared,
        "spool": spool_summary(*spooled) if spooled else None,
        "relay": relay,
        "reconciliation": main.recon,
        "metrics": main.metrics,
        "targets": goals,
        "versions": {
            "python": platform.python_version(),
            "whatsapp_relay": pkg_version("whatsapp-relay"),
            "aiohttp": pkg_version("aiohttp"),
            "aiokafka": pkg_version("aiokafka"),
            "orjson": pkg_version("orjson"),
            "uvloop": pkg_version("uvloop"),
            "kafka_broker": kafka_version,
            "go": main.phases[0].result["loadgen"].get("go_version"),
        },
        "machine": {
            **machine_info(),
            "busy_before_run": busy_before_run,
            "loadavg_at_end": loadavg(),
        },
    }
