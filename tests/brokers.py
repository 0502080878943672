"""Where the test suite gets its Kafka broker from.

``bootstrap_for_session()`` picks the broker the whole session shares, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (CI service, a broker you already run);
2. a testcontainers Kafka container, when a Docker engine answers;
3. ``scripts/local-kafka start``: Apache Kafka's own broker from its Maven Central jars, on
   loopback, no Docker needed (Java 17+, and Maven for the first fetch).

This is the suite's policy only; driving ``scripts/local-kafka`` (also for the private brokers
and clusters that fault tests stop and restart) is ``devsupport.local_kafka``'s.
Everything here blocks; from async tests call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from devsupport.local_kafka import START_TIMEOUT_S, run_local_kafka, started_bootstrap

# Image for the testcontainers path. testcontainers' KafkaContainer drives Confluent's image
# (its boot script relies on /etc/confluent/docker/*); 7.9 is Apache Kafka 3.9 in KRaft mode.
# Override with KAFKA_TEST_IMAGE.
DEFAULT_CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.0"


def _noop() -> None:
    """Cleanup for brokers this session did not start."""


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
    bootstrap = started_bootstrap(
        run_local_kafka("start", timeout=START_TIMEOUT_S),
        "Set KAFKA_BOOTSTRAP_SERVERS to use a broker you already have.",
    )
    if already_running:
        return bootstrap, _noop

    def stop_local_kafka() -> None:
        run_local_kafka("stop")

    return bootstrap, stop_local_kafka
