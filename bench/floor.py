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
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import load
from bench.cpus import RELAY_CPU, on_cpu
from bench.payloads import EVENT_TYPES, Payload
from bench.procstat import Sample, proc_memory_kib
from bench.progress import BenchError, log
from bench.reconcile import consume_all
from bench.session import phase_costs
from devsupport import topics as kafka_topics
from devsupport.ports import LOOPBACK, free_port

REPO = Path(__file__).resolve().parent.parent
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
        self.port = free_port()
        self.command = on_cpu(
            [
                sys.executable,
                "-m",
                "bench.floor_server",
                "--port",
                str(self.port),
                "--token",
                token,
                "--bootstrap",
                bootstrap,
                "--topic-prefix",
                self.prefix,
            ],
            RELAY_CPU,
            pinned,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.phases: list[load.Phase] = []
        self.extra_results: list[dict[str, Any]] = []  # bench/paired.py's rounds
        self.recon: dict[str, Any] = {}
        self.peak_rss_mib: float | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/webhook"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, within: float = 30.0) -> None:
        asyncio.run(
            kafka_topics.create(
                self.bootstrap, self.topics.values(), partitions=self.partitions, replication=1
            )
        )
        log("starting the floor: bench/floor_server.py")
        log_file = (self.workdir / "floor.log").open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log_file.close()
        # It has no readiness endpoint: listening is ready (its producer starts before).
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the floor server exited: see {self.workdir / 'floor.log'}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), 0.5):
                return
            time.sleep(0.1)
        raise BenchError(f"the floor server did not listen within {within:g} s")

    def drive(self, phase: load.Phase, run: Any) -> load.Phase:
        """The relay's `phase` against the floor (`run` drives a phase at a URL)."""
        mine = replace(phase, name=f"floor-{phase.name}", result={}, relay={}, lag=None)
        log(f"{mine.name}: the same {phase.mode} loop against the floor")
        before = Sample.take(self.pid, self.broker_pid)
        mine.result = run(mine, self.url)
        after = Sample.take(self.pid, self.broker_pid)
        mine.relay = phase_costs(mine, before, after, self.notes)
        self.phases.append(mine)
        return mine

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        self.peak_rss_mib = round(proc_memory_kib(proc.pid)["hwm"] / 1024, 1)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

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
