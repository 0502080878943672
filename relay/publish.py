"""Publishing with a bound, and a producer that heals itself.

A 200 is promised only after every record of a request is acknowledged with `acks=all` by an
idempotent producer. aiokafka's idempotent batches never expire while the broker is away, so
the wait is bounded here (`publish_timeout_seconds`) and the sender gets a 503 to retry.

A supervisor task owns the producer: it builds and starts it, watches for it dying (aiokafka's
sender task ends for good on fatal errors such as an out-of-order sequence), rebuilds it with
backoff, and keeps readiness fresh by asking the broker for the configured topics.
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

from relay.config import Settings
from relay.deadlines import Deadlines
from relay.kafka_options import connection_options
from relay.metrics import Metrics, Outcome, PublishError
from relay.records import Record

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
    """The records are not (known to be) safe: the answer is a 503."""

    def __init__(self, outcome: Outcome, error: PublishError, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.error = error


class Readiness:
    """Why the relay is or is not ready; read by /readyz and the metrics gauges.

    Producer liveness is asked at read time rather than cached, so a producer that just died
    turns readiness off before the supervisor has noticed.
    """

    def __init__(self, producer_alive: Callable[[], bool]) -> None:
        self._producer_alive = producer_alive
        self.kafka_reason: str | None = "kafka producer not started"
        # The admin listener (and so /readyz) comes up before the public one: not ready
        # until webhooks can actually connect.
        self.accepting = False
        self.shutting_down = False

    @property
    def kafka_ready(self) -> bool:
        return self.kafka_reason is None and self._producer_alive()

    @property
    def reason(self) -> str | None:
        if self.shutting_down:
            return "shutting down"
        if not self.accepting:
            return "starting"
        if self.kafka_reason is None and not self._producer_alive():
            return "kafka producer not running"
        return self.kafka_reason


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
        self._producer: AIOKafkaProducer | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._start_error = "kafka producer not started"
        self.readiness = Readiness(self.producer_alive)
        self.broker_info: dict[str, Any] = {}

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

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start supervising; the first producer start is tried at once but never fatal, so
        the relay comes up (not ready) while Kafka is away and heals when it returns."""
        self._deadlines.start()
        healthy = await self._ensure_producer()
        await self._check_topics()
        self._supervisor = asyncio.create_task(self._supervise(healthy), name="kafka-supervisor")

    async def stop(self, within_seconds: float) -> bool:
        """Flush and close within the bound. False if records were left unflushed."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._deadlines.stop()
        producer, self._producer = self._producer, None
        if producer is None:
            return True
        return await _stop_producer(producer, within_seconds)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, records: list[Record]) -> None:
        producer = self._producer
        if producer is None or not self._alive(producer):
            self._wake.set()
            raise PublishFailed(
                Outcome.KAFKA_UNAVAILABLE, PublishError.UNAVAILABLE, "producer is not running"
            )
        started = time.perf_counter()
        deadline = self._deadlines.arm()
        try:
            # send() only queues the record (it may wait for metadata or batch space); the
            # futures resolve when the broker acknowledges.
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records
            ]
            for future in futures:
                await future
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            self._deadlines.absorb()
            raise PublishFailed(
                Outcome.PUBLISH_TIMEOUT, PublishError.TIMEOUT, "no acknowledgement in time"
            ) from None
        except MessageSizeTooLargeError as exc:
            raise PublishFailed(
                Outcome.KAFKA_UNAVAILABLE, PublishError.TOO_LARGE, str(exc)
            ) from exc
        except KafkaTimeoutError as exc:
            raise PublishFailed(Outcome.PUBLISH_TIMEOUT, PublishError.TIMEOUT, str(exc)) from exc
        except KafkaError as exc:
            # Any Kafka failure means the record may not be stored: the sender must retry.
            self._wake.set()
            raise PublishFailed(
                Outcome.KAFKA_UNAVAILABLE, PublishError.KAFKA_ERROR, str(exc)
            ) from exc
        finally:
            deadline.disarm()
        self._metrics.publish_duration.observe(time.perf_counter() - started)

    # -- supervision ------------------------------------------------------------------------

    def producer_alive(self) -> bool:
        return self._producer is not None and self._alive(self._producer)

    @staticmethod
    def _alive(producer: AIOKafkaProducer) -> bool:
        # aiokafka has no public "is it healthy" call; its sender task ending is the signal
        # that it will never deliver again.
        task = producer._sender.sender_task
        return task is not None and not task.done()

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
                await self._check_topics()
            except Exception:  # the supervisor must outlive any single failure
                log.exception("kafka supervisor iteration failed")
                healthy = False

    async def _ensure_producer(self) -> bool:
        """Make sure a live producer exists; one start attempt. True when one runs."""
        producer = self._producer
        if producer is not None and self._alive(producer):
            return True
        if producer is not None:
            log.error("kafka producer died; rebuilding it", extra={"event": "producer_died"})
            self._producer = None
            self._metrics.producer_restarts.inc()
            await _stop_producer(producer, 1.0)
        producer = self._factory()
        try:
            async with asyncio.timeout(self._settings.kafka.request_timeout_ms / 1000):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await _stop_producer(producer, 1.0)
            error = str(exc) or type(exc).__name__
            self._start_error = f"kafka producer cannot start: {error}"
            log.warning("kafka producer start failed; will retry", extra={"error": error})
            return False
        self._producer = producer
        self.broker_info = _broker_info(producer)
        log.info("kafka producer started", extra=self.broker_info)
        return True

    async def _check_topics(self) -> None:
        producer = self._producer
        wanted = set(self._settings.topics.names().values())
        if producer is None:
            reason: str | None = self._start_error
        else:
            try:
                async with asyncio.timeout(self._settings.kafka.readiness_interval_seconds):
                    cluster = await producer.client.fetch_all_metadata()
                missing = sorted(wanted - set(cluster.topics()))
                reason = f"topics missing: {', '.join(missing)}" if missing else None
            except (KafkaError, OSError, TimeoutError) as exc:
                reason = f"kafka broker unreachable: {str(exc) or type(exc).__name__}"
        if reason != self.readiness.kafka_reason:
            log.info("kafka readiness changed", extra={"ready": reason is None, "reason": reason})
        self.readiness.kafka_reason = reason


async def _stop_producer(producer: AIOKafkaProducer, within_seconds: float) -> bool:
    """`stop()` flushes first, and with the broker away an idempotent flush never ends."""
    try:
        async with asyncio.timeout(within_seconds):
            await producer.stop()
        return True
    except TimeoutError:
        with contextlib.suppress(TimeoutError, KafkaError, OSError):
            async with asyncio.timeout(1.0):
                await producer.client.close()  # the connections, without the flush
        return False
    except (KafkaError, OSError):
        return True


def _broker_info(producer: AIOKafkaProducer) -> dict[str, Any]:
    """What the producer negotiated: brokers and the Produce API version range they offer."""
    cluster = producer.client.cluster
    info: dict[str, Any] = {"brokers": len(cluster.brokers())}
    for conn in producer.client._conns.values():
        versions = getattr(conn, "_versions", None) or {}
        if 0 in versions:  # api key 0 is Produce
            info["produce_api_versions"] = list(versions[0])
            info["broker_api_keys"] = len(versions)
            break
    return info
