"""Ratios the machine's drifting speed cannot skew: the relay and another server (the floor, or
the --compare-cmd relay) measured at the same moments, on the same core, under the same load.

The VMs this benchmark runs on change speed from minute to minute (the same relay's closed loop
measured 5,151 and 9,534 acked/s within half an hour, docs/benchmark.md): two servers measured
one after the other differ by as much for no reason of their own, and a 10% target cannot be
judged that way. Here each server gets its own load generator, and both generators start
together; the two servers are pinned to the relay's cpu (the generators and the broker to the
other), so whatever the core's speed does, it does to both at once.

- closed: each server gets half of the closed loop's connections. Both are busy all the time,
  so the scheduler gives each half of the core, and each one's acked/s is what half a core buys
  of it: their ratio is the ratio of what one request costs each (measured: within 2% from
  round to round, where one-after-the-other rounds spread over 30%).
- open at a rate: each server gets the whole rate (a light load: the core is not saturated, so
  each request is served as it would be alone), and the ratio is of their CPU seconds per
  1,000 requests.

A few rounds of each (`--paired-rounds`), whose median the targets use; the range says how far
apart they were.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bench import load
from bench.procstat import proc_cpu_seconds
from bench.progress import log


def _round(
    phase: load.Phase,
    sides: dict[str, tuple[str, int | None]],
    run: Callable[[load.Phase, str], load.Running],
    account: Callable[[str, dict[str, Any]], None],
) -> dict[str, Any]:
    """One round: the phase against both sides (url, pid) at once; each one's figures."""
    before = {side: proc_cpu_seconds(pid) for side, (_, pid) in sides.items()}
    running = {
        side: run(replace(phase, name=f"{phase.name}-{side}"), url)
        for side, (url, _) in sides.items()
    }
    results = {side: r.result() for side, r in running.items()}
    figures = {}
    for side, (_, pid) in sides.items():
        result, start, end = results[side], before[side], proc_cpu_seconds(pid)
        account(side, result)  # its 200s are reconciled with the rest of that server's
        answered = result["answered"]
        cost = None
        if start is not None and end is not None and answered:
            cost = round((end - start) / answered * 1000, 4)
        figures[side] = {
            "acked_rps": round(result["measured"]["ok_rps"], 1),
            "cpu_seconds_per_1000_requests": cost,
            "non_200": answered - result["by_status"].get("200", 0),
        }
    return figures


def measure(
    phase: load.Phase,
    *,
    rounds: int,
    relay: tuple[str, int | None],
    other: tuple[str, str, int | None],
    run: Callable[[load.Phase, str], load.Running],
    account: Callable[[str, dict[str, Any]], None],
) -> dict[str, Any]:
    """`rounds` simultaneous rounds of `phase` (closed: its connections split in two) against
    the relay (url, pid) and another server (name, url, pid: the floor, or the --compare-cmd
    relay); the ratios of the relay's figures to the other's, each round and their median.
    `run` starts the generator on a phase and a URL; `account` gets each side's result."""
    if phase.mode == "closed":
        phase = replace(phase, connections=max(1, phase.connections // 2))
    name, url, pid = other
    label = f"paired {phase.mode} loop" + (f" at {phase.rate:g}/s" if phase.rate else "")
    log(f"{label}: relay and {name} at once on one core, {rounds} rounds of {phase.duration:g} s")
    sides = {"relay": relay, name: (url, pid)}
    done = [_round(phase, sides, run, account) for _ in range(rounds)]
    key = "acked_rps" if phase.mode == "closed" else "cpu_seconds_per_1000_requests"
    ratios = []
    for r in done:
        mine, theirs = r["relay"][key], r[name][key]
        r["ratio"] = round(mine / theirs, 3) if mine is not None and theirs else None
        if r["ratio"] is not None:
            ratios.append(r["ratio"])
    return {
        "versus": name,
        "mode": phase.mode,
        "rate": phase.rate,
        "arrivals": phase.arrivals if phase.mode == "open" else None,
        "connections_each": phase.connections,
        "duration_seconds": phase.duration,
        "warmup_seconds": phase.warmup,
        "ratio_of": key,
        "rounds": done,
        "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_range": [min(ratios), max(ratios)] if ratios else None,
    }
