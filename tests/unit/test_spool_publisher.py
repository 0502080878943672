"""The spooling publisher's state machine, against a small fake of the direct publisher and
its producer (a real spool directory): when a request goes direct, when to the spool, that the
drainer delivers in order with the spooled-at header, and that an empty spool switches back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from relay.config import Settings
from relay.metrics import Metrics
from relay.outcomes import PublishError, SpoolReason
from relay.publish import PublishFailed
from relay.readiness import KafkaState, Readiness
from relay.records import Record
from relay.service import Service
from relay.spool.drainer import SPOOLED_AT_HEADER
from relay.spool.publisher import SpoolingPublisher
from tests.unit.test_spool_frames import records


class FakeProducer:
    """Acknowledges what it is sent when told to; keeps it in order."""

    def __init__(self) -> None:
        self.alive = True
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.pending: list[asyncio.Future[None]] = []
        self.acknowledge_at_once = True

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.acknowledge_at_once:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    def failed(self, error: BaseException) -> None:
        pass


class FakeDirect:
    """The direct publisher: `behaviour` decides how each publish ends."""

    def __init__(self) -> None:
        self.kafka = KafkaState(producer_problem=None, reached=True)
        self.producer = FakeProducer()
        self.published: list[list[Record]] = []
        self.behaviour: Callable[[], Any] = lambda: None

    async def publish(self, batch: list[Record]) -> None:
        result = self.behaviour()
        if asyncio.iscoroutine(result):
            await result
        self.published.append(batch)

    def live_producer(self) -> FakeProducer | None:
        return self.producer if self.producer.alive else None


@pytest.fixture
async def spooling(tmp_path: Path) -> AsyncIterator[tuple[SpoolingPublisher, FakeDirect, Metrics]]:
    settings = Settings.model_validate(
        {
            "spool": {"enabled": True, "directory": str(tmp_path), "after_seconds": 0.2},
            "kafka": {"publish_timeout_seconds": 2},
        }
    )
    metrics = Metrics("test")
    direct = FakeDirect()
    publisher = SpoolingPublisher(settings, metrics, direct)  # type: ignore[arg-type]
    await publisher.open()
    publisher.start_draining()
    try:
        yield publisher, direct, metrics
    finally:
        loop = asyncio.get_running_loop()
        await publisher.stop(loop.time() + 2)


def spooled(metrics: Metrics, reason: SpoolReason) -> float:
    return metrics.spool_spooled[reason].value


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def test_kafka_acknowledging_in_time_is_the_direct_path(spooling: Any) -> None:
    publisher, direct, metrics = spooling
    await publisher.publish(records(1))
    assert direct.published == [records(1)]
    assert publisher.store.empty
    assert all(child.value == 0 for child in metrics.spool_spooled.values())


async def test_a_slow_kafka_spools_then_everything_queues_behind_until_drained(
    spooling: Any,
) -> None:
    publisher, direct, metrics = spooling
    direct.producer.acknowledge_at_once = False  # the drain waits for Kafka too
    direct.behaviour = lambda: asyncio.sleep(10)  # no acknowledgement in time
    await publisher.publish(records(1))  # returns after spool.after_seconds, spooled
    assert spooled(metrics, SpoolReason.TIMEOUT) == 1
    direct.behaviour = lambda: None  # Kafka is quick again ...
    await publisher.publish(records(2))
    assert direct.published == []  # ... but nothing may overtake the spooled request
    assert spooled(metrics, SpoolReason.QUEUED) == 1

    await until(lambda: len(direct.producer.sent) == 4)
    sent = direct.producer.sent
    # In order, as the direct path would have sent them, plus the spooled-at header.
    assert [(t, k, v) for t, k, v, _ in sent] == [
        (r.topic, r.key, r.value) for r in records(1) + records(2)
    ]
    for (_, _, _, headers), record in zip(sent, records(1) + records(2), strict=True):
        assert headers[:-1] == record.headers
        assert headers[-1][0] == SPOOLED_AT_HEADER
        assert headers[-1][1].endswith(b"Z")
    assert not publisher.store.empty  # sent, not acknowledged: still spooling
    await publisher.publish(records(3))
    assert spooled(metrics, SpoolReason.QUEUED) == 2

    direct.producer.acknowledge_at_once = True
    for future in direct.producer.pending:
        future.set_result(None)
    await until(lambda: publisher.store.empty)
    assert metrics.spool_drained._children[()].value == 3
    await publisher.publish(records(4))
    assert direct.published == [records(4)]  # every frame acknowledged: direct again


@pytest.mark.parametrize(
    ("error", "reason"),
    [(PublishError.UNAVAILABLE, SpoolReason.UNAVAILABLE),
     (PublishError.KAFKA_ERROR, SpoolReason.KAFKA_ERROR)],
)  # fmt: skip
async def test_a_producer_down_or_a_kafka_error_spools_at_once(
    spooling: Any, error: PublishError, reason: SpoolReason
) -> None:
    publisher, direct, metrics = spooling

    def fail() -> None:
        raise PublishFailed(error, "no")

    direct.behaviour = fail
    started = asyncio.get_running_loop().time()
    await publisher.publish(records(1))
    assert asyncio.get_running_loop().time() - started < 0.15  # not after spool.after_seconds
    assert spooled(metrics, reason) == 1


async def test_a_known_unreachable_cluster_spools_without_trying_kafka(spooling: Any) -> None:
    publisher, direct, metrics = spooling
    direct.kafka.unreachable = "kafka unreachable: no broker answered"
    direct.producer.alive = False
    await publisher.publish(records(1))
    assert direct.published == []
    assert spooled(metrics, SpoolReason.UNAVAILABLE) == 1
    assert publisher.store.held == 1  # nothing drains while the cluster is away


async def test_records_kafka_would_refuse_for_their_size_are_not_spooled(spooling: Any) -> None:
    publisher, direct, _ = spooling

    def too_large() -> None:
        raise PublishFailed(PublishError.TOO_LARGE, "too large")

    direct.behaviour = too_large
    with pytest.raises(PublishFailed) as failed:
        await publisher.publish(records(1))
    assert failed.value.error is PublishError.TOO_LARGE
    assert publisher.store.empty


async def test_a_full_spool_refuses_with_spool_full(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"spool": {"enabled": True, "directory": str(tmp_path), "max_bytes": 65536}}
    )
    metrics = Metrics("test")
    direct = FakeDirect()
    direct.kafka.unreachable = "kafka unreachable"
    publisher = SpoolingPublisher(settings, metrics, direct)  # type: ignore[arg-type]
    await publisher.open()
    try:
        for _ in range(6):  # 10 KB each: six fit in 64 KiB
            await publisher.publish(records(1, b"q" * 10_000))
        with pytest.raises(PublishFailed) as failed:
            await publisher.publish(records(1, b"q" * 10_000))
        assert failed.value.error is PublishError.SPOOL_FULL
        assert publisher.problem == "spool full"
    finally:
        await publisher.stop(asyncio.get_running_loop().time() + 2)


def test_with_the_spool_off_the_handler_publishes_through_the_direct_publisher() -> None:
    settings = Settings.model_validate({"auth": {"bearer_tokens": ["t" * 20]}})
    service = Service(settings)
    assert service.spool is None
    assert service.handler._publisher is service.publisher  # the same object, no wrapper


def test_with_the_spool_on_a_dead_producer_leaves_the_pod_ready_and_says_why() -> None:
    kafka = KafkaState(producer_problem="kafka producer cannot start: refused", reached=True)
    health = SimpleNamespace(problem=None)
    readiness = Readiness(kafka, lambda: False, health)
    readiness.accepting = True
    assert readiness.reason is None
    assert readiness.degraded == "kafka producer cannot start: refused"
    health.problem = "spool full"
    assert readiness.degraded == "kafka producer cannot start: refused; spool full"
    without = Readiness(kafka, lambda: False)
    without.accepting = True
    assert without.reason == "kafka producer cannot start: refused"
    kafka.reached = False  # never reached since start: not ready, spool or not
    kafka.unreachable = "kafka unreachable: no broker"
    assert readiness.reason == "kafka unreachable: no broker"


def test_after_seconds_must_leave_kafka_its_publish_timeout_only_with_the_spool_on() -> None:
    with pytest.raises(ValueError, match=r"spool\.after_seconds must be below"):
        Settings.model_validate(
            {
                "spool": {"enabled": True, "after_seconds": 10},
                "kafka": {"publish_timeout_seconds": 5},
            }
        )
    # With the spool off the key means nothing: a short publish timeout is as valid as before.
    assert (
        Settings.model_validate({"kafka": {"publish_timeout_seconds": 0.5}}).spool.enabled is False
    )
