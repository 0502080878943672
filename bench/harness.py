"""One benchmark run, step by step (the order is docs/benchmark.md's "What a run does").

Bench owns what a run starts (a broker, the relays and their topics, a work dir) and cleanup()
releases all of it, whatever happened; the modules it calls own one concern each (a relay's
phases and reconciliation: bench/session.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import broker as brokers
from bench import load, paired, reference, report
from bench import payloads as payload_gen
from bench import spool as spooling
from bench.cpus import LOAD_CPU, pin, pinning_problem, unpin
from bench.floor import Floor
from bench.procstat import busy_fraction, cpu_times
from bench.progress import BenchError, log
from bench.relay_process import RelayUnderTest
from bench.session import RelaySession
from devsupport import topics as kafka_topics

TOKEN = "bench-token-0123456789"  # noqa: S105 - a benchmark credential, never a real one
# The light phase: what most deployments run at (docs/benchmark.md), and the rate the CPU
# target against the floor is stated at.
LIGHT_RATE = 1000.0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = (
            dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.pin = bool(args.pin)
        self.payload_file = self.workdir / "payloads.jsonl"
        self.loadgen_bin = load.DEFAULT_BINARY
        self.broker: brokers.Broker | None = None
        self.broker_previous_affinity: str | None = None
        # The relay under test, then the --compare-cmd one if any.
        self.sessions: list[RelaySession] = []
        self.payloads: list[payload_gen.Payload] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.idle_check: dict[str, float] | None = None
        self.spool_directory: Path | None = None
        self.floor: Floor | None = None

    # -- environment -------------------------------------------------------------------------

    def check_machine(self) -> None:
        if self.pin and (problem := pinning_problem()):
            self.notes.append(problem)
            self.pin = False
        # Other work on the machine skews every figure; say so in the result.
        before = cpu_times()
        time.sleep(1.0)
        busy = busy_fraction(before, cpu_times())
        self.idle_check = busy
        if any(v > 0.15 for v in busy.values()):
            self.notes.append(
                f"machine not idle before the run (busy fraction per cpu {busy}): figures are noisy"
            )

    def get_broker(self) -> brokers.Broker:
        a = self.args
        bootstrap = a.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            self.broker = brokers.external(bootstrap)
        else:
            self.broker = brokers.start_private(Path(a.kafka_dir), a.kafka_port)
        pid = self.broker.pid
        if self.pin and pid:
            try:
                self.broker_previous_affinity = pin(pid, LOAD_CPU)
            except subprocess.CalledProcessError as exc:
                self.notes.append(f"could not pin the broker (pid {pid}): {exc.stderr}")
        elif self.pin:
            self.notes.append("broker process not found locally: it is not pinned to cpu 1")
        return self.broker

    def release_broker(self) -> None:
        b = self.broker
        if b is None:
            return
        # An external broker outlives the run: it gets its affinity back.
        if b.pid and self.broker_previous_affinity:
            unpin(b.pid, self.broker_previous_affinity)
        a = self.args
        if b.private and not a.keep_broker:
            brokers.stop_private(Path(a.kafka_dir), a.kafka_port, clean=not a.keep_topics)

    # -- the run -----------------------------------------------------------------------------

    def start_session(
        self,
        label: str,
        relay_cmd: str | None,
        broker: brokers.Broker,
        extra_env: list[str] | None = None,
    ) -> RelaySession:
        """A relay of the run ("relay", "compare" or "spool"), its own topics created, ready."""
        a = self.args
        workdir = self.workdir / label
        workdir.mkdir()
        infix = "" if label == "relay" else f".{label}"
        # Fresh, run-unique topics: reconciliation reads them whole.
        topics = {
            t: f"bench.{self.run_id.lower()}{infix}.whatsapp.{t}" for t in payload_gen.EVENT_TYPES
        }
        relay = RelayUnderTest(
            workdir,
            bootstrap=broker.bootstrap,
            token=TOKEN,
            topics=topics,
            partitions=a.partitions,
            relay_env=[*a.relay_env, *(extra_env or [])],
            relay_cmd=relay_cmd,
            pinned=self.pin,
        )
        session = RelaySession(label, relay, topics, broker_pid=broker.pid, notes=self.notes)
        self.sessions.append(session)
        session.start(a.ready_timeout)
        return session

    def start_floor(self, broker: brokers.Broker) -> Floor:
        """The floor (bench/floor.py), listening beside the relay for the run's phases."""
        workdir = self.workdir / "floor"
        workdir.mkdir()
        self.floor = Floor(
            workdir,
            bootstrap=broker.bootstrap,
            broker_pid=broker.pid,
            run_id=self.run_id,
            partitions=self.args.partitions,
            token=TOKEN,
            pinned=self.pin,
            notes=self.notes,
        )
        self.floor.start()
        return self.floor

    def start_at(self, phase: load.Phase, url: str) -> load.Running:
        """The load generator started on `phase` against `url`, with the run's payloads, token,
        timeout, cpus and work dir."""
        return load.start_phase(
            self.loadgen_bin,
            phase,
            url=url,
            token=TOKEN,
            payload_file=self.payload_file,
            request_timeout=self.args.request_timeout,
            workdir=self.workdir,
            pinned=self.pin,
        )

    def paired(
        self,
        main: RelaySession,
        other: tuple[str, str, int | None],
        account: Callable[[str, dict[str, Any]], None],
        light: load.Phase | None,
    ) -> list[dict[str, Any]]:
        """The relay and another server at once (bench/paired.py): the closed loop, and the
        light open-loop phase (the one at 1,000/s) if the run has it."""
        a = self.args
        sections = [load.Phase("paired-closed", "closed", a.paired_duration, 1.0, a.connections)]
        if light is not None:
            sections.append(
                load.Phase(
                    f"paired-{light.name}",
                    "open",
                    a.paired_duration,
                    1.0,
                    light.connections,
                    rate=light.rate,
                    arrivals=light.arrivals,
                )
            )
        done = []
        for phase in sections:
            time.sleep(a.pause)
            done.append(
                paired.measure(
                    phase,
                    rounds=a.paired_rounds,
                    relay=(main.relay.url, main.relay.pid),
                    other=other,
                    run=self.start_at,
                    account=account,
                )
            )
        return done

    def closed_phase(self, name: str) -> load.Phase:
        a = self.args
        return load.Phase(name, "closed", a.duration, a.warmup, a.connections)

    def open_phases(self, closed_acked_rps: float) -> list[load.Phase]:
        """The --rates, fractions of the closed loop resolved against what it acknowledged."""
        a = self.args
        phases = []
        for r in a.rates:
            try:
                rate = r.resolve(closed_acked_rps)
            except ValueError as exc:
                raise BenchError(f"--rates: {exc}") from exc
            phases.append(
                load.Phase(
                    f"open-{r.label}",
                    "open",
                    a.rate_duration,
                    a.rate_warmup,
                    a.open_connections,
                    rate=rate,
                    of_closed=r.value if r.relative else None,
                    arrivals=a.arrivals,
                )
            )
        return phases

    def spool_session(
        self, broker: brokers.Broker, closed_acked_rps: float
    ) -> tuple[RelaySession, dict[str, Any]]:
        """The relay spooling every request, through the direct path's phases (bench/spool.py)."""
        a = self.args
        self.spool_directory = (a.spool_dir or self.workdir) / f"spool-{self.run_id}"
        disk = spooling.note_disk(self.spool_directory, self.notes)
        session = self.start_session(
            "spool", a.relay_cmd, broker, spooling.relay_env(self.spool_directory)
        )
        before = spooling.commit_histogram(session)
        self.drive(session, self.closed_phase("spool-closed"))
        for phase in self.open_phases(closed_acked_rps):
            phase.name = f"spool-{phase.name}"
            time.sleep(a.pause)
            self.drive(session, phase)
        drained = spooling.wait_drained(session)
        commits = spooling.measure_commits(before, session)
        session.finish()
        info = {
            "directory": str(self.spool_directory),
            "file_system": disk,
            "drained_seconds": drained,
            "commit_ms": commits,
        }
        return session, info

    def drive(self, session: RelaySession, phase: load.Phase) -> None:
        session.run_phase(phase, self.start_at)

    def execute(self) -> dict[str, Any]:
        a = self.args
        started_at = dt.datetime.now(dt.UTC)
        self.check_machine()
        self.payloads = payload_gen.generate(a.payload_count, a.seed)
        payload_gen.write_jsonl(self.payloads, self.payload_file)
        index = {p.body: i for i, p in enumerate(self.payloads)}
        if len(index) != len(self.payloads):
            raise BenchError("duplicate payload bodies: reconciliation needs them distinct")
        self.loadgen_bin = Path(a.loadgen) if a.loadgen else load.build()

        broker = self.get_broker()
        main = self.start_session("relay", a.relay_cmd, broker)
        floor = self.start_floor(broker) if a.floor else None
        # The other version idles beside the relay until its turn, so the two can also be
        # measured at once.
        compare = self.start_session("compare", a.compare_cmd, broker) if a.compare_cmd else None
        # The floor runs each phase right after the relay: as alike a machine as one run has.
        closed = self.closed_phase("closed")
        self.drive(main, closed)
        if floor:
            time.sleep(a.pause)
            floor.drive(closed, self.start_at)
        light = None
        for phase in self.open_phases(closed.result["measured"]["ok_rps"]):
            time.sleep(a.pause)
            self.drive(main, phase)
            if floor:
                time.sleep(a.pause)
                floor.drive(phase, self.start_at)
            if phase.rate == LIGHT_RATE:
                light = phase
        paired_floor = None
        if floor:
            paired_floor = self.paired(
                main,
                ("floor", floor.url, floor.pid),
                lambda side, result: (
                    main.extra_results if side == "relay" else floor.extra_results
                ).append(result),
                light,
            )
        # The other version: the same closed loop, on the same broker, cpus and payloads, then
        # both at once.
        paired_compare = None
        if compare:
            time.sleep(a.pause)
            self.drive(compare, self.closed_phase("compare"))
            paired_compare = self.paired(
                main,
                ("compare", compare.relay.url, compare.relay.pid),
                lambda side, result: (
                    main.extra_results if side == "relay" else compare.extra_results
                ).append(result),
                light,
            )
            compare.finish()
        main.finish()
        if floor:
            floor.stop()

        # The spooled path: the same phases, every request fsynced in the spool first.
        spooled = None
        if a.spool:
            time.sleep(a.pause)
            spooled = self.spool_session(broker, closed.result["measured"]["ok_rps"])

        measured_reference = None
        if a.reference:
            measured_reference = reference.measure(
                self.start_at,
                duration=a.reference_duration,
                warmup=a.warmup,
                connections=a.connections,
                token=TOKEN,
                workdir=self.workdir,
                pinned=self.pin,
                notes=self.notes,
            )

        for session in self.sessions:
            session.reconcile(broker.bootstrap, self.payloads, index)
            self.problems += session.problems
        if floor:
            self.problems += floor.reconcile(self.payloads, index)
        return report.build(
            a,
            run_id=self.run_id,
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC),
            pinned=self.pin,
            payloads=self.payloads,
            main=main,
            compare=compare,
            spooled=spooled,
            reference=measured_reference,
            floor=floor,
            paired_floor=paired_floor,
            paired_compare=paired_compare,
            kafka_version=broker.version,
            busy_before_run=self.idle_check,
            notes=self.notes,
            problems=self.problems,
        )

    def cleanup(self) -> None:
        for session in self.sessions:
            if session.relay.alive():
                with contextlib.suppress(Exception):
                    session.relay.stop()
        if self.floor is not None:
            self.floor.stop()
            b = self.broker
            if (
                b is not None
                and not self.args.keep_topics
                and not (b.private and not self.args.keep_broker)
            ):
                self.floor.delete_topics()
        b = self.broker
        created = [n for s in self.sessions if s.topics_created for n in s.topics.values()]
        if (
            created
            and b is not None
            and not self.args.keep_topics
            and not (b.private and not self.args.keep_broker)
        ):
            # A broker that outlives the run (external, or --keep-broker) should not collect
            # a set of topics per run. (A private broker that stops is wiped instead.)
            try:
                asyncio.run(kafka_topics.delete(b.bootstrap, created))
            except Exception as exc:  # cleanup must not hide the result
                log(f"could not delete the bench topics: {exc}")
        self.release_broker()
        if self.spool_directory is not None and not self.args.keep_workdir:
            shutil.rmtree(self.spool_directory, ignore_errors=True)
        if not self.args.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log(f"work files kept in {self.workdir}")
