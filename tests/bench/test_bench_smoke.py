"""The benchmark harness, run for a few seconds so it never rots (the full `make bench` is not
part of the suite).

It runs `python -m bench --smoke` as users run `make bench`: the real relay (`whatsapp-relay
serve`) in a subprocess, the Go load generator, a closed loop and one open-loop rate (half of
what the closed loop acknowledged), each followed by the same phase against the stack's floor
(bench/floor_server.py), then the relay and the floor at once on one core, then the same closed
loop against a second relay (`--compare-cmd`, here the same version) and the two at once, then
the same phases with every request spooled
(`spool.after_seconds: 0`), then reads every topic back and reconciles. Only
correctness is asserted: the run completed, no acknowledged webhook is missing from Kafka, and
each figure the result promises is there. Timings are never asserted; they depend on the
machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LOADGEN = REPO / "bench" / "bin" / "loadgen"


def test_bench_smoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    if shutil.which("go") is None and not LOADGEN.exists():
        pytest.skip("Go is needed to build the benchmark's load generator (bench/loadgen)")
    output = tmp_path / "smoke.json"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--rates",
            "0.5x",
            "--floor",
            "--compare-cmd",
            f"{sys.executable} -m relay serve --config {{config}}",
            "--output",
            str(output),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, report
    result = json.loads(output.read_text())

    assert result["ok"], report
    assert result["problems"] == [], report
    recon = result["reconciliation"]
    assert recon["ok"], report
    assert recon["answered_200"] > 0, report
    assert sum(recon["lost"].values()) == 0, report
    assert recon["foreign"] == 0, report
    assert recon["misrouted"] == {}, report
    # Every 200 has its records, type by type. (More is allowed only for requests that got no
    # 200, which the harness has checked: at least once.)
    for event_type, expected in recon["expected"].items():
        assert recon["found"][event_type] >= expected, report
    assert all(recon["expected"][t] > 0 for t in ("message", "status")), report
    assert recon["records_consumed"] == sum(recon["found"].values()), report

    phases = result["closed_loop"] + result["open_loop"]
    assert [p["mode"] for p in phases] == ["closed", "open"], report
    for phase in phases:
        assert phase["acked_rps"] > 0, report
        assert phase["by_status"].get("200", 0) > 0, report
    assert result["relay"]["exit_code"] == 0, report

    # The open-loop rate is half of what the closed loop acknowledged, rounded (from the
    # unrounded figure: within 1 of half the one in the result).
    closed, opened = phases
    assert opened["name"] == "open-0.5x", report
    assert opened["offered_of_closed"] == 0.5, report
    assert abs(opened["offered_rps"] - 0.5 * closed["acked_rps"]) <= 1, report
    # The relay reports its event-loop lag; each phase has its samples (one per 100 ms).
    for phase in phases:
        assert phase["event_loop_lag"]["samples"] > 0, report

    # The comparison relay: its own closed loop, reconciled as strictly, and the ratios.
    comparison = result["comparison"]
    assert comparison["closed_loop"]["name"] == "compare", report
    assert comparison["closed_loop"]["connections"] == closed["connections"], report
    assert comparison["closed_loop"]["by_status"].get("200", 0) > 0, report
    assert comparison["reconciliation"]["ok"], report
    assert comparison["reconciliation"]["answered_200"] > 0, report
    assert comparison["relay"]["exit_code"] == 0, report
    assert comparison["versus"]["acked_rps_ratio"] > 0, report
    assert comparison["versus"]["cpu_seconds_per_1000_requests_lower_by"] is not None, report
    assert result["targets"] is None, report  # a smoke run evaluates none
    # ... and both at once: the relay and the compared one on one core.
    (paired_compare,) = comparison["paired"]
    assert paired_compare["mode"] == "closed", report
    assert paired_compare["ratio_median"] > 0, report

    # The floor: the relay's phases against bench/floor_server.py, reconciled (one record per
    # 200), and the relay against it, both at once.
    floor = result["floor"]
    assert_the_same_phases(floor, "floor", opened, report)
    for phase in floor["closed_loop"] + floor["open_loop"]:
        assert phase["relay"]["cpu_seconds_per_1000_requests"] > 0, report
    (paired_floor,) = floor["paired"]  # no 1,000/s phase in this run: the closed loop only
    assert paired_floor["versus"] == "floor", report
    (one_round,) = paired_floor["rounds"]
    assert one_round["relay"]["acked_rps"] > 0, report
    assert one_round["floor"]["acked_rps"] > 0, report
    assert paired_floor["ratio_median"] == one_round["ratio"], report

    # The spooled path: the same phases, every request fsynced in the spool before its 200,
    # then drained to Kafka and reconciled as strictly.
    spool = result["spool"]
    assert_the_same_phases(spool, "spool", opened, report)
    commit = spool["group_commit"]
    assert commit["requests"] >= spool["reconciliation"]["answered_200"], report
    assert 0 < commit["commits"] <= commit["requests"], report
    assert spool["relay"]["exit_code"] == 0, report


def assert_the_same_phases(
    section: dict[str, Any], prefix: str, opened: dict[str, Any], report: str
) -> None:
    """The relay's phases run again (by the floor, by the spooling relay): at the same load,
    answered, reconciled."""
    phases = section["closed_loop"] + section["open_loop"]
    assert [p["name"] for p in phases] == [f"{prefix}-closed", f"{prefix}-open-0.5x"], report
    assert phases[1]["offered_rps"] == opened["offered_rps"], report  # the same load
    for phase in phases:
        assert phase["by_status"].get("200", 0) > 0, report
    assert section["reconciliation"]["ok"], report
    assert section["reconciliation"]["answered_200"] > 0, report
