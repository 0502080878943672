"""Topics as tests and the benchmark handle them: created with exactly the layout an experiment
needs, described, read back, counted, deleted so that a long-lived broker does not fill up with
them.

The relay's own topics are created by the product's ``relay.topics.create_topics`` (what
``whatsapp-relay topics create`` runs): use that whenever the point is the topics production
gets. Every admin client here is closed again, also when it could not start: an unclosed one
warns, and the suite turns warnings into errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

# Long enough for a broker on a loaded 2-core machine, short enough that a dead one shows.
ADMIN_TIMEOUT_MS = 30000


@contextlib.asynccontextmanager
async def admin_client(
    bootstrap: str, *, timeout_ms: int = ADMIN_TIMEOUT_MS
) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def create(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication: int,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create the topics with this layout (the broker's errors raise)."""
    new = [NewTopic(n, partitions, replication, topic_configs=dict(configs or {})) for n in names]
    async with admin_client(bootstrap) as admin:
        await admin.create_topics(new)


async def describe(
    bootstrap: str, names: Iterable[str], *, timeout_ms: int = ADMIN_TIMEOUT_MS
) -> list[dict[str, Any]]:
    """Every partition of the topics that exist: topic, partition, leader, replicas, isr."""
    async with admin_client(bootstrap, timeout_ms=timeout_ms) as admin:
        topics = await admin.describe_topics(list(names))
    return [
        {"topic": t["topic"], **p} for t in topics for p in t["partitions"] if t["error_code"] == 0
    ]


async def partitions(bootstrap: str, names: Iterable[str]) -> dict[str, list[int]]:
    """Each topic's partition numbers; a topic that cannot be read back raises LookupError."""
    async with admin_client(bootstrap) as admin:
        described = await admin.describe_topics(list(names))
    found = {}
    for topic in described:
        numbers = sorted(p["partition"] for p in topic.get("partitions") or [])
        if topic.get("error_code") or not numbers:
            raise LookupError(f"topic {topic.get('topic')} cannot be read back: {topic}")
        found[topic["topic"]] = numbers
    return found


async def delete(bootstrap: str, names: Iterable[str]) -> None:
    """Delete the topics (the broker's errors raise)."""
    wanted = list(names)
    if not wanted:
        return
    async with admin_client(bootstrap) as admin:
        await admin.delete_topics(wanted, timeout_ms=ADMIN_TIMEOUT_MS)


async def delete_prefixed(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (a test's or a run's own)."""
    async with admin_client(bootstrap) as admin:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names, timeout_ms=ADMIN_TIMEOUT_MS)


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
        numbers = sorted(await _partitions_known(consumer, topic))
        assigned = [TopicPartition(topic, number) for number in numbers]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
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


async def read_all(
    bootstrap: str,
    names: Iterable[str],
    *,
    within: float = 120.0,
    describe_timeout_ms: int = ADMIN_TIMEOUT_MS,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record the topics hold now, partition by partition in offset order (to their end
    offsets when asked: records appended meanwhile may or may not be in)."""
    described = await describe(bootstrap, names, timeout_ms=describe_timeout_ms)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    try:
        assigned = [TopicPartition(p["topic"], p["partition"]) for p in described]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        async with asyncio.timeout(within):
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                    found.setdefault(tp, []).extend(batch)
    finally:
        await consumer.stop()
    return [record for tp in sorted(found) for record in found[tp]]


async def size(bootstrap: str, topic: str) -> int:
    """How many records a topic holds, from its end offsets (no waiting)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        known = [TopicPartition(topic, n) for n in await _partitions_known(consumer, topic)]
        ends = await consumer.end_offsets(known)
        starts = await consumer.beginning_offsets(known)
        return sum(ends[p] - starts[p] for p in known)
    finally:
        await consumer.stop()


async def _partitions_known(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    async with asyncio.timeout(10):
        while True:
            known = consumer.partitions_for_topic(topic)
            if known:
                return set(known)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
