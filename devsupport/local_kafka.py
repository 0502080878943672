"""``scripts/local-kafka`` driven from Python: Apache Kafka's own broker on loopback, one node or
a cluster, with its own state dir and ports, for tests, the benchmark and fault experiments.

``LocalKafka`` is one broker, ``LocalKafkaCluster`` several KRaft nodes whose single nodes can be
killed, paused and restarted. Both keep their data across ``stop()``/``start()`` (the script
formats storage once per state dir), so an outage can be staged and the same cluster brought back.

Everything here blocks (subprocesses); from async code call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from devsupport.ports import LOOPBACK, free_port, free_ports

LOCAL_KAFKA_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "local-kafka"

# Bounds for the script's subprocesses. The script bounds its own waits (90 s for startup,
# 30 s + SIGKILL for stop); only the first start adds a Maven download on top.
START_TIMEOUT_S = 600.0
OTHER_TIMEOUT_S = 120.0


class LocalKafkaError(RuntimeError):
    """The script refused or failed (its exit code was not 0)."""


def run_local_kafka(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = OTHER_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/local-kafka`` with ``args``; never raises on a non-zero exit.

    ``env`` entries are added to (and override) the current environment.
    """
    return subprocess.run(
        [str(LOCAL_KAFKA_SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def started_bootstrap(result: subprocess.CompletedProcess[str], hint: str = "") -> str:
    """The bootstrap address a ``start`` printed (its last line), or why it failed."""
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-30:])
        message = f"scripts/local-kafka start failed (exit {result.returncode}):\n{tail}"
        raise LocalKafkaError(message + (f"\n{hint}" if hint else ""))
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class LocalKafka:
    """A private ``scripts/local-kafka`` instance: its own state dir and ports.

        kafka = LocalKafka(tmp_path / "kafka")
        bootstrap = kafka.start()
        ...
        kafka.stop()      # outage
        kafka.start()     # same topics, same data
        kafka.clean()     # stop and delete the state dir

    Ports default to free ones; the controller's too, because the script's own default (broker
    port + 1) may be taken when the broker port was picked at random.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
    ) -> None:
        if port is not None and port == controller_port:
            raise ValueError(f"broker and controller ports must differ, both are {port}")
        if port is None:
            port = free_port()
        while controller_port is None or controller_port == port:
            controller_port = free_port()
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.controller_port = controller_port

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment knobs that select this instance in ``scripts/local-kafka``.

        Every knob that picks an instance is named, the ones that do not apply empty (the
        script's "unset"), so none leaks in from the caller's environment: a
        LOCAL_KAFKA_CONTROLLER_PORT exported for the session's broker would make a cluster
        refuse to start, a LOCAL_KAFKA_NODES would make this broker a cluster."""
        return {
            "LOCAL_KAFKA_DIR": str(self.state_dir),
            "LOCAL_KAFKA_NODES": "1",
            "LOCAL_KAFKA_PORT": str(self.port),
            "LOCAL_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "LOCAL_KAFKA_PORTS": "",
            "LOCAL_KAFKA_CONTROLLER_PORTS": "",
        }

    def run(self, *args: str, timeout: float = OTHER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run the script for this instance (e.g. ``run("status")``); never raises on exit codes."""
        return run_local_kafka(*args, env=self.env, timeout=timeout)

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start (or find running) and return the bootstrap address once the broker answers."""
        return started_bootstrap(self.run("start", timeout=timeout))

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL if it hangs); a no-op when not running."""
        self._check("stop")

    def clean(self) -> None:
        """Stop the broker and delete its state dir."""
        self._check("clean")

    def _check(self, command: str) -> None:
        result = self.run(command)
        if result.returncode != 0:
            raise LocalKafkaError(f"scripts/local-kafka {command} failed:\n{result.stderr}")

    def is_running(self) -> bool:
        return self.run("status").returncode == 0

    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        if not self.is_running():
            return None
        try:
            return int((self.state_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def version(self) -> str | None:
        """The Kafka release the state dir was last started with, as the script recorded it."""
        try:
            return (self.state_dir / "kafka-version").read_text().strip() or None
        except OSError:
            return None

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalKafkaCluster(LocalKafka):
    """A private ``scripts/local-kafka`` cluster: ``nodes`` KRaft nodes on loopback, each a
    broker and a controller, with their own ports and state (``<state_dir>/node-<id>``).

        cluster = LocalKafkaCluster(tmp_path / "kafka", nodes=3)
        bootstrap = cluster.start()            # every node that is not running
        cluster.signal(2, signal.SIGKILL)      # a crash
        cluster.start()                        # node 2 comes back, the others are left alone
        cluster.clean()

    ``extra_config`` lines go into every node's server.properties (broker settings under test).
    """

    def __init__(
        self, state_dir: Path, *, nodes: int = 3, extra_config: Sequence[str] = ()
    ) -> None:
        ports = free_ports(2 * nodes)
        super().__init__(state_dir, ports[0], ports[nodes])
        self.nodes = nodes
        self.ports = ports[:nodes]
        self.controller_ports = ports[nodes:]
        self.extra_config = list(extra_config)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{LOOPBACK}:{port}" for port in self.ports)

    @property
    def env(self) -> dict[str, str]:
        return {
            "LOCAL_KAFKA_DIR": str(self.state_dir),
            "LOCAL_KAFKA_NODES": str(self.nodes),
            "LOCAL_KAFKA_PORT": "",
            "LOCAL_KAFKA_CONTROLLER_PORT": "",
            "LOCAL_KAFKA_PORTS": ",".join(map(str, self.ports)),
            "LOCAL_KAFKA_CONTROLLER_PORTS": ",".join(map(str, self.controller_ports)),
            "LOCAL_KAFKA_EXTRA_CONFIG": ";".join(self.extra_config),
        }

    def node_dir(self, node: int) -> Path:
        return self.state_dir / f"node-{node}"

    def pid(self, node: int = 1) -> int | None:
        """Node ``node``'s process id while it runs (also while it is paused), else None."""
        try:
            pid = int((self.node_dir(node) / "kafka.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # A stale pid file may name a process that is not this node any more.
        return pid if str(self.node_dir(node) / "server.properties").encode() in cmdline else None

    def signal(self, node: int, signum: signal.Signals) -> None:
        """Send ``signum`` to node ``node`` (SIGKILL: a crash; SIGSTOP/SIGCONT: a hang)."""
        pid = self.pid(node)
        if pid is None:
            raise LocalKafkaError(f"node {node} is not running")
        os.kill(pid, signum)

    def active_controller(self) -> int:
        """The KRaft quorum's leader, as the running nodes last recorded it (highest epoch)."""
        best: tuple[int, int] = (-1, -1)
        for node in range(1, self.nodes + 1):
            state = self.node_dir(node) / "data" / "__cluster_metadata-0" / "quorum-state"
            if self.pid(node) is None:
                continue
            with contextlib.suppress(OSError, ValueError, KeyError):
                quorum = json.loads(state.read_text())
                best = max(best, (int(quorum["leaderEpoch"]), int(quorum["leaderId"])))
        if best[1] < 1:
            raise LocalKafkaError("no running node knows the quorum's leader")
        return best[1]
