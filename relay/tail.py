"""`whatsapp-relay tail TOPIC`: print records with key and headers, for trying things out."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from relay.config import EventType, Settings
from relay.kafka_options import connection_options


def resolve_topic(settings: Settings, name: str) -> str:
    """Accept an event type (`status`) as well as a topic name (`whatsapp.status`)."""
    try:
        return settings.topics.for_type(EventType(name))
    except ValueError:
        return name


def format_record(record: ConsumerRecord[bytes, bytes]) -> str:
    key = record.key.decode("utf-8", "replace") if record.key else ""
    lines = [f"--- {record.topic}[{record.partition}]@{record.offset} key={key}"]
    lines += [f"{name}: {value.decode('utf-8', 'replace')}" for name, value in record.headers]
    lines.append(record.value.decode("utf-8", "replace") if record.value else "")
    return "\n".join(lines)


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    idle_seconds: float | None,
    out: TextIO = sys.stdout,
) -> None:
    """Print records until `limit` are printed, `idle_seconds` pass without one, or Ctrl-C."""
    consumer = AIOKafkaConsumer(
        resolve_topic(settings, topic),
        **connection_options(settings.kafka),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    printed = 0
    try:
        while limit is None or printed < limit:
            batches = await consumer.getmany(timeout_ms=int((idle_seconds or 3600) * 1000))
            if not batches and idle_seconds is not None:
                break
            for records in batches.values():
                for record in records:
                    print(format_record(record), file=out, flush=True)
                    printed += 1
    except asyncio.CancelledError:
        pass
    finally:
        await consumer.stop()
