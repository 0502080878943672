"""One benchmark run, step by step (the order is docs/benchmark.md's "What a run does").

Bench owns what a run starts (a broker, topics, the relay, a work dir) and cleanup() releases
all of it, whatever happened; the modules it calls own one concern each.
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
from pathlib import Path
from typing import Any

from bench import broker as brokers
from bench import load, reference, report
from bench import payloads as payload_gen
from bench import topics as run_topics
from bench.cpus import LOAD_CPU, pin, pinning_problem, unpin
from bench.procstat import (
    Sample,
    busy_fraction,
    cpu_times,
    cpus_allowed,
    other_cpu_seconds,
    uvloop_loaded,
)
from bench.progress import BenchError, log
from bench.promtext import parse_metrics
from bench.reconcile import consume_all, reconcile
from bench.relay_process import RelayUnderTest
from devsupport import topics as kafka_topics

TOKEN = "bench-token-0123456789"  # noqa: S105 - a benchmark credential, never a real one


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = (
            dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.pin = bool(args.pin)
        self.broker: brokers.Broker | None = None
        self.broker_previous_affinity: str | None = None
        self.relay: RelayUnderTest | None = None
        # Fresh, run-unique topics: reconciliation reads them whole.
        self.topics = {
            t: f"bench.{self.run_id.lower()}.whatsapp.{t}" for t in payload_gen.EVENT_TYPES
        }
        self.topics_created = False
        self.payloads: list[payload_gen.Payload] = []
        self.phases: list[load.Phase] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.idle_check: dict[str, float] | None = None

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

    def plan(self) -> list[load.Phase]:
        a = self.args
        phases = [load.Phase("closed", "closed", a.duration, a.warmup, a.connections)]
        for r in a.rates:
            phases.append(
                load.Phase(
                    f"open-{r:g}",
                    "open",
                    a.rate_duration,
                    a.rate_warmup,
                    a.open_connections,
                    rate=r,
                )
            )
        return phases

    def run_phase(
        self, relay: RelayUnderTest, loadgen_bin: Path, phase: load.Phase, payload_file: Path
    ) -> None:
        rate = f" at {phase.rate:g}/s" if phase.rate else f" with {phase.connections} connections"
        log(
            f"{phase.name}: {phase.mode} loop{rate}, "
            f"{phase.warmup:g} s warm-up + {phase.duration:g} s"
        )
        broker_pid = self.broker.pid if self.broker else None
        before = Sample.take(relay.pid, broker_pid)
        phase.result = load.run_phase(
            loadgen_bin,
            phase,
            url=relay.url,
            token=TOKEN,
            payload_file=payload_file,
            request_timeout=self.args.request_timeout,
            workdir=self.workdir,
            pinned=self.pin,
        )
        after = Sample.take(relay.pid, broker_pid)
        phase.relay = self.costs(phase, before, after)
        if not relay.alive():
            raise BenchError(f"the relay died during {phase.name}:\n{relay.tail()}")
        m = phase.result["measured"]
        log(
            f"{phase.name}: {m['ok_rps']:.0f} acked/s, p99 {m['latency_ms']['p99']:.2f} ms, "
            f"non-200 {phase.result['answered'] - phase.result['by_status'].get('200', 0)}, "
            f"errors {sum(phase.result['errors'].values())}"
        )

    def costs(self, phase: load.Phase, before: Sample, after: Sample) -> dict[str, Any]:
        """What a phase cost the relay, the broker and the generator, from two /proc samples."""
        wall = after.wall - before.wall
        answered = phase.result["answered"]
        relay: dict[str, Any] = {"wall_seconds": round(wall, 2)}
        if before.relay_cpu is not None and after.relay_cpu is not None:
            cpu = after.relay_cpu - before.relay_cpu
            relay["cpu_seconds"] = round(cpu, 3)
            relay["cpu_utilisation"] = round(cpu / wall, 3) if wall else None
            relay["cpu_seconds_per_1000_requests"] = (
                round(cpu / answered * 1000, 4) if answered else None
            )
        if before.broker_cpu is not None and after.broker_cpu is not None:
            relay["broker_cpu_seconds"] = round(after.broker_cpu - before.broker_cpu, 3)
        lg = phase.result["loadgen"]
        relay["loadgen_cpu_seconds"] = round(lg["cpu_user_seconds"] + lg["cpu_system_seconds"], 3)
        relay["core_busy"] = busy_fraction(before.cores, after.cores)
        # CPU time used by other work on the machine during the phase: it competes with the
        # relay, the broker and the generator (if it runs on cpu 0 or 1, which nothing stops),
        # and skews the figures. (core_busy, from /proc/stat, is tick-sampled: rough.)
        if wall:
            other = other_cpu_seconds(before, after)
            relay["other_processes_cpu_seconds"] = round(other, 3)
            if other / wall > 0.1:
                self.notes.append(
                    f"{phase.name}: other processes used {other / wall:.0%} of a core "
                    "meanwhile: this phase's figures are skewed"
                )
        relay["rss_mib"] = round(after.mem["rss"] / 1024, 1)
        relay["peak_rss_mib"] = round(after.mem["hwm"] / 1024, 1)
        return relay

    def execute(self) -> dict[str, Any]:
        a = self.args
        started_at = dt.datetime.now(dt.UTC)
        self.check_machine()
        self.payloads = payload_gen.generate(a.payload_count, a.seed)
        payload_file = self.workdir / "payloads.jsonl"
        payload_gen.write_jsonl(self.payloads, payload_file)
        index = {p.body: i for i, p in enumerate(self.payloads)}
        if len(index) != len(self.payloads):
            raise BenchError("duplicate payload bodies: reconciliation needs them distinct")
        loadgen_bin = Path(a.loadgen) if a.loadgen else load.build()

        broker = self.get_broker()
        self.relay = relay = RelayUnderTest(
            self.workdir,
            bootstrap=broker.bootstrap,
            token=TOKEN,
            topics=self.topics,
            partitions=a.partitions,
            relay_env=a.relay_env,
            relay_cmd=a.relay_cmd,
            pinned=self.pin,
        )
        asyncio.run(run_topics.create(relay.settings()))
        self.topics_created = True
        relay.start(ready_timeout=a.ready_timeout)
        start_sample = Sample.take(relay.pid, broker.pid)
        relay_info: dict[str, Any] = {"command": relay.command}
        if (allowed := cpus_allowed(relay.pid)) is not None:
            relay_info["cpus_allowed"] = allowed
        relay_info["rss_mib_at_start"] = round(start_sample.mem["rss"] / 1024, 1)
        relay_info["uvloop_loaded"] = uvloop_loaded(relay.pid)
        if relay_info["uvloop_loaded"] is False:
            self.notes.append("the relay process has not loaded uvloop: not how production runs")

        self.phases = self.plan()
        for i, phase in enumerate(self.phases):
            if i:
                time.sleep(a.pause)
            self.run_phase(relay, loadgen_bin, phase, payload_file)

        end_sample = Sample.take(relay.pid, broker.pid)
        metrics = self.scrape_metrics(relay)
        relay_info["peak_rss_mib"] = round(end_sample.mem["hwm"] / 1024, 1)
        if start_sample.relay_cpu is not None and end_sample.relay_cpu is not None:
            relay_info["cpu_seconds_total"] = round(
                end_sample.relay_cpu - start_sample.relay_cpu, 2
            )
        stopped, problems = relay.stop()
        relay_info.update(stopped)
        self.problems += problems

        measured_reference = None
        if a.reference:
            measured_reference = reference.measure(
                loadgen_bin,
                duration=a.reference_duration,
                connections=a.connections,
                token=TOKEN,
                payload_file=payload_file,
                request_timeout=a.request_timeout,
                workdir=self.workdir,
                pinned=self.pin,
                notes=self.notes,
            )

        recon = self.reconcile(broker.bootstrap, index, metrics)
        return report.build(
            a,
            run_id=self.run_id,
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC),
            pinned=self.pin,
            topics=self.topics,
            payloads=self.payloads,
            phases=self.phases,
            relay_info=relay_info,
            reference=measured_reference,
            recon=recon,
            metrics=metrics,
            kafka_version=broker.version,
            busy_before_run=self.idle_check,
            notes=self.notes,
            problems=self.problems,
        )

    def scrape_metrics(self, relay: RelayUnderTest) -> dict[str, Any]:
        try:
            status, body = relay.scrape("/metrics")
        except OSError as exc:
            return {"error": str(exc)}
        return parse_metrics(body.decode(errors="replace")) if status == 200 else {"error": status}

    def reconcile(
        self, bootstrap: str, index: dict[bytes, int], metrics: dict[str, Any]
    ) -> dict[str, Any]:
        # Over everything sent, warm-ups included.
        sent = [0] * len(self.payloads)
        ok = [0] * len(self.payloads)
        for phase in self.phases:
            for i, (s, o) in enumerate(
                zip(phase.result["sent_by_payload"], phase.result["ok_by_payload"], strict=True)
            ):
                sent[i] += s
                ok[i] += o
        log("consuming every topic to reconcile")
        consumed = asyncio.run(consume_all(bootstrap, self.topics, index))
        recon = reconcile(self.payloads, sent, ok, consumed)
        self.problems += recon["problems"]
        if "error" in metrics:
            self.notes.append(f"could not scrape the relay's /metrics: {metrics.get('error')}")
            return recon
        published = metrics.get("whatsapp_relay_records_published_total", {})
        recon["relay_metric_records_published"] = {
            t: published.get(f'{{event_type="{t}"}}') for t in payload_gen.EVENT_TYPES
        }
        # The relay's own count of 200s should agree with the load generator's.
        accepted = metrics.get("whatsapp_relay_requests_total", {}).get('{outcome="accepted"}')
        recon["relay_metric_accepted"] = accepted
        if accepted is not None and int(accepted) != recon["answered_200"]:
            self.notes.append(
                f"the relay counted {int(accepted)} accepted requests, the load generator "
                f"{recon['answered_200']} answers 200"
            )
        return recon

    def cleanup(self) -> None:
        if self.relay is not None and self.relay.alive():
            with contextlib.suppress(Exception):
                self.relay.stop()
        b = self.broker
        if (
            self.topics_created
            and b is not None
            and not self.args.keep_topics
            and not (b.private and not self.args.keep_broker)
        ):
            # A broker that outlives the run (external, or --keep-broker) should not collect
            # a set of topics per run. (A private broker that stops is wiped instead.)
            try:
                asyncio.run(kafka_topics.delete(b.bootstrap, list(self.topics.values())))
            except Exception as exc:  # cleanup must not hide the result
                log(f"could not delete the bench topics: {exc}")
        self.release_broker()
        if not self.args.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log(f"work files kept in {self.workdir}")
