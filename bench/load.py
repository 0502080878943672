"""The load: building the Go load generator (bench/loadgen), and running one phase with it.

It is Go rather than Python so that the generator is never the bottleneck on its one core;
docs/benchmark.md says how it was checked against wrk. It writes its measurements to a JSON
file, which `Running.result()` returns as is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpus import LOAD_CPU, on_cpu
from bench.progress import BenchError, log

SOURCE_DIR = Path(__file__).resolve().parent / "loadgen"
DEFAULT_BINARY = Path(__file__).resolve().parent / "bin" / "loadgen"


@dataclass
class Phase:
    """One measured stretch of load; result is the generator's JSON, relay what /proc saw, lag
    the relay's event-loop lag meanwhile (None: it does not report it)."""

    name: str
    mode: str  # closed | open
    duration: float
    warmup: float
    connections: int
    rate: float | None = None
    of_closed: float | None = None  # the rate as a fraction of the closed loop's acked/s
    # open loop: how requests arrive, "poisson" (independent senders, the default) or
    # "uniform" (one every 1/rate); docs/benchmark.md, "How senders deliver"
    arrivals: str = "poisson"
    result: dict[str, Any] = field(default_factory=dict)
    relay: dict[str, Any] = field(default_factory=dict)
    lag: dict[str, Any] | None = None


def build() -> Path:
    """Build bench/bin/loadgen from bench/loadgen (stdlib only: no network) when it is stale."""
    sources = [*SOURCE_DIR.glob("*.go"), SOURCE_DIR / "go.mod"]
    newest = max(p.stat().st_mtime for p in sources)
    if DEFAULT_BINARY.exists() and DEFAULT_BINARY.stat().st_mtime >= newest:
        return DEFAULT_BINARY
    go = shutil.which("go")
    if not go:
        raise BenchError(
            "the load generator needs Go (https://go.dev/dl/, 1.22 or newer) "
            "to build bench/loadgen; or pass --loadgen PATH to a built binary"
        )
    log("building the load generator (bench/loadgen)")
    DEFAULT_BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0"}
    # Build with the Go that is installed, never a toolchain download; no go.sum to verify.
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("GOFLAGS", "-mod=mod")
    proc = subprocess.run(
        [go, "build", "-trimpath", "-o", str(DEFAULT_BINARY), "."],
        cwd=SOURCE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"go build failed:\n{proc.stdout}{proc.stderr}")
    return DEFAULT_BINARY


@dataclass
class Running:
    """A load generator at work on one phase (bench/paired.py runs two at once)."""

    phase: Phase
    process: subprocess.Popen[str]
    out: Path
    budget: float

    def result(self) -> dict[str, Any]:
        try:
            _, stderr = self.process.communicate(timeout=self.budget)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise BenchError(f"load generator did not finish ({self.phase.name})") from None
        if self.process.returncode != 0:
            raise BenchError(f"load generator failed ({self.phase.name}):\n{stderr[-3000:]}")
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result


# Starts the generator on a phase against a URL (the harness's, with the run's payloads, token,
# cpus and work dir bound).
Start = Callable[[Phase, str], "Running"]


def start_phase(
    binary: Path,
    phase: Phase,
    *,
    url: str,
    token: str,
    payload_file: Path,
    request_timeout: float,
    workdir: Path,
    pinned: bool,
) -> Running:
    """Start the generator on one phase and return at once."""
    out = workdir / f"{phase.name}.json"
    cmd = [
        str(binary),
        "run",
        "-url",
        url,
        "-payloads",
        str(payload_file),
        "-token",
        token,
        "-mode",
        phase.mode,
        "-connections",
        str(phase.connections),
        "-duration",
        f"{phase.duration}s",
        "-warmup",
        f"{phase.warmup}s",
        "-timeout",
        f"{request_timeout}s",
        "-out",
        str(out),
        "-label",
        phase.name,
    ]
    if phase.rate is not None:
        cmd += ["-rate", str(phase.rate), "-arrivals", phase.arrivals]
    # Enough for the last requests to time out, and for a slow start on a loaded machine.
    budget = phase.warmup + phase.duration + 2 * request_timeout + 60
    process = subprocess.Popen(
        on_cpu(cmd, LOAD_CPU, pinned),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Running(phase, process, out, budget)
