"""What /proc says about the run: CPU time and memory of a process tree, how busy each core was,
how much CPU everything else on the machine used meanwhile, and what the machine is.

Linux only, and read-only: the harness samples before and after each phase and reports the
difference, so nothing here runs in the measured processes.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# utime and stime in /proc/<pid>/stat are in clock ticks.
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Per-cpu busy and total jiffies, as read from /proc/stat.
CoreTimes = dict[str, tuple[float, float]]


def descendants(pid: int) -> list[int]:
    """Every process below pid (children of any of its threads, recursively)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                children = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for c in children:
                out.append(int(c))
                stack.append(int(c))
    return out


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return stat[stat.rindex(")") + 2 :].split()


def _cpu_of(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_seconds(pid: int | None, tree: bool = True) -> float | None:
    """utime + stime of a process (all its threads), plus its descendants'."""
    if pid is None:
        return None
    total = 0.0
    found = False
    for p in [pid, *(descendants(pid) if tree else [])]:
        fields = _stat_fields(p)
        if fields is None:
            continue
        total += _cpu_of(fields)
        found = True
    return total if found else None


def proc_memory_kib(pid: int | None) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS), summed over the process and its descendants."""
    out = {"rss": 0, "hwm": 0}
    if pid is None:
        return out
    for p in [pid, *descendants(pid)]:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm"] += int(line.split()[1])
    return out


def cpu_times() -> CoreTimes:
    """Per-cpu (busy, total) jiffies from /proc/stat."""
    out: CoreTimes = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
            total = sum(v[:8])  # guest time is already counted in user
            out[name] = (total - idle, total)
    return out


def busy_fraction(before: CoreTimes, after: CoreTimes) -> dict[str, float]:
    out = {}
    for name, (busy1, total1) in after.items():
        busy0, total0 = before.get(name, (0, 0))
        dt_total = total1 - total0
        out[name] = round((busy1 - busy0) / dt_total, 3) if dt_total > 0 else 0.0
    return out


def other_processes(broker_pid: int | None) -> dict[int, tuple[int, float]]:
    """pid -> (start time, cpu seconds) of every process that is not part of the run: not
    this harness or its children (relay, load generator), not the broker."""
    ours = {os.getpid(), *descendants(os.getpid())}
    if broker_pid:
        ours.add(broker_pid)
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours:
            continue
        fields = _stat_fields(name)
        if fields is None:
            continue
        out[int(name)] = (int(fields[19]), _cpu_of(fields))
    return out


@dataclass
class Sample:
    """One look at the run; two of them give a phase's costs."""

    wall: float
    relay_cpu: float | None
    broker_cpu: float | None
    cores: CoreTimes
    mem: dict[str, int]
    others: dict[int, tuple[int, float]]

    @classmethod
    def take(cls, relay_pid: int | None, broker_pid: int | None) -> Sample:
        return cls(
            wall=time.monotonic(),
            relay_cpu=proc_cpu_seconds(relay_pid),
            # The broker's own threads only: its children (if any) are not serving us.
            broker_cpu=proc_cpu_seconds(broker_pid, tree=False),
            cores=cpu_times(),
            mem=proc_memory_kib(relay_pid),
            others=other_processes(broker_pid),
        )


def other_cpu_seconds(before: Sample, after: Sample) -> float:
    """CPU time other processes used between two samples (those that started in between
    count in full; those that also ended in between are missed)."""
    total = 0.0
    for pid, (start, cpu) in after.others.items():
        prev = before.others.get(pid)
        # Same pid, other start time: the pid was reused by a new process.
        total += cpu - prev[1] if prev and prev[0] == start else cpu
    return total


def uvloop_loaded(pid: int | None) -> bool | None:
    """Whether a process has uvloop's extension mapped (None: cannot tell)."""
    if pid is None:
        return None
    pids = [pid, *descendants(pid)]
    try:
        return any("uvloop" in Path(f"/proc/{p}/maps").read_text() for p in pids)
    except OSError:
        return None


def cpus_allowed(pid: int | None) -> str | None:
    """The cpu list a process may run on, as the kernel reports it (e.g. "0" once pinned)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list"):
                return line.split(":")[1].strip()
    return None


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def machine_info() -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    hypervisor = None
    with contextlib.suppress(OSError):
        hypervisor = " hypervisor " in (
            " " + Path("/proc/cpuinfo").read_text().replace("\n", " ") + " "
        )
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1) if mem_kib else None,
        "kernel": platform.release(),
        "virtualised": hypervisor,
        "hostname": platform.node(),
    }
