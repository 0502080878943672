"""Where the test suite gets its Kafka brokers from.

``bootstrap_for_session()`` picks the broker the whole session shares, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (CI service, a broker you already run);
2. a testcontainers Kafka container, when a Docker engine answers;
3. ``scripts/local-kafka start``: Apache Kafka's own broker from its Maven Central jars, on
   loopback, no Docker needed (Java 17+, and Maven for the first fetch).

``LocalKafka`` manages an extra, private broker (own state dir and ports) that fault tests may
stop and restart to simulate an outage without disturbing the shared one; ``LocalKafkaCluster``
does the same for a cluster of several nodes, and lets fault tests kill, pause and restart single
nodes.

Everything here blocks (subprocesses); from async tests call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_KAFKA_SCRIPT = REPO_ROOT / "scripts" / "local-kafka"

LOOPBACK = "127.0.0.1"

# Image for the testcontainers path. testcontainers' KafkaContainer drives Confluent's image
# (its boot script relies on /etc/confluent/docker/*); 7.9 is Apache Kafka 3.9 in KRaft mode.
# Override with KAFKA_TEST_IMAGE.
DEFAULT_CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.0"

# Bounds for the script's subprocesses. The script bounds its own waits (90 s for startup,
# 30 s + SIGKILL for stop); only the first start adds a Maven download on top.
_START_TIMEOUT_S = 600.0
_OTHER_TIMEOUT_S = 120.0


def _noop() -> None:
    """Cleanup for brokers this session did not start."""


def free_port() -> int:
    """An unused TCP port on loopback (free when asked; bind it soon)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct unused loopback ports.

    All sockets are held open until every port is chosen, so the kernel cannot hand out the
    same port twice (calling ``free_port()`` twice can, in principle).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def run_local_kafka(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = _OTHER_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/local-kafka`` with ``args``; never raises on a non-zero exit.

    ``env`` entries are added to (and override) the current environment.
    """
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(LOCAL_KAFKA_SCRIPT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _start_failed(result: subprocess.CompletedProcess[str], hint: str = "") -> RuntimeError:
    tail = "\n".join(result.stderr.splitlines()[-30:])
    message = f"scripts/local-kafka start failed (exit {result.returncode}):\n{tail}"
    return RuntimeError(message + (f"\n{hint}" if hint else ""))


class LocalKafka:
    """A private ``scripts/local-kafka`` instance: its own state dir and ports.

    Data survives ``stop()``/``start()`` (storage is formatted once per state dir), so a test
    can take the broker down, check how the relay copes, and bring the same cluster back.

        kafka = LocalKafka(tmp_path / "kafka", free_port())
        bootstrap = kafka.start()
        ...
        kafka.stop()      # outage
        kafka.start()     # same topics, same data
        kafka.clean()     # stop and delete the state dir

    The controller port defaults to another free port (the script's own default, broker port
    + 1, may be taken when the broker port was picked at random).
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
        """The environment knobs that select this instance in ``scripts/local-kafka``."""
        return {
            "LOCAL_KAFKA_DIR": str(self.state_dir),
            "LOCAL_KAFKA_PORT": str(self.port),
            "LOCAL_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }

    def run(
        self, *args: str, timeout: float = _OTHER_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run the script for this instance (e.g. ``run("status")``); never raises on exit codes."""
        return run_local_kafka(*args, env=self.env, timeout=timeout)

    def start(self) -> str:
        """Start (or find running) and return the bootstrap address once the broker answers."""
        result = self.run("start", timeout=_START_TIMEOUT_S)
        if result.returncode != 0:
            raise _start_failed(result)
        return _last_line(result.stdout)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL if it hangs); a no-op when not running."""
        result = self.run("stop")
        if result.returncode != 0:
            raise RuntimeError(f"scripts/local-kafka stop failed:\n{result.stderr}")

    def clean(self) -> None:
        """Stop the broker and delete its state dir."""
        result = self.run("clean")
        if result.returncode != 0:
            raise RuntimeError(f"scripts/local-kafka clean failed:\n{result.stderr}")

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
        return pid if str(self.node_dir(node) / "server.properties").encode() in cmdline else None

    def signal(self, node: int, signum: signal.Signals) -> None:
        """Send ``signum`` to node ``node`` (SIGKILL: a crash; SIGSTOP/SIGCONT: a hang)."""
        pid = self.pid(node)
        if pid is None:
            raise RuntimeError(f"node {node} is not running")
        os.kill(pid, signum)

    def node_of_port(self, port: int) -> int:
        return self.ports.index(port) + 1

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
            raise RuntimeError("no running node knows the quorum's leader")
        return best[1]


def docker_available(timeout: float = 2.0) -> bool:
    """True when a Docker engine answers a ping within ``timeout`` seconds."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        # The usual case without Docker: no socket, so no need to load the SDK at all.
        return False
    # The docker SDK may warn at import (deprecations), and a failed connection leaves an
    # unclosed socket whose ResourceWarning would surface in some later test (the suite turns
    # warnings into errors). Ignore warnings here and collect that garbage while they are ignored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import docker  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            return False
        client = None
        try:
            client = docker.from_env(timeout=timeout)
            return bool(client.ping())
        except Exception:  # no engine, no permission, bad DOCKER_HOST: all mean "no Docker"
            return False
        finally:
            if client is not None:
                client.close()
            gc.collect()


def _start_container() -> tuple[str, Callable[[], None]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # testcontainers.kafka is a deprecated alias in 4.x
        # testcontainers >= 4.13 moved the module to testcontainers.community.kafka; older
        # releases (the project allows >= 4.8) only have testcontainers.kafka.
        try:
            from testcontainers.community.kafka import (  # type: ignore[import-not-found,unused-ignore]
                KafkaContainer,
            )
        except ImportError:
            from testcontainers.kafka import (  # type: ignore[no-redef,unused-ignore]
                KafkaContainer,
            )
    image = os.environ.get("KAFKA_TEST_IMAGE", DEFAULT_CONTAINER_IMAGE)
    container = KafkaContainer(image).with_kraft()
    container.start(timeout=120)
    return container.get_bootstrap_server(), container.stop


def bootstrap_for_session() -> tuple[str, Callable[[], None]]:
    """The bootstrap servers for the test session, and the cleanup to call at its end."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        return configured, _noop

    if docker_available():
        return _start_container()

    # Leave a broker someone else started (make run, a previous session kept alive) running.
    already_running = run_local_kafka("status").returncode == 0
    result = run_local_kafka("start", timeout=_START_TIMEOUT_S)
    if result.returncode != 0:
        raise _start_failed(
            result,
            "Set KAFKA_BOOTSTRAP_SERVERS to use a broker you already have.",
        )
    bootstrap = _last_line(result.stdout)
    if already_running:
        return bootstrap, _noop

    def stop_local_kafka() -> None:
        run_local_kafka("stop")

    return bootstrap, stop_local_kafka
