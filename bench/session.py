"""One relay measured in a run: the relay under test, or the one --compare-cmd names. Each has
its own fresh topics, process, phases and reconciliation; the broker, the payloads, the load
generator and the pinning are the run's and the same for both.

Per phase it records what the relay cost (two /proc samples) and its event-loop lag (two
/metrics scrapes, outside the load generator's run so that no scrape lands in the measured
window); at the end its own metrics, how it stopped, and every record read back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import load
from bench import payloads as payload_gen
from bench import topics as run_topics
from bench.looplag import METRIC as LAG_METRIC
from bench.looplag import lag_during
from bench.procstat import Sample, busy_fraction, cpus_allowed, other_cpu_seconds, uvloop_loaded
from bench.progress import BenchError, log
from bench.promtext import Histogram, parse_histogram, parse_metrics
from bench.reconcile import consume_all, reconcile
from bench.relay_process import RelayUnderTest


class RelaySession:
    def __init__(
        self,
        label: str,
        relay: RelayUnderTest,
        topics: dict[str, str],
        *,
        broker_pid: int | None,
        notes: list[str],
    ) -> None:
        self.label = label  # "relay" or "compare": prefixes its notes and problems
        self.relay = relay
        self.topics = topics
        self.broker_pid = broker_pid
        self.notes = notes
        self.topics_created = False
        self.phases: list[load.Phase] = []
        # Load generator results outside the phases (bench/paired.py's rounds): their 200s
        # are reconciled too.
        self.extra_results: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {"command": relay.command}
        self.metrics: dict[str, Any] = {}
        self.recon: dict[str, Any] = {}
        self.problems: list[str] = []
        self.start_sample: Sample | None = None

    def labelled(self, text: str) -> str:
        return text if self.label == "relay" else f"{self.label}: {text}"

    def note(self, text: str) -> None:
        self.notes.append(self.labelled(text))

    def start(self, ready_timeout: float) -> None:
        asyncio.run(run_topics.create(self.relay.settings()))
        self.topics_created = True
        try:
            self.relay.start(ready_timeout=ready_timeout)
        except BenchError as exc:
            raise BenchError(self.labelled(str(exc))) from exc
        pid = self.relay.pid
        self.start_sample = Sample.take(pid, self.broker_pid)
        if (allowed := cpus_allowed(pid)) is not None:
            self.info["cpus_allowed"] = allowed
        self.info["rss_mib_at_start"] = round(self.start_sample.mem["rss"] / 1024, 1)
        self.info["uvloop_loaded"] = uvloop_loaded(pid)
        if self.info["uvloop_loaded"] is False:
            self.note("the relay process has not loaded uvloop: not how production runs")

    def lag_histogram(self) -> Histogram | None:
        try:
            status, body = self.relay.scrape("/metrics")
        except OSError:
            return None
        return parse_histogram(body.decode(errors="replace"), LAG_METRIC) if status == 200 else None

    def run_phase(self, phase: load.Phase, start: load.Start) -> None:
        rate = f" at {phase.rate:g}/s" if phase.rate else f" with {phase.connections} connections"
        log(
            f"{phase.name}: {phase.mode} loop{rate}, "
            f"{phase.warmup:g} s warm-up + {phase.duration:g} s"
        )
        lag_before = self.lag_histogram()
        before = Sample.take(self.relay.pid, self.broker_pid)
        phase.result = start(phase, self.relay.url).result()
        after = Sample.take(self.relay.pid, self.broker_pid)
        phase.relay = phase_costs(phase, before, after, self.notes)
        if not self.relay.alive():
            raise BenchError(
                self.labelled(f"the relay died during {phase.name}:\n{self.relay.tail()}")
            )
        phase.lag = lag_during(lag_before, self.lag_histogram())
        self.phases.append(phase)
        m = phase.result["measured"]
        log(
            f"{phase.name}: {m['ok_rps']:.0f} acked/s, p99 {m['latency_ms']['p99']:.2f} ms, "
            f"non-200 {phase.result['answered'] - phase.result['by_status'].get('200', 0)}, "
            f"errors {sum(phase.result['errors'].values())}"
        )

    def finish(self) -> None:
        """The relay's totals and metrics, then SIGTERM."""
        end = Sample.take(self.relay.pid, self.broker_pid)
        self.metrics = self.scrape_metrics()
        self.info["peak_rss_mib"] = round(end.mem["hwm"] / 1024, 1)
        start = self.start_sample
        if start and start.relay_cpu is not None and end.relay_cpu is not None:
            self.info["cpu_seconds_total"] = round(end.relay_cpu - start.relay_cpu, 2)
        stopped, problems = self.relay.stop()
        self.info.update(stopped)
        self.problems += [self.labelled(p) for p in problems]

    def scrape_metrics(self) -> dict[str, Any]:
        try:
            status, body = self.relay.scrape("/metrics")
        except OSError as exc:
            return {"error": str(exc)}
        return parse_metrics(body.decode(errors="replace")) if status == 200 else {"error": status}

    def reconcile(
        self, bootstrap: str, payloads: list[payload_gen.Payload], index: dict[bytes, int]
    ) -> None:
        """Every record of its topics read back against its 200s (self.recon); a lost record
        is a problem of the run."""
        # Over everything sent, warm-ups included.
        sent = [0] * len(payloads)
        ok = [0] * len(payloads)
        for result in [*(phase.result for phase in self.phases), *self.extra_results]:
            for i, (s, o) in enumerate(
                zip(result["sent_by_payload"], result["ok_by_payload"], strict=True)
            ):
                sent[i] += s
                ok[i] += o
        log(self.labelled("consuming every topic to reconcile"))
        consumed = asyncio.run(consume_all(bootstrap, self.topics, index))
        self.recon = recon = reconcile(payloads, sent, ok, consumed)
        self.problems += [self.labelled(p) for p in recon["problems"]]
        metrics = self.metrics
        if "error" in metrics:
            self.note(f"could not scrape the relay's /metrics: {metrics.get('error')}")
            return
        published = metrics.get("whatsapp_relay_records_published_total", {})
        recon["relay_metric_records_published"] = {
            t: published.get(f'{{event_type="{t}"}}') for t in payload_gen.EVENT_TYPES
        }
        # The relay's own count of 200s should agree with the load generator's.
        accepted = metrics.get("whatsapp_relay_requests_total", {}).get('{outcome="accepted"}')
        recon["relay_metric_accepted"] = accepted
        if accepted is not None and int(accepted) != recon["answered_200"]:
            self.note(
                f"the relay counted {int(accepted)} accepted requests, the load generator "
                f"{recon['answered_200']} answers 200"
            )


def phase_costs(
    phase: load.Phase, before: Sample, after: Sample, notes: list[str]
) -> dict[str, Any]:
    """What a phase cost the server measured (the relay, or the floor), the broker and the
    generator, from two /proc samples; a phase skewed by other work adds a note."""
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
        if other / wall > 0.1:  # (the phase's name says which relay)
            notes.append(
                f"{phase.name}: other processes used {other / wall:.0%} of a core "
                "meanwhile: this phase's figures are skewed"
            )
    relay["rss_mib"] = round(after.mem["rss"] / 1024, 1)
    relay["peak_rss_mib"] = round(after.mem["hwm"] / 1024, 1)
    return relay
