"""The relay under test, run as production runs it: `whatsapp-relay serve --config FILE` in its
own process (own session, so a signal to the harness does not reach it first), on free loopback
ports, ready when its admin port answers /readyz with 200.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.cpus import RELAY_CPU, on_cpu
from bench.progress import BenchError, log
from relay.config import ConfigError, Settings, parse

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """count distinct unused loopback ports.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the same
    port twice. (The same as tests/brokers.free_ports: bench keeps its own copy until tests,
    bench and scripts share one development-support module.)
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def relay_command(config: Path, relay_cmd: str | None) -> list[str]:
    """The installed whatsapp-relay next to this Python, or the user's --relay-cmd."""
    if relay_cmd:
        return [part.replace("{config}", str(config)) for part in shlex.split(relay_cmd)]
    exe = Path(sys.executable).parent / "whatsapp-relay"
    if not exe.exists():
        found = shutil.which("whatsapp-relay")
        if not found:
            raise BenchError(
                "whatsapp-relay is not installed next to this Python "
                f"({exe}); run `make .venv/.installed` (`make bench` does it too) "
                "or pass --relay-cmd"
            )
        exe = Path(found)
    return [str(exe), "serve", "--config", str(config)]


class RelayProcess:
    """Configuration, start, readiness and stop of one relay process."""

    def __init__(
        self,
        workdir: Path,
        *,
        bootstrap: str,
        token: str,
        topics: dict[str, str],
        partitions: int,
        relay_env: list[str],
    ) -> None:
        port, admin_port = free_ports(2)
        self.url = f"http://{LOOPBACK}:{port}/webhook"
        self.admin = f"http://{LOOPBACK}:{admin_port}"
        self.config = workdir / "relay.yaml"
        self.log = workdir / "relay.log"
        # Production settings: only what a bench must change (addresses, token, topics, log
        # level). acks=all and idempotence are not switches: the relay always uses them.
        settings = {
            "server": {"host": LOOPBACK, "port": port, "path": "/webhook", "access_log": False},
            "admin": {"host": LOOPBACK, "port": admin_port},
            "auth": {"bearer_tokens": [token]},
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {**topics, "partitions": partitions},
            "log": {"level": "WARNING"},
        }
        self.config.write_text(json.dumps(settings, indent=2) + "\n")  # JSON is YAML
        # A clean environment for the relay: inherited RELAY_* variables would silently change
        # what is measured; deliberate ones come from --relay-env.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        for item in relay_env:
            key, sep, value = item.partition("=")
            if not sep:
                raise BenchError(f"--relay-env wants KEY=VALUE, got {item!r}")
            self.env[key] = value
        self.command: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def settings(self) -> Settings:
        """The configuration as the relay will read it (file plus --relay-env)."""
        try:
            return parse(self.config.read_text(), self.env)
        except ConfigError as exc:
            raise BenchError(str(exc)) from exc

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, relay_cmd: str | None, *, pinned: bool, ready_timeout: float) -> None:
        cmd = on_cpu(relay_command(self.config, relay_cmd), RELAY_CPU, pinned)
        self.command = cmd
        log(f"starting the relay: {shlex.join(cmd)}")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"the relay exited with code {self.proc.returncode} during startup:\n"
                    f"{tail(self.log)}"
                )
            try:
                status, body = http_get(self.admin + "/readyz", timeout=1.0)
                if status == 200:
                    log(f"relay ready (pid {self.proc.pid})")
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise BenchError(
            f"the relay was not ready within {ready_timeout} s "
            f"(last /readyz: {last}):\n{tail(self.log)}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def scrape(self, path: str) -> tuple[int, bytes]:
        """GET a path of the admin port (/metrics)."""
        return http_get(self.admin + path, timeout=5)

    def stop(self) -> tuple[dict[str, Any], list[str]]:
        """SIGTERM, as Kubernetes stops it; returns how it went and any problem with that."""
        info: dict[str, Any] = {}
        problems: list[str] = []
        if self.proc is None:
            return info, problems
        if self.proc.poll() is None:
            started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                info["killed"] = True
                problems.append("the relay did not exit within 30 s of SIGTERM")
            info["shutdown_seconds"] = round(time.monotonic() - started, 2)
        info["exit_code"] = self.proc.returncode
        if self.proc.returncode not in (0, -signal.SIGTERM):
            problems.append(f"the relay exited with code {self.proc.returncode}")
        self.proc = None
        return info, problems
