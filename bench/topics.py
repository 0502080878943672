"""The run's topics: created fresh as `whatsapp-relay topics create` creates them, and
described for reading back (deleting them is devsupport.topics.delete).
"""

from __future__ import annotations

from bench.progress import BenchError
from devsupport import topics
from relay.config import Settings
from relay.topics import create_topics


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
    try:
        return await topics.partitions(bootstrap, names)
    except LookupError as exc:
        raise BenchError(str(exc)) from exc
