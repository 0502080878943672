"""The floor, measured beside the relay: bench/floor_server.py (aiohttp + uvloop + aiokafka, the
least a webhook endpoint can do and answer 200 only once Kafka has the body), on the relay's
cpu, with the relay's phases, payloads, connections and warm-up, on fresh topics of its own
laid out as the relay's (one per event type), and reconciled like the relay: every 200 must
have its record in Kafka.

Its phases run each right after the relay's same phase, so that the two see the machine as
alike as one run allows; the ratios the targets are stated in come from bench/paired.py, which
runs both at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import load
from bench.payloads import EVENT_TYPES, Payload
from bench.procstat import Sample, proc_memory_kib
from bench.progress import log
from bench.reconcile import consume_all
from bench.servers import PlainServer
from bench.session import phase_costs
from devsupport import topics as kafka_topics

WHAT = (
    "bench/floor_server.py: aiohttp + uvloop + aiokafka, bearer check, orjson parse, one record "
    "per request (acks=all, idempotent, linger 0, a key, 3 headers) to its event type's topic, "
    "200 once acknowledged"
)


class Floor:
    def __init__(
        self,
        workdir: Path,
        *,
        bootstrap: str,
        broker_pid: int | None,
        run_id: str,
        partitions: int,
        token: str,
        pinned: bool,
        notes: list[str],
    ) -> None:
        self.workdir = workdir
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        self.notes = notes
        self.prefix = f"bench.{run_id.lower()}.floor."
        self.topics = {t: self.prefix + t for t in EVENT_TYPES}
        self.partitions = partitions
        self.server = PlainServer(
            "bench.floor_server",
            ["--bootstrap", bootstrap, "--topic-prefix", self.prefix],
            token=token,
            log_path=workdir / "floor.log",
            pinned=pinned,
        )
        self.command = self.server.command
        self.phases: list[load.Phase] = []
        self.extra_results: list[dict[str, Any]] = []  # bench/paired.py's rounds
        self.recon: dict[str, Any] = {}
        self.peak_rss_mib: float | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def start(self) -> None:
        asyncio.run(
            kafka_topics.create(
                self.bootstrap, self.topics.values(), partitions=self.partitions, replication=1
            )
        )
        log("starting the floor: bench/floor_server.py")
        self.server.start()  # listening is ready: its producer starts before it listens

    def drive(self, phase: load.Phase, start: load.Start) -> load.Phase:
        """The relay's `phase` against the floor."""
        mine = replace(phase, name=f"floor-{phase.name}", result={}, relay={}, lag=None)
        log(f"{mine.name}: the same {phase.mode} loop against the floor")
        before = Sample.take(self.pid, self.broker_pid)
        mine.result = start(mine, self.url).result()
        after = Sample.take(self.pid, self.broker_pid)
        mine.relay = phase_costs(mine, before, after, self.notes)
        self.phases.append(mine)
        return mine

    def stop(self) -> None:
        if self.pid is not None and self.server.process and self.server.process.poll() is None:
            self.peak_rss_mib = round(proc_memory_kib(self.pid)["hwm"] / 1024, 1)
        self.server.stop()

    def reconcile(self, payloads: list[Payload], index: dict[bytes, int]) -> list[str]:
        """One record per 200, on some topic of the floor's; problems, if any."""
        ok = [0] * len(payloads)
        for result in [*(phase.result for phase in self.phases), *self.extra_results]:
            for i, n in enumerate(result["ok_by_payload"]):
                ok[i] += n
        log("floor: consuming its topics to reconcile")
        consumed = asyncio.run(consume_all(self.bootstrap, self.topics, index))
        found: Counter[int] = Counter()
        for (idx, _type), n in consumed["found"].items():
            found[idx] += n
        lost = sum(max(0, want - found[i]) for i, want in enumerate(ok))
        foreign = sum(consumed["foreign"].values())
        problems = []
        if lost:
            problems.append(f"floor: LOST RECORDS: {lost} requests answered 200 not in Kafka")
        if foreign:
            problems.append(f"floor: {foreign} record values match no payload sent")
        self.recon = {
            "ok": not problems,
            "answered_200": sum(ok),
            "records_consumed": consumed["consumed"],
            "lost": lost,
            "consume_seconds": consumed["seconds"],
        }
        return problems

    def delete_topics(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(kafka_topics.delete(self.bootstrap, self.topics.values()))
