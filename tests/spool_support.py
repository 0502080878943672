"""What the spool's integration tests share: a relay process's spool settings, a load that
sends each key's requests one after another (so their order is known), and a read-back of the
topics in partition order to check that order held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka import ConsumerRecord

from devsupport import samples
from devsupport.ports import LOOPBACK
from devsupport.relay_process import RelayProcess
from relay.config import EventType
from tests.relays import TOKEN

# Kafka settings that notice an outage, and its end, within seconds.
FAST_KAFKA = {
    "RELAY_KAFKA__READINESS_INTERVAL_SECONDS": "0.5",
    "RELAY_KAFKA__REQUEST_TIMEOUT_MS": "3000",
    "RELAY_KAFKA__RESTART_BACKOFF_MAX_SECONDS": "1",
}


def spool_env(
    bootstrap: str, topics: dict[str, str], directory: Path, **spool: object
) -> dict[str, str]:
    """A relay process publishing to `topics` with its spool in `directory`."""
    return {
        "RELAY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RELAY_AUTH__BEARER_TOKENS": json.dumps([TOKEN]),
        **{f"RELAY_TOPICS__{t.upper()}": name for t, name in topics.items()},
        **FAST_KAFKA,
        "RELAY_SHUTDOWN__TIMEOUT_SECONDS": "5",
        "RELAY_SPOOL__ENABLED": "true",
        "RELAY_SPOOL__DIRECTORY": str(directory),
        **{f"RELAY_SPOOL__{key.upper()}": str(value) for key, value in spool.items()},
    }


def topic_names(prefix: str) -> dict[str, str]:
    return {t.value: f"{prefix}.{t.value}" for t in EventType}


def keyed_webhook(key: int, seq: int) -> bytes:
    """Request `seq` of user `key`: all of one user's requests share a record key."""
    change = samples.message_change(sender=f"1777{key:06d}", text=f"request {seq}")
    return samples.body(samples.envelope(change))


def start_serving(relay: RelayProcess, within: float = 60.0) -> RelayProcess:
    """Start a relay that may never become ready (Kafka out of reach since its start) and
    wait until its webhook port accepts connections."""
    relay.start(ready=False, within=within)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and relay.alive():
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, relay.port), 1):
            return relay
        time.sleep(0.1)
    raise AssertionError(f"the webhook port never accepted:\n{relay.log_tail()}")


def metric(relay: RelayProcess, name: str) -> float:
    try:
        return relay.metric(name)
    except (OSError, RuntimeError, AssertionError):
        return -1.0


async def until_drained(relay: RelayProcess, within: float) -> None:
    """Wait until the relay's spool holds nothing Kafka has not acknowledged."""
    async with asyncio.timeout(within):
        while await asyncio.to_thread(metric, relay, "whatsapp_relay_spool_requests") != 0:
            await asyncio.sleep(0.25)


@dataclass
class Sent:
    key: int
    seq: int
    body: bytes
    status: int  # 0: no HTTP answer
    at: float


@dataclass
class KeyedLoad:
    """`keys` senders, each posting its user's next request once the previous one got a 200,
    every `period` seconds; a request that gets anything else is sent again (as a sender's
    retry would), after `retry` seconds."""

    url: str
    keys: int
    period: float
    retry: float = 0.2
    answers: list[Sent] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=self.keys * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await asyncio.gather(*(self._sender(http, key) for key in range(self.keys)))

    async def _sender(self, http: aiohttp.ClientSession, key: int) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        await asyncio.sleep(self.period * key / self.keys)  # spread the senders out
        for seq in itertools.count():
            body = keyed_webhook(key, seq)
            while True:
                if self.stop.is_set():
                    return
                status = 0
                try:
                    async with http.post(self.url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                self.answers.append(Sent(key, seq, body, status, time.monotonic()))
                if status == 200:
                    break
                await asyncio.sleep(self.retry)
            await asyncio.sleep(self.period)

    def accepted(self) -> list[Sent]:
        return [a for a in self.answers if a.status == 200]


def order_problems(load: KeyedLoad, records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    """Every request answered 200 is in Kafka, and each key's requests first appear in the
    order they were sent (duplicates, at least once, may follow)."""
    which = {a.body: (a.key, a.seq) for a in load.answers}
    first: dict[int, list[int]] = defaultdict(list)
    seen: set[bytes] = set()
    for record in records:
        if record.value in which and record.value not in seen:
            seen.add(record.value)
            key, seq = which[record.value]
            first[key].append(seq)
    problems = []
    acked: dict[int, list[int]] = defaultdict(list)
    for answer in load.accepted():
        acked[answer.key].append(answer.seq)
    for key, seqs in sorted(acked.items()):
        missing = sorted(set(seqs) - set(first[key]))
        if missing:
            problems.append(f"key {key}: acknowledged requests missing from Kafka: {missing}")
        wanted = set(seqs)
        order = [s for s in first[key] if s in wanted]
        if order != sorted(order):
            problems.append(f"key {key}: out of order in Kafka: {order}")
    return problems


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, bytes]:
    return {name: bytes(value) for name, value in record.headers}
