"""The benchmark's plain servers: bench/bare_server.py and bench/floor_server.py, each a process
of its own on the relay's cpu, on a free loopback port, ready when that port accepts (neither has
a readiness endpoint), stopped with SIGTERM.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.cpus import RELAY_CPU, on_cpu
from bench.progress import BenchError
from devsupport.ports import LOOPBACK, free_port

REPO = Path(__file__).resolve().parent.parent


class PlainServer:
    """`python -m <module> --port P --token T <args>`, from the repository root."""

    def __init__(
        self, module: str, args: list[str], *, token: str, log_path: Path, pinned: bool
    ) -> None:
        self.module = module
        self.port = free_port()
        self.log_path = log_path
        self.command = on_cpu(
            [sys.executable, "-m", module, "--port", str(self.port), "--token", token, *args],
            RELAY_CPU,
            pinned,
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/webhook"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, within: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.module} exited at start: see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), 0.5):
                return
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.module} did not listen within {within:g} s: see {self.log_path}")

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
