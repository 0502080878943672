"""The relay as users run it: `whatsapp-relay serve` in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.brokers import free_port

RELAY = [sys.executable, "-m", "relay"]


def http_status(url: str, timeout: float = 5) -> int:
    """The status of a GET to `url` (loopback http only), error statuses included."""
    assert url.startswith("http://127.0.0.1:"), url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class RelayProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *, config: Path | None = None):
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "RELAY_SERVER__HOST": "127.0.0.1",
            "RELAY_SERVER__PORT": str(self.port),
            "RELAY_ADMIN__HOST": "127.0.0.1",
            "RELAY_ADMIN__PORT": str(self.admin_port),
            **env,
        }
        self.args = [*RELAY, "serve", *(["--config", str(config)] if config else [])]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    def admin(self, path: str) -> int:
        return http_status(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2)

    def start(self, *, ready: bool = True, within: float = 30.0) -> RelayProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + within
        wanted = "/readyz" if ready else "/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited {self.process.returncode}:\n{self.log()}")
            try:
                if self.admin(wanted) == 200:
                    return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"relay not {wanted} within {within}s:\n{self.log()}")

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the relay's /metrics, by name and labels (all of them, in order)."""
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        wanted = name
        if labels:
            wanted += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{wanted} not exported")

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, within: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=within)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
