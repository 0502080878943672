"""A relay under steady load while Kafka brokers crash, hang and come back.

The harness behind the failover test (tests/integration/test_failover.py) and the failover
measurements (`python -m bench.failover`), which both import it from here: an open-loop load of
unique webhooks against a real relay process, a watch on its /readyz, faults injected into a
real ``LocalKafkaCluster``, and a read-back of every topic to reconcile what Kafka holds against
what the relay answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka.errors import KafkaError

from devsupport import samples, topics
from devsupport.local_kafka import LocalKafkaCluster

TOKEN = "failover-token-0123456789"  # noqa: S105 - a test credential, never a real one
# A crashed or paused node is fenced by the controller after broker.session.timeout.ms (9 s by
# default); every wait below is bounded well past that.
RECOVERY_BOUND_S = 60.0
# Describing the topics while a node is down or paused: short, so that the loops below retry
# instead of waiting out a request on the dead node.
DESCRIBE_TIMEOUT_MS = 15000


def webhook(index: int) -> bytes:
    """A unique body: statuses mostly, messages every fourth, as in real traffic."""
    if index % 4 == 0:
        change = samples.message_change(sender=f"1555{index:08d}", text=f"message {index}")
    else:
        change = samples.status_change(recipient=f"1666{index:08d}")
    return samples.body(samples.envelope(change))


@dataclass(slots=True)
class Answer:
    due: float  # when the request was scheduled (time.monotonic), not when it left
    done: float
    status: int  # 0: no HTTP answer at all (connection error, timeout)
    body: bytes
    error: str = ""


class SteadyLoad:
    """Posts unique webhooks at a fixed rate (open loop: a slow answer never slows the load) and
    keeps every answer."""

    def __init__(
        self, url: str, rate: float, *, request_timeout: float = 30.0, token: str = TOKEN
    ) -> None:
        self.url = url
        self.rate = rate
        self.answers: list[Answer] = []
        self.pending: dict[int, float] = {}  # request index -> due
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(limit=2048)
        async with aiohttp.ClientSession(connector=connector, timeout=self._timeout) as http:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            for index in itertools.count():
                due = start + index / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if stop.is_set():
                    break
                task = asyncio.create_task(self._post(http, index, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)

    async def _post(self, http: aiohttp.ClientSession, index: int, due: float) -> None:
        body = webhook(index)
        self.pending[index] = due
        status, error = 0, ""
        try:
            async with http.post(self.url, data=body, headers=self._headers) as response:
                await response.read()
                status = response.status
                if status == 503 and not response.headers.get("Retry-After"):
                    error = "503 without Retry-After"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = repr(exc)
        finally:
            del self.pending[index]
        self.answers.append(Answer(due, time.monotonic(), status, body, error))

    def settled_since(self, since: float, quiet: float = 2.0) -> bool:
        """True when every request of the last `quiet` seconds was answered 200 and none sent
        before then is still waiting: the relay serves normally again."""
        now = time.monotonic()
        if now - since < quiet or any(due < now - quiet for due in self.pending.values()):
            return False
        recent = [a for a in self.answers if a.due >= max(since, now - quiet)]
        return bool(recent) and all(a.status == 200 for a in recent)


class ReadinessWatch:
    """Polls the relay's /readyz and keeps every answer: (time, status, reason)."""

    def __init__(self, admin_url: str, period: float = 0.2) -> None:
        self.url = f"{admin_url}/readyz"
        self.period = period
        self.samples: list[tuple[float, int, str]] = []

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                status, reason = 0, ""
                try:
                    async with http.get(self.url) as response:
                        status = response.status
                        reason = str((await response.json()).get("reason", ""))
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    reason = repr(exc)
                self.samples.append((time.monotonic(), status, reason))
                await asyncio.sleep(self.period)

    def not_ready(self, start: float, end: float) -> list[tuple[float, int, str]]:
        return [s for s in self.samples if start <= s[0] < end and s[1] != 200]


