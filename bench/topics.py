"""The run's topics: created fresh as `whatsapp-relay topics create` creates them, described
for reading back, and deleted from a broker that outlives the run.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from bench.progress import BenchError
from relay.config import Settings
from relay.topics import create_topics

ADMIN_TIMEOUT_MS = 30000


async def create(settings: Settings) -> None:
    """Create the topics the relay is configured with, or fail the run.

    The relay's own command does it (same partitions, same max.message.bytes), so the run
    measures the topics production gets. The harness does not wait for them to show up in the
    metadata: the relay is not ready (/readyz) until it sees them.
    """
    results = await create_topics(settings)
    # "exists" fails too: the names are unique per run, and an old topic's records would be
    # read back as foreign ones.
    refused = [f"{r.name} {r.status} {r.detail}".rstrip() for r in results if r.status != "created"]
    if refused:
        raise BenchError(f"could not create the run's topics: {refused}")


async def partitions(bootstrap: str, names: list[str]) -> dict[str, list[int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    out = {}
    for topic in described:
        parts = sorted(p["partition"] for p in topic.get("partitions") or [])
        if topic.get("error_code") or not parts:
            raise BenchError(f"topic {topic.get('topic')} cannot be read back: {topic}")
        out[topic["topic"]] = parts
    return out


async def delete(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        await admin.delete_topics(names, timeout_ms=ADMIN_TIMEOUT_MS)
    finally:
        await admin.close()
