"""The relay under test, run as production runs it: `whatsapp-relay serve --config FILE` in its
own process (own session, so a signal to the harness does not reach it first), on free loopback
ports, ready when its admin port answers /readyz with 200 (devsupport.relay_process starts,
watches and stops it; this module adds what a measurement needs: the configuration, the pinned
command, a clean environment and what the stop says about the run).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from bench.cpus import RELAY_CPU, on_cpu
from bench.progress import BenchError, log
from devsupport.ports import LOOPBACK
from devsupport.relay_process import RelayProcess, RelayStartError
from relay.config import ConfigError, Settings, parse

REPO = Path(__file__).resolve().parent.parent
STOP_WITHIN_S = 30.0


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


def parse_relay_env(relay_env: list[str]) -> dict[str, str]:
    """The --relay-env KEY=VALUE settings."""
    env = {}
    for item in relay_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise BenchError(f"--relay-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


class RelayUnderTest:
    """Configuration, start, readiness and stop of the relay a run measures."""

    def __init__(
        self,
        workdir: Path,
        *,
        bootstrap: str,
        token: str,
        topics: dict[str, str],
        partitions: int,
        relay_env: list[str],
        relay_cmd: str | None,
        pinned: bool,
    ) -> None:
        self.config = workdir / "relay.yaml"
        self.command = on_cpu(relay_command(self.config, relay_cmd), RELAY_CPU, pinned)
        self.process = RelayProcess(
            parse_relay_env(relay_env),
            workdir / "relay.log",
            command=self.command,
            # Inherited RELAY_* variables would silently change what is measured; deliberate
            # ones come from --relay-env.
            base_env={k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
            cwd=REPO,
            new_session=True,
        )
        # Production settings: only what a bench must change (addresses, token, topics, log
        # level). acks=all and idempotence are not switches: the relay always uses them.
        settings = {
            "server": {
                "host": LOOPBACK,
                "port": self.process.port,
                "path": "/webhook",
                "access_log": False,
            },
            "admin": {"host": LOOPBACK, "port": self.process.admin_port},
            "auth": {"bearer_tokens": [token]},
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {**topics, "partitions": partitions},
            "log": {"level": "WARNING"},
        }
        self.config.write_text(json.dumps(settings, indent=2) + "\n")  # JSON is YAML

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def settings(self) -> Settings:
        """The configuration as the relay will read it (file plus environment)."""
        try:
            return parse(self.config.read_text(), self.process.env)
        except ConfigError as exc:
            raise BenchError(str(exc)) from exc

    def start(self, *, ready_timeout: float) -> None:
        log(f"starting the relay: {shlex.join(self.command)}")
        try:
            self.process.start(within=ready_timeout)
        except RelayStartError as exc:
            raise BenchError(str(exc)) from exc
        log(f"relay ready (pid {self.process.pid})")

    def alive(self) -> bool:
        return self.process.alive()

    def scrape(self, path: str) -> tuple[int, bytes]:
        """GET a path of the admin port (/metrics)."""
        return self.process.admin_get(path)

    def tail(self) -> str:
        return self.process.log_tail()

    def stop(self) -> tuple[dict[str, Any], list[str]]:
        """SIGTERM, as Kubernetes stops it; returns how it went and any problem with that."""
        info: dict[str, Any] = {}
        problems: list[str] = []
        stopped = self.process.stop(within=STOP_WITHIN_S)
        if stopped is None:
            return info, problems
        if stopped.killed:
            info["killed"] = True
            problems.append(f"the relay did not exit within {STOP_WITHIN_S:g} s of SIGTERM")
        if stopped.seconds is not None:
            info["shutdown_seconds"] = round(stopped.seconds, 2)
        info["exit_code"] = stopped.exit_code
        if stopped.exit_code not in (0, -signal.SIGTERM):
            problems.append(f"the relay exited with code {stopped.exit_code}")
        return info, problems
