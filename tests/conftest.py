"""Fixtures: one real Kafka broker per session, fresh topics per test, relays under test.

The broker comes from KAFKA_BOOTSTRAP_SERVERS, else testcontainers when Docker answers, else
scripts/local-kafka (see tests/brokers.py). Kafka is never mocked in integration tests. The
helpers live in modules of their own: tests/relays.py (the relay under test and its
credentials), tests/raw_http.py (raw requests, the raw-socket client, the signer).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devsupport.local_kafka import LocalKafka, LocalKafkaCluster
from tests.brokers import bootstrap_for_session
from tests.relays import (
    Relays,
    RelayUnderTest,
    SettingsFactory,
    delete_topics,
    in_thread,
    relay_settings,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked needs_tool last. `make test` runs the suite while scripts/get-tools
    still builds helm and promtool on a fresh machine (scripts/run-tests); a test calling a
    get-* script waits for that build, so the others go first and the wait is mostly over when
    they are done. The sort is stable: otherwise the order stays pytest's."""
    items.sort(key=lambda item: item.get_closest_marker("needs_tool") is not None)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    bootstrap, cleanup = bootstrap_for_session()
    try:
        yield bootstrap
    finally:
        cleanup()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """A private 3-node KRaft cluster for the tests that kill, pause and restart its nodes.
    Each such test leaves every node running when it ends."""
    cluster = LocalKafkaCluster(tmp_path_factory.mktemp("kafka-cluster") / "kafka", nodes=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.clean()


@pytest.fixture(scope="session")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A second broker, private to the tests that stop and restart it to stage outages.
    Tests start it on entry (idempotent) since an earlier test may have left it stopped."""
    kafka = LocalKafka(tmp_path_factory.mktemp("private-kafka"))
    try:
        yield kafka
    finally:
        kafka.clean()


@pytest.fixture
async def make_settings(kafka_bootstrap: str) -> AsyncIterator[SettingsFactory]:
    """Settings on loopback, ephemeral ports, topics unique to the test, plus overrides given
    as `section={key: value}` keyword arguments (tests.relays.relay_settings). The test's
    topics are deleted afterwards, so a long-lived development broker does not fill up."""
    prefix = f"test.{uuid.uuid4().hex[:10]}."
    yield functools.partial(relay_settings, kafka_bootstrap, prefix)
    await delete_topics(kafka_bootstrap, prefix=prefix)


@pytest.fixture
async def relays(make_settings: SettingsFactory, tmp_path: Path) -> AsyncIterator[Relays]:
    """Start relays under test, in this process (the default) or with `process=True` in their
    own: `await relays(**overrides)`, or `await relays.start(settings)`. All stop at the end."""
    started = Relays(make_settings, tmp_path)
    yield started
    await started.stop()


@pytest.fixture
async def relay(relays: Relays) -> RelayUnderTest:
    """A relay with the suite's settings, in this process, ready."""
    return await relays()


@pytest.fixture(scope="module")
def process_relays(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relays]:
    """Start relay processes for a whole module, from sync code: `process_relays.start_process(
    **overrides)`. All stop (SIGTERM, and must exit cleanly) at the module's end."""
    prefix = f"module.{uuid.uuid4().hex[:10]}."
    settings = functools.partial(relay_settings, kafka_bootstrap, prefix)
    started = Relays(settings, tmp_path_factory.mktemp("relays"))
    yield started
    started.stop_processes()
    in_thread(delete_topics(kafka_bootstrap, prefix=prefix))
