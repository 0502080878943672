"""Publishing with a bound, a producer that heals itself, and what Kafka looks like from here.

A 200 is promised only after every record of a request is acknowledged with `acks=all` by an
idempotent producer. aiokafka's idempotent batches never expire while the broker is away, so
the wait is bounded here (`publish_timeout_seconds`) and the sender gets a 503 to retry.

Two background tasks: a supervisor owns the producer (builds and starts it, rebuilds it with
backoff when it dies), and a watch asks the cluster, on connections of its own, whether the
topics exist and are durable (relay.topics.TopicWatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from relay import kafka_client
from relay.config import Settings
from relay.deadlines import Deadlines
from relay.kafka_client import Producer
from relay.kafka_options import connection_options
from relay.metrics import Metrics
from relay.outcomes import PublishError
from relay.readiness import KafkaState
from relay.records import Record
from relay.startup import StartupError
from relay.topics import TopicCheck, TopicWatch

log = logging.getLogger("relay.publish")

ProducerFactory = Callable[[], AIOKafkaProducer]

_FIRST_BACKOFF = 0.5


class CachedPartitioner:
    """Kafka's default partitioning (murmur2, as the Java client), with the hash memoised.

    aiokafka's murmur2 is pure Python (about 3 µs a key) and keys repeat: a conversation's
    messages and statuses share one. The partition chosen is exactly the default one.
    """

    def __init__(self, cache_size: int = 65536) -> None:
        self._hash = functools.lru_cache(maxsize=cache_size)(murmur2)
        self._keyless = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._keyless(key, all_partitions, available))
        return all_partitions[(int(self._hash(key)) & 0x7FFFFFFF) % len(all_partitions)]


class PublishFailed(Exception):
    """The records are not (known to be) in Kafka; `error` says why. What the sender is told
    is the webhook handler's business."""

    def __init__(self, error: PublishError, detail: str) -> None:
        super().__init__(detail)
        self.error = error


class Publisher:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._deadlines = Deadlines(settings.kafka.publish_timeout_seconds)
        self._factory = producer_factory or self._default_producer
        self._producer: Producer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._watch = TopicWatch(settings, metrics)
        self.kafka = KafkaState()  # what readiness (relay.readiness) is made of

    def _default_producer(self) -> AIOKafkaProducer:
        kafka = self._settings.kafka
        return AIOKafkaProducer(
            **connection_options(kafka),
            acks="all",
            enable_idempotence=True,
            compression_type=kafka.compression_type,
            linger_ms=kafka.linger_ms,
            max_batch_size=kafka.max_batch_size,
            max_request_size=self._settings.record_size_limit,
            partitioner=CachedPartitioner(),
        )

    @property
    def broker_info(self) -> dict[str, Any]:
        """What the brokers offer (for the start-up log); empty until Kafka answered."""
        return self._watch.broker_info

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start supervising; the first producer start and topic check are tried at once but
        never fatal, so the relay comes up (not ready) while Kafka is away and heals when it
        returns."""
        problems = kafka_client.self_check()
        if problems:
            raise StartupError(kafka_client.describe_problems(problems))
        self._deadlines.start()
        healthy = await self._ensure_producer()
        self._update(await self._watch.check())
        self._tasks = [
            asyncio.create_task(self._supervise(healthy), name="kafka-supervisor"),
            asyncio.create_task(self._watch_topics(), name="kafka-topic-watch"),
        ]

    async def stop(self, within_seconds: float) -> bool:
        """Flush and close within the bound. False if records were left unflushed."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._deadlines.stop()
        await self._watch.close()
        producer, self._producer = self._producer, None
        if producer is None:
            return True
        return await producer.stop(within_seconds)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, records: list[Record]) -> None:
        producer = self._producer
        if producer is None or not producer.alive:
            self._wake.set()
            raise PublishFailed(PublishError.UNAVAILABLE, "producer is not running")
        send = producer.send
        started = time.perf_counter()
        deadline = self._deadlines.arm()
        try:
            # send() only queues the record (it may wait for metadata or batch space); the
            # futures resolve when the broker acknowledges. A plain loop, not a comprehension:
            # on Python 3.11 an async comprehension is a coroutine of its own per request.
            futures = []
            for record in records:
                futures.append(
                    await send(record.topic, record.value, key=record.key, headers=record.headers)
                )
            for future in futures:
                await future
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            self._deadlines.absorb()
            raise PublishFailed(PublishError.TIMEOUT, "no acknowledgement in time") from None
        except MessageSizeTooLargeError as exc:
            raise PublishFailed(PublishError.TOO_LARGE, str(exc)) from exc
        except KafkaTimeoutError as exc:
            raise PublishFailed(PublishError.TIMEOUT, str(exc)) from exc
        except KafkaError as exc:
            # Any Kafka failure means the record may not be stored: the sender must retry.
            producer.failed(exc)
            self._wake.set()
            raise PublishFailed(PublishError.KAFKA_ERROR, str(exc)) from exc
        finally:
            deadline.disarm()
        self._metrics.publish_duration.observe(time.perf_counter() - started)

    # -- supervision ------------------------------------------------------------------------

    def producer_alive(self) -> bool:
        producer = self._producer
        return producer is not None and producer.alive

    def live_producer(self) -> Producer | None:
        """The producer while it runs, for the spool's drainer (relay.spool); else None."""
        producer = self._producer
        return producer if producer is not None and producer.alive else None

    async def _supervise(self, healthy: bool) -> None:
        interval = self._settings.kafka.readiness_interval_seconds
        limit = self._settings.kafka.restart_backoff_max_seconds
        backoff = _FIRST_BACKOFF
        while True:
            if healthy:
                backoff = _FIRST_BACKOFF
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._wake.wait()
            else:
                # Requests keep waking the supervisor while Kafka is away; the backoff must
                # not be defeated by them.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, limit)
            self._wake.clear()
            try:
                healthy = await self._ensure_producer()
            except Exception:  # the supervisor must outlive any single failure
                log.exception("kafka supervisor iteration failed")
                healthy = False

    async def _watch_topics(self) -> None:
        """The topic check, every readiness interval, apart from the producer: a check that
        waits for a slow broker never delays a producer rebuild, nor the other way round."""
        interval = self._settings.kafka.readiness_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                check = await self._watch.check()
            except Exception:  # the watch must outlive any single failure
                log.exception("kafka topic check failed")
                continue
            self._update(check)

    def _update(self, check: TopicCheck) -> None:
        kafka = self.kafka
        if kafka.checked(check.unreachable, check.problem):
            log.info(
                "kafka state changed",
                extra={"reached": kafka.reached, "unreachable": kafka.unreachable,
                       "topics_problem": kafka.topics_problem},
            )  # fmt: skip

    async def _ensure_producer(self) -> bool:
        """Make sure a live producer exists; one start attempt. True when one runs."""
        producer = self._producer
        if producer is not None and producer.alive:
            return True
        if producer is not None:
            log.error("kafka producer died; rebuilding it", extra={"event": "producer_died"})
            self._producer = None
            self._metrics.producer_restarts.inc()
            await producer.stop(1.0)
        producer = Producer(self._factory())
        try:
            async with asyncio.timeout(self._settings.kafka.request_timeout_ms / 1000):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop(1.0)
            error = str(exc) or type(exc).__name__
            self.kafka.producer_problem = f"kafka producer cannot start: {error}"
            log.warning("kafka producer start failed; will retry", extra={"error": error})
            return False
        self._producer = producer
        self.kafka.producer_problem = None
        log.info("kafka producer started")
        return True
