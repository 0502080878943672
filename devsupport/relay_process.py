"""The relay as users run it: ``whatsapp-relay serve`` in a process of its own, on free loopback
ports, ready when its admin port answers 200, stopped with SIGTERM as Kubernetes stops it.

Tests drive it to check behaviour, the benchmark to measure it, ``scripts/docker-install-check``
to run the image's command. Standard library only (that script runs on any python3).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devsupport.ports import LOOPBACK, free_ports

if TYPE_CHECKING:  # typing.Self is 3.11+; any python3 runs scripts/docker-install-check
    from typing import Self

# The relay of this interpreter, as a command line: no dependency on an installed entry point.
RELAY = (sys.executable, "-m", "relay")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; an HTTP error status is an answer, not an exception."""
    # urlopen also opens file:// and any host: only the loopback servers started here.
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"not a loopback http URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked above
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_status(url: str, timeout: float = 5.0) -> int:
    """The status of a GET (see ``http_get``)."""
    return http_get(url, timeout)[0]


def listen_env(port: int, admin_port: int) -> dict[str, str]:
    """The relay's settings for listening on loopback only, on these ports."""
    return {
        "RELAY_SERVER__HOST": LOOPBACK,
        "RELAY_SERVER__PORT": str(port),
        "RELAY_ADMIN__HOST": LOOPBACK,
        "RELAY_ADMIN__PORT": str(admin_port),
    }


class RelayStartError(RuntimeError):
    """The relay exited during startup, or did not answer 200 in time (it is killed then)."""


@dataclass(frozen=True)
class Stopped:
    exit_code: int
    seconds: float | None  # from SIGTERM to the exit; None if it had exited before
    killed: bool  # it outlived the bound after SIGTERM and was killed


class RelayProcess:
    """One relay process on two free loopback ports (webhooks, admin).

    Its environment is ``base_env`` (default: this process's), then the listening addresses,
    then ``env``: a caller's ``env`` wins. ``command`` replaces ``python -m relay serve`` (an
    installed entry point, a pinned command, the image's ENTRYPOINT); ``config`` adds
    ``--config``. The process writes stdout and stderr to ``log_path`` (appended: a restarted
    relay keeps its earlier log). ``new_session`` keeps a Ctrl-C to the caller from reaching it
    first, so that the caller decides how it stops.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        config: Path | None = None,
        command: Sequence[str] | None = None,
        base_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        self.port, self.admin_port = free_ports(2)
        self.log_path = log_path
        self.env = {
            **(os.environ if base_env is None else base_env),
            **listen_env(self.port, self.admin_port),
            **env,
        }
        serve = [*RELAY, "serve"] if command is None else list(command)
        self.args = [*serve, *(["--config", str(config)] if config else [])]
        self.cwd = cwd
        self.new_session = new_session
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The webhook URL (the relay's default path)."""
        return f"http://{LOOPBACK}:{self.port}/webhook"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def admin_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a path of the admin port (/healthz, /readyz, /metrics)."""
        return http_get(self.admin_url + path, timeout)

    def launch(self) -> None:
        """Start the process and return at once; ``start()`` also waits until it is ready."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )

    def await_admin(self, path: str, *, within: float, period: float = 0.1) -> tuple[int, str]:
        """Poll GET ``path`` until it answers 200, the process exits or ``within`` seconds
        pass; the last answer: its status (0: none) and what it said, for a message."""
        deadline = time.monotonic() + within
        status, said = 0, "no answer"
        while time.monotonic() < deadline and self.alive():
            try:
                status, body = self.admin_get(path, timeout=2.0)
                said = f"{status} {body[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:  # not listening yet
                status, said = 0, str(exc)
            if status == 200:
                break
            time.sleep(period)
        return status, said

    def start(self, *, ready: bool = True, within: float = 30.0) -> Self:
        """Launch and wait until /readyz (or, with ``ready=False``, /healthz) answers 200."""
        self.launch()
        wanted = "/readyz" if ready else "/healthz"
        status, said = self.await_admin(wanted, within=within)
        if status == 200:
            return self
        assert self.process is not None
        if self.process.poll() is not None:
            raise RelayStartError(
                f"the relay exited with code {self.process.returncode} during startup:\n"
                f"{self.log_tail()}"
            )
        # A relay that never became ready is of no use to anyone: do not leave it running.
        self.kill()
        raise RelayStartError(
            f"the relay did not answer {wanted} with 200 within {within} s "
            f"(last: {said}):\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None, "not started"
        self.process.send_signal(signum)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def wait(self, within: float) -> int:
        assert self.process is not None, "not started"
        return self.process.wait(timeout=within)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, within: float = 30.0) -> Stopped | None:
        """SIGTERM, as Kubernetes stops it, then SIGKILL if it outlives ``within`` seconds;
        None if it was never started."""
        if self.process is None:
            return None
        seconds = None
        killed = False
        if self.process.poll() is None:
            sent = time.monotonic()
            self.terminate()
            try:
                self.process.wait(timeout=within)
            except subprocess.TimeoutExpired:
                self.kill()
                killed = True
            seconds = time.monotonic() - sent
        return Stopped(self.process.returncode, seconds, killed)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the relay's /metrics, by name and labels (all of them, in order)."""
        status, body = self.admin_get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return sample(body.decode(), name, **labels)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def sample(exposition: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition, by name and labels (all of them, in the
    order they are exported)."""
    wanted = name
    if labels:
        wanted += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in exposition.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{wanted} not exported")
