"""Which core runs what: the relay alone on one, the broker and the load generator on the other.

Pinning makes "one core" in the results literal (the relay cannot borrow the generator's core)
and keeps the figures comparable between runs. `taskset` does it, from util-linux.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

RELAY_CPU = 0
LOAD_CPU = 1


def pinning_problem() -> str | None:
    """Why this machine cannot pin the run (None: it can)."""
    cpus = os.sched_getaffinity(0)
    if {RELAY_CPU, LOAD_CPU} <= cpus and shutil.which("taskset"):
        return None
    return (
        f"pinning disabled: needs taskset and cpus {RELAY_CPU} and {LOAD_CPU} (have {sorted(cpus)})"
    )


def on_cpu(cmd: list[str], cpu: int, pinned: bool) -> list[str]:
    """cmd, started on one cpu when the run is pinned."""
    return ["taskset", "-c", str(cpu), *cmd] if pinned else cmd


def pin(pid: int, cpu: int) -> str | None:
    """Pin every thread of a running process to one cpu; returns the previous affinity list,
    for unpin(). Raises CalledProcessError (with stderr) when taskset refuses."""
    previous = None
    with contextlib.suppress(OSError):
        previous = ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))
    subprocess.run(
        ["taskset", "-a", "-p", "-c", str(cpu), str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return previous


def unpin(pid: int, cpus: str) -> None:
    """Give a process (a broker that outlives the run) its previous affinity back."""
    subprocess.run(
        ["taskset", "-a", "-p", "-c", cpus, str(pid)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
