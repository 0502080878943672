"""Fixtures: one real Kafka broker per session, fresh topics per test, the relay in-process.

The broker comes from KAFKA_BOOTSTRAP_SERVERS, else testcontainers when Docker answers, else
scripts/local-kafka (see tests/brokers.py). Kafka is never mocked in integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from devsupport import topics
from devsupport.local_kafka import LocalKafka, LocalKafkaCluster
from devsupport.ports import LOOPBACK
from relay import config
from relay.service import Service
from relay.topics import create_topics
from tests.brokers import bootstrap_for_session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked needs_tool last. `make test` runs the suite while scripts/get-tools
    still builds helm and promtool on a fresh machine (scripts/run-tests); a test calling a
    get-* script waits for that build, so the others go first and the wait is mostly over when
    they are done. The sort is stable: otherwise the order stays pytest's."""
    items.sort(key=lambda item: item.get_closest_marker("needs_tool") is not None)


TOKEN = "test-token-0123456789"
SECOND_TOKEN = "test-token-rotated-abcdef"
APP_SECRET = "test-app-secret-fedcba9876"
VERIFY_TOKEN = "test-verify-token"


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


SettingsFactory = Callable[..., config.Settings]


@pytest.fixture
async def make_settings(kafka_bootstrap: str) -> AsyncIterator[SettingsFactory]:
    """Settings on loopback, ephemeral ports, topics unique to the test, plus overrides given
    as `section={key: value}` keyword arguments. The test's topics are deleted afterwards, so
    a long-lived development broker does not fill up with them."""
    suffix = uuid.uuid4().hex[:10]

    def build(**overrides: dict[str, Any]) -> config.Settings:
        data: dict[str, Any] = {
            "server": {"host": LOOPBACK, "port": 0},
            "admin": {"host": LOOPBACK, "port": 0},
            "auth": {"bearer_tokens": [TOKEN, SECOND_TOKEN], "verify_token": VERIFY_TOKEN},
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "readiness_interval_seconds": 0.5,
                "request_timeout_ms": 5000,
            },
            "topics": {t.value: f"test.{suffix}.{t.value}" for t in config.EventType},
            "shutdown": {"timeout_seconds": 5},
        }
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        return config.Settings.model_validate(data)

    yield build
    await delete_topics(kafka_bootstrap, prefix=f"test.{suffix}.")


async def delete_topics(bootstrap: str, *, prefix: str) -> None:
    """A test's topics, once it is done; a broker that does not answer is not the test's fault."""
    # The usual reason: a private broker a test stopped; its state dir is deleted with it.
    with contextlib.suppress(KafkaError):
        await topics.delete_prefixed(bootstrap, prefix)


@dataclass
class RunningRelay:
    service: Service
    settings: config.Settings
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.service.public_port}{self.settings.server.path}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.service.admin_port}"

    async def post(
        self, body: bytes, *, token: str | None = TOKEN, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        sent = {"Content-Type": "application/json"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        # aiohttp warns that large raw bytes block the loop; a file-like body streams.
        data: Any = io.BytesIO(body) if len(body) > 1_000_000 else body
        async with self.http.post(self.url, data=data, headers=sent) as response:
            await response.read()
            return response

    async def metrics(self) -> str:
        async with self.http.get(f"{self.admin_url}/metrics") as response:
            return await response.text()


async def start_relay(settings: config.Settings, *, create: bool = True) -> Service:
    if create:
        results = await create_topics(settings)
        assert {r.status for r in results} <= {"created", "exists"}, results
    service = Service(settings)
    await service.start()
    return service


async def wait_ready(service: Service, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while service.readiness.reason is not None:
            await asyncio.sleep(0.05)


@pytest.fixture
async def relay_factory(
    make_settings: SettingsFactory,
) -> AsyncIterator[Callable[..., Any]]:
    """Start relays with given overrides; each is shut down after the test."""
    started: list[tuple[Service, aiohttp.ClientSession]] = []

    async def start(*, ready: bool = True, **overrides: dict[str, Any]) -> RunningRelay:
        settings = make_settings(**overrides)
        service = await start_relay(settings)
        if ready:
            await wait_ready(service)
        http = aiohttp.ClientSession()
        started.append((service, http))
        return RunningRelay(service, settings, http)

    yield start
    for service, http in started:
        await http.close()
        await service.shutdown()


@pytest.fixture
async def relay(relay_factory: Callable[..., Any]) -> RunningRelay:
    result: RunningRelay = await relay_factory()
    return result


async def consume(
    bootstrap: str, topic: str, *, expect: int, within: float = 15.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start until `expect` records arrived, then a short while more
    so that extra, unexpected records are caught too."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(within):
            while len(records) < expect:
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend(batch)
        batches = await consumer.getmany(timeout_ms=300)
        for batch in batches.values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records a topic holds, from its end offsets (no waiting)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[p] - starts[p] for p in partitions)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    async with asyncio.timeout(10):
        while True:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