@dataclass
class Fault:
    """One injected fault: what, on which node, when, and when the node was back."""

    kind: str  # "crash" (SIGKILL), "controller crash", "hang" (SIGSTOP ... SIGCONT)
    node: int
    at: float
    back: float = 0.0
    recovered: float = 0.0  # when the load was answered 200 throughout again

    def describe(self, answers: Iterable[Answer], until: float) -> dict[str, Any]:
        """The fault's refusals: every answer sent from the fault until `until`."""
        during = [a for a in answers if self.at <= a.due < until]
        refused = [a for a in during if a.status == 503]
        return {
            "fault": self.kind,
            "node": self.node,
            "requests": len(during),
            "refused": len(refused),
            # The 503 window: from the fault to the last request that was refused (send time).
            "window_s": round(max(a.due for a in refused) - self.at, 2) if refused else 0.0,
            "recovered_s": round(self.recovered - self.at, 2) if self.recovered else None,
            "statuses": dict(Counter(a.status for a in during)),
        }


@dataclass
class Traffic:
    load: SteadyLoad
    readiness: ReadinessWatch
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def start(cls, url: str, admin_url: str, rate: float) -> Traffic:
        traffic = cls(SteadyLoad(url, rate), ReadinessWatch(admin_url))
        traffic.tasks = [
            asyncio.create_task(traffic.load.run(traffic.stop)),
            asyncio.create_task(traffic.readiness.run(traffic.stop)),
        ]
        return traffic

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def until_settled(self, since: float, within: float = RECOVERY_BOUND_S) -> float:
        """Wait until the relay answers 200 throughout again; when that began."""
        async with asyncio.timeout(within):
            while not self.load.settled_since(since):  # noqa: ASYNC110 - polls the load's answers
                await asyncio.sleep(0.2)
        return time.monotonic()


# ----------------------------------------------------------------------------- the cluster


async def busiest_leader(cluster: LocalKafkaCluster, names: Iterable[str]) -> int:
    """The node leading most of the topics' partitions."""
    for attempt in range(3):  # a busy machine may keep a broker from answering in time
        try:
            partitions = await topics.describe(
                cluster.bootstrap_servers, names, timeout_ms=DESCRIBE_TIMEOUT_MS
            )
            break
        except KafkaError:
            if attempt == 2:
                raise
    leaders = Counter(p["leader"] for p in partitions)
    return int(leaders.most_common(1)[0][0])


async def wait_in_sync(
    bootstrap: str, names: list[str], replicas: int, within: float = RECOVERY_BOUND_S
) -> None:
    """Wait until every partition has all its replicas in sync again (a node that restarted
    has caught up), so the next fault starts from a whole cluster."""
    async with asyncio.timeout(within):
        while True:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):  # a node still starting
                partitions = await topics.describe(bootstrap, names, timeout_ms=DESCRIBE_TIMEOUT_MS)
                if partitions and all(len(p["isr"]) == replicas for p in partitions):
                    return
            await asyncio.sleep(0.5)


async def read_back(bootstrap: str, names: Iterable[str]) -> Counter[bytes]:
    """Every record value of the topics, with how often it is there."""
    records = await topics.read_all(bootstrap, names, describe_timeout_ms=DESCRIBE_TIMEOUT_MS)
    return Counter(record.value for record in records)


FAULTS = ("crash", "controller crash", "hang")


async def inject(
    cluster: LocalKafkaCluster,
    traffic: Traffic,
    topics: list[str],
    kind: str,
    *,
    hang_seconds: float = 15.0,
) -> Fault:
    """One fault, under load, until the cluster is whole again.

    crash: SIGKILL the node leading most of the topics' partitions; once the relay answers 200
    throughout again, restart it. controller crash: the same for the quorum's active
    controller. hang: SIGSTOP the busiest leader for `hang_seconds`, then SIGCONT (a long GC
    pause, a stuck disk, a frozen VM: connections stay open, nothing answers). Either way, wait
    until every replica is back in sync, so the next fault starts from a whole cluster.
    """
    if kind == "controller crash":
        node = cluster.active_controller()
    else:
        node = await busiest_leader(cluster, topics)
    fault = Fault(kind, node, time.monotonic())
    cluster.signal(node, signal.SIGSTOP if kind == "hang" else signal.SIGKILL)
    settled = asyncio.create_task(traffic.until_settled(fault.at))
    try:
        if kind == "hang":
            await asyncio.wait({settled}, timeout=hang_seconds)
            cluster.signal(node, signal.SIGCONT)
            fault.back = time.monotonic()
            fault.recovered = await settled
        else:
            fault.recovered = await settled
            await asyncio.to_thread(cluster.start)
            fault.back = time.monotonic()
    finally:
        settled.cancel()
        if kind == "hang" and not fault.back:
            cluster.signal(node, signal.SIGCONT)
    await wait_in_sync(cluster.bootstrap_servers, topics, cluster.nodes)
    return fault
