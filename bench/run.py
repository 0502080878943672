#!/usr/bin/env python3
"""The whatsapp-relay benchmark: throughput, latency and cost on one pinned core, and no data lost.

    .venv/bin/python bench/run.py            # full run (make bench), about three minutes
    .venv/bin/python bench/run.py --smoke    # a few seconds, still reconciles (make test)

Steps: generate realistic payloads; build the Go load generator; get a broker
(KAFKA_BOOTSTRAP_SERVERS, else a private scripts/local-kafka instance); create fresh topics with
3 partitions; start the relay as production runs it, pinned to cpu 0 (`taskset -c 0`), with the
broker and the load generator on cpu 1; run a closed loop (maximum throughput) and open loops
at fixed rates (latency measured from each request's due time); scrape /metrics; stop the
relay; consume every topic from the beginning and reconcile the records found against the 200
answers, payload by payload. A single lost record fails the run (exit code 1). Timings never
fail it: they are reported, in a table and in a JSON file (bench/results/).

See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import payloads as payload_gen  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - a benchmark credential, never a real one
EVENT_TYPES = payload_gen.EVENT_TYPES
LOADGEN_DIR = BENCH_DIR / "loadgen"
LOADGEN_BIN = BENCH_DIR / "bin" / "loadgen"
RESULTS_DIR = BENCH_DIR / "results"
LOCAL_KAFKA = REPO / "scripts" / "local-kafka"
BENCH_KAFKA_DIR = REPO / ".cache" / "bench-kafka"
RELAY_CPU = 0
LOAD_CPU = 1

# The targets, reported (never enforced: timings depend on the machine).
TARGET_THROUGHPUT = 10_000
TARGET_P99_RATE = 5_000
TARGET_P99_MS = 10.0
TARGET_RSS_MIB = 100.0


class BenchError(Exception):
    """The harness could not run (as opposed to: it ran and found lost data)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc sampling


CLK_TCK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                children = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for c in children:
                out.append(int(c))
                stack.append(int(c))
    return out


def proc_cpu_seconds(pid: int | None, tree: bool = True) -> float | None:
    """utime + stime of a process (all its threads), plus its descendants'."""
    if pid is None:
        return None
    total = 0.0
    found = False
    for p in [pid, *(descendants(pid) if tree else [])]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        found = True
    return total if found else None


def proc_memory_kib(pid: int | None) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS), summed over the process and its descendants."""
    out = {"rss": 0, "hwm": 0}
    if pid is None:
        return out
    for p in [pid, *descendants(pid)]:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm"] += int(line.split()[1])
    return out


def cpu_times() -> dict[str, tuple[float, float]]:
    """Per-cpu (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            total = sum(v[:8])
            out[name] = (total - idle, total)
    return out


def busy_fraction(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    out = {}
    for name, (busy1, total1) in after.items():
        busy0, total0 = before.get(name, (0, 0))
        dt_total = total1 - total0
        out[name] = round((busy1 - busy0) / dt_total, 3) if dt_total > 0 else 0.0
    return out


@dataclass
class Sample:
    wall: float
    relay_cpu: float | None
    broker_cpu: float | None
    cores: dict[str, tuple[float, float]]
    mem: dict[str, int]
    others: dict[int, tuple[int, float]]

    @classmethod
    def take(cls, relay_pid: int | None, broker_pid: int | None) -> Sample:
        return cls(
            wall=time.monotonic(),
            relay_cpu=proc_cpu_seconds(relay_pid),
            broker_cpu=proc_cpu_seconds(broker_pid, tree=False),
            cores=cpu_times(),
            mem=proc_memory_kib(relay_pid),
            others=other_processes(broker_pid),
        )


def other_processes(broker_pid: int | None) -> dict[int, tuple[int, float]]:
    """pid -> (start time, cpu seconds) of every process that is not part of the run: not
    this harness or its children (relay, load generator), not the broker."""
    ours = {os.getpid(), *descendants(os.getpid())}
    if broker_pid:
        ours.add(broker_pid)
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours:
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(name)] = (int(fields[19]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def other_cpu_seconds(before: Sample, after: Sample) -> float:
    """CPU time other processes used between two samples (those that started in between
    count in full; those that also ended in between are missed)."""
    total = 0.0
    for pid, (start, cpu) in after.others.items():
        prev = before.others.get(pid)
        total += cpu - prev[1] if prev and prev[0] == start else cpu
    return total


# ---------------------------------------------------------------------------------------------
# Small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def pin(pid: int, cpu: int) -> str | None:
    """Pin every thread of pid to one cpu; returns the previous affinity list (for restore)."""
    previous = None
    with contextlib.suppress(OSError):
        previous = ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))
    subprocess.run(
        ["taskset", "-a", "-p", "-c", str(cpu), str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return previous


def unpin(pid: int, cpus: str) -> None:
    subprocess.run(
        ["taskset", "-a", "-p", "-c", cpus, str(pid)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def listening_pid(port: int) -> int | None:
    """The pid listening on a local TCP port (needs ss, and the process in our namespace)."""
    if not shutil.which("ss"):
        return None
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def kafka_version_of(pid: int | None) -> str | None:
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    m = re.search(r"kafka(?:_2\.1[23])?-(\d+\.\d+\.\d+)", cmdline)
    return m.group(1) if m else None


def uvloop_loaded(pid: int | None) -> bool | None:
    """Whether a process has uvloop's extension mapped (None: cannot tell)."""
    if pid is None:
        return None
    pids = [pid, *descendants(pid)]
    try:
        return any("uvloop" in Path(f"/proc/{p}/maps").read_text() for p in pids)
    except OSError:
        return None


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    hypervisor = None
    with contextlib.suppress(OSError):
        hypervisor = " hypervisor " in (
            " " + Path("/proc/cpuinfo").read_text().replace("\n", " ") + " "
        )
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1) if mem_kib else None,
        "kernel": platform.release(),
        "virtualised": hypervisor,
        "hostname": platform.node(),
    }


# ---------------------------------------------------------------------------------------------
# Load generator


def build_loadgen() -> Path:
    """Build bench/bin/loadgen from bench/loadgen (stdlib only: no network) when it is stale."""
    sources = [*LOADGEN_DIR.glob("*.go"), LOADGEN_DIR / "go.mod"]
    newest = max(p.stat().st_mtime for p in sources)
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= newest:
        return LOADGEN_BIN
    go = shutil.which("go")
    if not go:
        raise BenchError(
            "the load generator needs Go (https://go.dev/dl/, 1.22 or newer) "
            "to build bench/loadgen; or pass --loadgen PATH to a built binary"
        )
    log("building the load generator (bench/loadgen)")
    LOADGEN_BIN.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0"}
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("GOFLAGS", "-mod=mod")
    proc = subprocess.run(
        [go, "build", "-trimpath", "-o", str(LOADGEN_BIN), "."],
        cwd=LOADGEN_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"go build failed:\n{proc.stdout}{proc.stderr}")
    return LOADGEN_BIN


@dataclass
class Phase:
    name: str
    mode: str  # closed | open
    duration: float
    warmup: float
    connections: int
    rate: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    relay: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Kafka: topics and reconciliation


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.create_topics(
            # replication_factor -1: the broker's default (aiokafka wants an empty assignment
            # map with it).
            [
                NewTopic(
                    name=n,
                    num_partitions=partitions,
                    replication_factor=-1,
                    replica_assignments={},
                )
                for n in names
            ],
            timeout_ms=30000,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if set(names) <= set(await admin.list_topics()):
                return
            await asyncio.sleep(0.2)
        raise BenchError(f"topics {names} did not show up within 30 s")
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.delete_topics(names, timeout_ms=30000)
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str, names: list[str]) -> dict[str, list[int]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
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


async def consume_all(
    bootstrap: str, topics: dict[str, str], index: dict[bytes, int]
) -> dict[str, Any]:
    """Read every topic from the beginning up to its end offsets (taken now, after the relay
    stopped) and count records per (payload index, event type)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        request_timeout_ms=30000,
    )
    await consumer.start()
    try:
        type_of_topic = {name: t for t, name in topics.items()}
        partitions = [
            TopicPartition(name, p)
            for name, parts in (await topic_partitions(bootstrap, list(topics.values()))).items()
            for p in parts
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > begin[tp]}
        found: Counter[tuple[int, str]] = Counter()
        per_topic: Counter[str] = Counter()
        foreign: Counter[str] = Counter()
        ce_type_mismatch = 0
        no_ce_headers = 0
        consumed = 0
        started = time.monotonic()
        last_progress = started
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=2000, max_records=20000)
            if not batches:
                if time.monotonic() - last_progress > 60:
                    raise BenchError(
                        "consumer made no progress for 60 s; still waiting on "
                        f"{sorted(map(str, remaining))}"
                    )
                continue
            last_progress = time.monotonic()
            for tp, records in batches.items():
                event_type = type_of_topic[tp.topic]
                for rec in records:
                    if rec.offset >= end[tp]:
                        break
                    consumed += 1
                    per_topic[event_type] += 1
                    idx = index.get(rec.value)
                    if idx is None:
                        foreign[event_type] += 1
                    else:
                        found[(idx, event_type)] += 1
                    headers = dict(rec.headers or ())
                    ce_type = headers.get("ce_type")
                    if ce_type is None:
                        no_ce_headers += 1
                    elif ce_type != f"whatsapp.{event_type}".encode():
                        ce_type_mismatch += 1
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        offsets_total = sum(end[tp] - begin[tp] for tp in partitions)
        return {
            "found": found,
            "per_topic": dict(per_topic),
            "foreign": dict(foreign),
            "consumed": consumed,
            "offsets_total": offsets_total,
            "ce_type_mismatch": ce_type_mismatch,
            "records_without_ce_headers": no_ce_headers,
            "seconds": round(time.monotonic() - started, 2),
        }
    finally:
        await consumer.stop()


def reconcile(
    payloads: list[payload_gen.Payload], sent: list[int], ok: list[int], consumed: dict[str, Any]
) -> dict[str, Any]:
    """Every 200 must have its records; any record beyond that needs a non-200 to explain it."""
    found: Counter[tuple[int, str]] = consumed["found"]
    expected_by_type = dict.fromkeys(EVENT_TYPES, 0)
    found_by_type = dict.fromkeys(EVENT_TYPES, 0)
    lost_by_type = dict.fromkeys(EVENT_TYPES, 0)
    extra_by_type = dict.fromkeys(EVENT_TYPES, 0)
    unexplained_by_type = dict.fromkeys(EVENT_TYPES, 0)
    misrouted: Counter[str] = Counter()
    lost_examples: list[dict[str, Any]] = []
    for idx, p in enumerate(payloads):
        for t in EVENT_TYPES:
            n = found.get((idx, t), 0)
            found_by_type[t] += n
            if t not in p.types:
                if n:
                    misrouted[t] += n
                continue
            expected_by_type[t] += ok[idx]
            if n < ok[idx]:
                lost_by_type[t] += ok[idx] - n
                if len(lost_examples) < 5:
                    lost_examples.append(
                        {
                            "payload": idx,
                            "kind": p.kind,
                            "event_type": t,
                            "ok_answers": ok[idx],
                            "records": n,
                            "sha256": p.sha256,
                        }
                    )
            elif n > ok[idx]:
                extra_by_type[t] += n - ok[idx]
                # A request that got no 200 (503, timeout) may still have been written:
                # at-least-once allows that, but only that.
                if n > sent[idx]:
                    unexplained_by_type[t] += n - sent[idx]
    foreign = sum(consumed["foreign"].values())
    problems = []
    if any(lost_by_type.values()):
        problems.append(
            f"LOST RECORDS: {sum(lost_by_type.values())} records missing for requests "
            f"answered 200 ({ {t: n for t, n in lost_by_type.items() if n} })"
        )
    if any(unexplained_by_type.values()):
        problems.append(
            f"DUPLICATES: {sum(unexplained_by_type.values())} records beyond the number "
            f"of requests sent ({ {t: n for t, n in unexplained_by_type.items() if n} })"
        )
    if misrouted:
        problems.append(
            f"MISROUTED: records on a topic their body does not classify to: {dict(misrouted)}"
        )
    if foreign:
        problems.append(
            f"FOREIGN RECORDS: {foreign} record values match no payload sent "
            f"(re-serialised or corrupted bodies?) {consumed['foreign']}"
        )
    if consumed["consumed"] != consumed["offsets_total"]:
        problems.append(
            f"consumed {consumed['consumed']} records but the offsets span "
            f"{consumed['offsets_total']}"
        )
    return {
        "ok": not problems,
        "problems": problems,
        "expected": expected_by_type,
        "found": found_by_type,
        "lost": lost_by_type,
        "extra": extra_by_type,
        "extra_unexplained": unexplained_by_type,
        "misrouted": dict(misrouted),
        "foreign": foreign,
        "answered_200": sum(ok),
        "sent": sum(sent),
        "records_consumed": consumed["consumed"],
        "consume_seconds": consumed["seconds"],
        "ce_type_mismatch": consumed["ce_type_mismatch"],
        "records_without_ce_headers": consumed["records_without_ce_headers"],
        "lost_examples": lost_examples,
    }


# ---------------------------------------------------------------------------------------------
# Prometheus text


def parse_metrics(text: str) -> dict[str, Any]:
    """whatsapp_relay_* samples, histogram buckets left out: {name: {labels: value}}."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        if not line.startswith("whatsapp_relay_"):
            continue
        if "_bucket{" in line or line.split("{")[0].split(" ")[0].endswith("_created"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        name, labels, value = m.group(1), (m.group(2) or "{}"), m.group(3)
        try:
            out[name][labels] = float(value)
        except ValueError:
            continue
    return dict(out)


# ---------------------------------------------------------------------------------------------
# The run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = (
            dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.pin = bool(args.pin)
        self.bootstrap: str | None = None
        self.broker_pid: int | None = None
        self.broker_started = False
        self.broker_previous_affinity: str | None = None
        self.kafka_version: str | None = None
        self.relay: subprocess.Popen[bytes] | None = None
        self.relay_log = self.workdir / "relay.log"
        self.topics = {t: f"bench.{self.run_id.lower()}.whatsapp.{t}" for t in EVENT_TYPES}
        self.topics_created = False
        self.payloads: list[payload_gen.Payload] = []
        self.phases: list[Phase] = []
        self.problems: list[str] = []
        self.notes: list[str] = []

    # -- environment -------------------------------------------------------------------------

    def check_machine(self) -> None:
        cpus = os.sched_getaffinity(0)
        if self.pin and not ({RELAY_CPU, LOAD_CPU} <= cpus and shutil.which("taskset")):
            self.notes.append(
                f"pinning disabled: needs taskset and cpus {RELAY_CPU} and {LOAD_CPU} "
                f"(have {sorted(cpus)})"
            )
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

    def get_broker(self) -> None:
        bootstrap = self.args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            self.bootstrap = bootstrap
            host, _, port = bootstrap.split(",")[0].rpartition(":")
            if host in ("127.0.0.1", "localhost", "::1", "[::1]") and port.isdigit():
                self.broker_pid = listening_pid(int(port))
            log(
                f"using the broker at {bootstrap}"
                + (f" (pid {self.broker_pid})" if self.broker_pid else "")
            )
        else:
            if not LOCAL_KAFKA.exists():
                raise BenchError("no KAFKA_BOOTSTRAP_SERVERS and no scripts/local-kafka")
            env = {
                **os.environ,
                "LOCAL_KAFKA_DIR": str(self.args.kafka_dir),
                "LOCAL_KAFKA_PORT": str(self.args.kafka_port),
            }
            log(
                f"starting a private broker (scripts/local-kafka, {self.args.kafka_dir}, "
                f"port {self.args.kafka_port})"
            )
            proc = subprocess.run(
                [str(LOCAL_KAFKA), "start"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            if proc.returncode != 0:
                raise BenchError(f"scripts/local-kafka start failed:\n{proc.stderr[-3000:]}")
            self.bootstrap = proc.stdout.strip().splitlines()[-1].strip()
            self.broker_started = True
            pid_file = Path(self.args.kafka_dir) / "kafka.pid"
            with contextlib.suppress(OSError, ValueError):
                self.broker_pid = int(pid_file.read_text().strip())
            with contextlib.suppress(OSError):
                self.kafka_version = (
                    (Path(self.args.kafka_dir) / "kafka-version").read_text().strip()
                )
        self.kafka_version = self.kafka_version or kafka_version_of(self.broker_pid)
        if self.pin and self.broker_pid:
            try:
                self.broker_previous_affinity = pin(self.broker_pid, LOAD_CPU)
            except subprocess.CalledProcessError as exc:
                self.notes.append(f"could not pin the broker (pid {self.broker_pid}): {exc.stderr}")
        elif self.pin:
            self.notes.append("broker process not found locally: it is not pinned to cpu 1")

    def release_broker(self) -> None:
        if self.broker_pid and self.broker_previous_affinity:
            unpin(self.broker_pid, self.broker_previous_affinity)
        if self.broker_started and not self.args.keep_broker:
            env = {
                **os.environ,
                "LOCAL_KAFKA_DIR": str(self.args.kafka_dir),
                "LOCAL_KAFKA_PORT": str(self.args.kafka_port),
            }
            # --clean deletes its state dir: a full run leaves over half a GB of records.
            clean = [] if self.args.keep_topics else ["--clean"]
            log("stopping the private broker (--keep-broker keeps it for the next run)")
            subprocess.run(
                [str(LOCAL_KAFKA), "stop", *clean],
                env=env,
                check=False,
                timeout=120,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    # -- relay -------------------------------------------------------------------------------

    def relay_command(self, config: Path) -> list[str]:
        if self.args.relay_cmd:
            return [
                part.replace("{config}", str(config)) for part in shlex.split(self.args.relay_cmd)
            ]
        exe = Path(sys.executable).parent / "whatsapp-relay"
        if not exe.exists():
            found = shutil.which("whatsapp-relay")
            if not found:
                raise BenchError(
                    "whatsapp-relay is not installed next to this Python "
                    f"({exe}): run the benchmark with `make bench` (it installs the relay into "
                    ".venv), or `pip install -e .` into this Python, or pass --relay-cmd"
                )
            exe = Path(found)
        return [str(exe), "serve", "--config", str(config)]

    def start_relay(self) -> None:
        port, admin_port = free_port(), free_port()
        while admin_port == port:
            admin_port = free_port()
        self.url = f"http://127.0.0.1:{port}/webhook"
        self.admin = f"http://127.0.0.1:{admin_port}"
        config = self.workdir / "relay.yaml"
        # Production settings: only what a bench must change (addresses, token, topics, log
        # level). acks=all and idempotence are not switches: the relay always uses them.
        settings = {
            "server": {"host": "127.0.0.1", "port": port, "path": "/webhook", "access_log": False},
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "auth": {"bearer_tokens": [TOKEN]},
            "kafka": {"bootstrap_servers": self.bootstrap},
            "topics": dict(self.topics),
            "log": {"level": "WARNING"},
        }
        config.write_text(json.dumps(settings, indent=2) + "\n")  # JSON is YAML
        # A clean environment for the relay: inherited RELAY_* variables would silently change
        # what is measured; deliberate ones come from --relay-env.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        for item in self.args.relay_env:
            key, sep, value = item.partition("=")
            if not sep:
                raise BenchError(f"--relay-env wants KEY=VALUE, got {item!r}")
            env[key] = value
        cmd = self.relay_command(config)
        if self.pin:
            cmd = ["taskset", "-c", str(RELAY_CPU), *cmd]
        self.relay_cmd = cmd
        log(f"starting the relay: {shlex.join(cmd)}")
        with self.relay_log.open("wb") as out:
            self.relay = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
            )
        deadline = time.monotonic() + self.args.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.relay.poll() is not None:
                raise BenchError(
                    f"the relay exited with code {self.relay.returncode} during startup:\n"
                    f"{tail(self.relay_log)}"
                )
            try:
                status, body = http_get(self.admin + "/readyz", timeout=1.0)
                if status == 200:
                    log(f"relay ready (pid {self.relay.pid})")
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise BenchError(
            f"the relay was not ready within {self.args.ready_timeout} s "
            f"(last /readyz: {last}):\n{tail(self.relay_log)}"
        )

    def relay_alive(self) -> bool:
        return self.relay is not None and self.relay.poll() is None

    def stop_relay(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.relay is None:
            return info
        if self.relay.poll() is None:
            started = time.monotonic()
            self.relay.send_signal(signal.SIGTERM)
            try:
                self.relay.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait(timeout=10)
                info["killed"] = True
                self.problems.append("the relay did not exit within 30 s of SIGTERM")
            info["shutdown_seconds"] = round(time.monotonic() - started, 2)
        info["exit_code"] = self.relay.returncode
        if self.relay.returncode not in (0, -signal.SIGTERM):
            self.problems.append(f"the relay exited with code {self.relay.returncode}")
        self.relay = None
        return info

    # -- load --------------------------------------------------------------------------------

    def loadgen(self, phase: Phase, url: str, payload_file: Path) -> dict[str, Any]:
        out = self.workdir / f"{phase.name}.json"
        cmd = [
            str(self.loadgen_bin),
            "run",
            "-url",
            url,
            "-payloads",
            str(payload_file),
            "-token",
            TOKEN,
            "-mode",
            phase.mode,
            "-connections",
            str(phase.connections),
            "-duration",
            f"{phase.duration}s",
            "-warmup",
            f"{phase.warmup}s",
            "-timeout",
            f"{self.args.request_timeout}s",
            "-out",
            str(out),
            "-label",
            phase.name,
        ]
        if phase.rate is not None:
            cmd += ["-rate", str(phase.rate)]
        if self.pin:
            cmd = ["taskset", "-c", str(LOAD_CPU), *cmd]
        budget = phase.warmup + phase.duration + 2 * self.args.request_timeout + 60
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=budget)
        if proc.returncode != 0:
            raise BenchError(f"load generator failed ({phase.name}):\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    def run_phase(self, phase: Phase, payload_file: Path) -> None:
        rate = f" at {phase.rate:g}/s" if phase.rate else f" with {phase.connections} connections"
        log(
            f"{phase.name}: {phase.mode} loop{rate}, "
            f"{phase.warmup:g} s warm-up + {phase.duration:g} s"
        )
        relay_pid = self.relay.pid if self.relay else None
        before = Sample.take(relay_pid, self.broker_pid)
        phase.result = self.loadgen(phase, self.url, payload_file)
        after = Sample.take(relay_pid, self.broker_pid)
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
        broker_cpu = None
        if before.broker_cpu is not None and after.broker_cpu is not None:
            broker_cpu = after.broker_cpu - before.broker_cpu
            relay["broker_cpu_seconds"] = round(broker_cpu, 3)
        lg = phase.result["loadgen"]
        loadgen_cpu = lg["cpu_user_seconds"] + lg["cpu_system_seconds"]
        relay["loadgen_cpu_seconds"] = round(loadgen_cpu, 3)
        busy = busy_fraction(before.cores, after.cores)
        relay["core_busy"] = busy
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
        phase.relay = relay
        if not self.relay_alive():
            raise BenchError(f"the relay died during {phase.name}:\n{tail(self.relay_log)}")
        m = phase.result["measured"]
        log(
            f"{phase.name}: {m['ok_rps']:.0f} acked/s, p99 {m['latency_ms']['p99']:.2f} ms, "
            f"non-200 {answered - phase.result['by_status'].get('200', 0)}, "
            f"errors {sum(phase.result['errors'].values())}"
        )

    def reference(self, payload_file: Path) -> dict[str, Any] | None:
        """Closed loop against bench/bare_server.py: the scale the relay is compared to."""
        port = free_port()
        cmd = [
            sys.executable,
            str(BENCH_DIR / "bare_server.py"),
            "--port",
            str(port),
            "--token",
            TOKEN,
        ]
        if self.pin:
            cmd = ["taskset", "-c", str(RELAY_CPU), *cmd]
        log("reference: bare aiohttp + uvloop handler (token check + orjson parse, no Kafka)")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=0.5),
                ):
                    break
                if proc.poll() is not None:
                    self.notes.append("reference server failed to start")
                    return None
                time.sleep(0.1)
            phase = Phase(
                "reference", "closed", self.args.reference_duration, 1.0, self.args.connections
            )
            before = proc_cpu_seconds(proc.pid)
            phase.result = self.loadgen(phase, f"http://127.0.0.1:{port}/webhook", payload_file)
            after = proc_cpu_seconds(proc.pid)
            m = phase.result["measured"]
            return {
                "what": "bench/bare_server.py: aiohttp + uvloop, bearer check, orjson parse, "
                "200; no Kafka",
                "connections": phase.connections,
                "duration_seconds": phase.duration,
                "throughput_rps": round(m["ok_rps"], 1),
                "latency_ms": m["latency_ms"],
                "cpu_seconds_per_1000_requests": (
                    round((after - before) / phase.result["answered"] * 1000, 4)
                    if before is not None and after is not None and phase.result["answered"]
                    else None
                ),
                "non_200": phase.result["answered"] - phase.result["by_status"].get("200", 0),
            }
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- main --------------------------------------------------------------------------------

    def plan(self) -> list[Phase]:
        a = self.args
        phases = [Phase("closed", "closed", a.duration, a.warmup, a.connections)]
        for r in a.rates:
            phases.append(
                Phase(
                    f"open-{r:g}",
                    "open",
                    a.rate_duration,
                    a.rate_warmup,
                    a.open_connections,
                    rate=r,
                )
            )
        return phases

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
        self.loadgen_bin = Path(a.loadgen) if a.loadgen else build_loadgen()

        self.get_broker()
        assert self.bootstrap is not None
        asyncio.run(create_topics(self.bootstrap, list(self.topics.values()), a.partitions))
        self.topics_created = True
        self.start_relay()
        relay_pid = self.relay.pid if self.relay else None
        start_sample = Sample.take(relay_pid, self.broker_pid)
        relay_info: dict[str, Any] = {"command": self.relay_cmd}
        with contextlib.suppress(OSError):
            relay_info["cpus_allowed"] = next(
                line.split(":")[1].strip()
                for line in Path(f"/proc/{relay_pid}/status").read_text().splitlines()
                if line.startswith("Cpus_allowed_list")
            )
        relay_info["rss_mib_at_start"] = round(start_sample.mem["rss"] / 1024, 1)
        relay_info["uvloop_loaded"] = uvloop_loaded(relay_pid)
        if relay_info["uvloop_loaded"] is False:
            self.notes.append("the relay process has not loaded uvloop: not how production runs")

        self.phases = self.plan()
        for i, phase in enumerate(self.phases):
            if i:
                time.sleep(a.pause)
            self.run_phase(phase, payload_file)

        end_sample = Sample.take(relay_pid, self.broker_pid)
        metrics: dict[str, Any] = {}
        try:
            status, body = http_get(self.admin + "/metrics", timeout=5)
            metrics = (
                parse_metrics(body.decode(errors="replace")) if status == 200 else {"error": status}
            )
        except OSError as exc:
            metrics = {"error": str(exc)}
        relay_info["peak_rss_mib"] = round(end_sample.mem["hwm"] / 1024, 1)
        if start_sample.relay_cpu is not None and end_sample.relay_cpu is not None:
            relay_info["cpu_seconds_total"] = round(
                end_sample.relay_cpu - start_sample.relay_cpu, 2
            )
        relay_info.update(self.stop_relay())

        reference = None
        if a.reference:
            reference = self.reference(payload_file)

        # Reconcile over everything sent, warm-ups included.
        sent = [0] * len(self.payloads)
        ok = [0] * len(self.payloads)
        for phase in self.phases:
            for i, (s, o) in enumerate(
                zip(phase.result["sent_by_payload"], phase.result["ok_by_payload"], strict=True)
            ):
                sent[i] += s
                ok[i] += o
        log("consuming every topic to reconcile")
        consumed = asyncio.run(consume_all(self.bootstrap, self.topics, index))
        recon = reconcile(self.payloads, sent, ok, consumed)
        self.problems += recon["problems"]
        if "error" not in metrics:
            published = metrics.get("whatsapp_relay_records_published_total", {})
            recon["relay_metric_records_published"] = {
                t: published.get(f'{{event_type="{t}"}}') for t in EVENT_TYPES
            }
            # The relay's own count of 200s should agree with the load generator's.
            accepted = metrics.get("whatsapp_relay_requests_total", {}).get('{outcome="accepted"}')
            recon["relay_metric_accepted"] = accepted
            if accepted is not None and int(accepted) != recon["answered_200"]:
                self.notes.append(
                    f"the relay counted {int(accepted)} accepted requests, the load generator "
                    f"{recon['answered_200']} answers 200"
                )
        else:
            self.notes.append(f"could not scrape the relay's /metrics: {metrics.get('error')}")

        finished_at = dt.datetime.now(dt.UTC)
        return self.report(started_at, finished_at, relay_info, reference, recon, metrics)

    def report(
        self,
        started_at: dt.datetime,
        finished_at: dt.datetime,
        relay_info: dict[str, Any],
        reference: dict[str, Any] | None,
        recon: dict[str, Any],
        metrics: dict[str, Any],
    ) -> dict[str, Any]:
        a = self.args

        def phase_summary(ph: Phase) -> dict[str, Any]:
            r, m = ph.result, ph.result["measured"]
            out = {
                "name": ph.name,
                "mode": ph.mode,
                "connections": ph.connections,
                "duration_seconds": ph.duration,
                "warmup_seconds": ph.warmup,
                "offered_rps": ph.rate,
                "throughput_rps": round(m["throughput_rps"], 1),
                "acked_rps": round(m["ok_rps"], 1),
                "latency_ms": {k: round(v, 3) for k, v in m["latency_ms"].items()},
                "requests": r["sent"],
                "answered": r["answered"],
                "by_status": r["by_status"],
                "errors": r["errors"],
                "non_200": r["answered"] - r["by_status"].get("200", 0),
                "relay": ph.relay,
                "loadgen_cpu_seconds": round(
                    r["loadgen"]["cpu_user_seconds"] + r["loadgen"]["cpu_system_seconds"], 3
                ),
                "histogram": m["histogram"],
                "per_second": m["per_second"],
            }
            if ph.mode == "open":
                out["service_time_ms"] = {k: round(v, 3) for k, v in m["service_time_ms"].items()}
                out["send_lag_ms"] = {k: round(v, 3) for k, v in m["send_lag_ms"].items()}
                out["late_sends"] = m["late"]
                out["late_threshold_ms"] = m["late_threshold_ms"]
                out["max_inflight"] = m["max_inflight"]
                out["connection_pool_exhausted"] = m["pool_exhausted"]
                # The relay did not keep up with the schedule: requests queued for a free
                # connection, or the answers came in slower than offered.
                out["saturated"] = bool(m["pool_exhausted"] or m["ok_rps"] < 0.97 * (ph.rate or 0))
            return out

        closed = [phase_summary(p) for p in self.phases if p.mode == "closed"]
        opened = [phase_summary(p) for p in self.phases if p.mode == "open"]
        at_target = next((o for o in opened if o["offered_rps"] == TARGET_P99_RATE), None)
        best = max((c["acked_rps"] for c in closed), default=None)
        peak = relay_info.get("peak_rss_mib")
        targets: dict[str, Any] | None = {
            "throughput_rps": {
                "target": f">= {TARGET_THROUGHPUT}",
                "value": best,
                "met": best is not None and best >= TARGET_THROUGHPUT,
            },
            f"p99_ms_at_{TARGET_P99_RATE}_rps": {
                "target": f"<= {TARGET_P99_MS}",
                "value": at_target["latency_ms"]["p99"] if at_target else None,
                "met": (
                    at_target is not None
                    and at_target["latency_ms"]["p99"] <= TARGET_P99_MS
                    and at_target["non_200"] == 0
                    and not sum(at_target["errors"].values())
                ),
            },
            "peak_rss_mib": {
                "target": f"<= {TARGET_RSS_MIB:g}",
                "value": peak,
                "met": peak is not None and peak <= TARGET_RSS_MIB,
            },
        }
        if a.smoke:
            targets = None  # a few seconds on a shared runner say nothing about them
        total_answered = sum(p.result["answered"] for p in self.phases)
        problems = list(self.problems)
        return {
            "schema": 1,
            "ok": not problems,
            "problems": problems,
            "notes": self.notes,
            "run_id": self.run_id,
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": finished_at.isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "smoke": a.smoke,
            "settings": {
                "pinned": self.pin,
                "relay_cpu": RELAY_CPU if self.pin else None,
                "broker_and_load_cpu": LOAD_CPU if self.pin else None,
                "topics": self.topics,
                "partitions": a.partitions,
                "payload_count": a.payload_count,
                "seed": a.seed,
                "request_timeout_seconds": a.request_timeout,
                "relay_env": a.relay_env,
            },
            "payloads": payload_gen.summary(self.payloads),
            "closed_loop": closed,
            "open_loop": opened,
            "reference": reference,
            "relay": {
                **relay_info,
                "requests_total": total_answered,
                "cpu_seconds_per_1000_requests": (
                    round(relay_info["cpu_seconds_total"] / total_answered * 1000, 4)
                    if relay_info.get("cpu_seconds_total") and total_answered
                    else None
                ),
            },
            "reconciliation": recon,
            "metrics": metrics,
            "targets": targets,
            "versions": {
                "python": platform.python_version(),
                "whatsapp_relay": pkg_version("whatsapp-relay"),
                "aiohttp": pkg_version("aiohttp"),
                "aiokafka": pkg_version("aiokafka"),
                "orjson": pkg_version("orjson"),
                "uvloop": pkg_version("uvloop"),
                "kafka_broker": self.kafka_version,
                "go": (
                    self.phases[0].result.get("loadgen", {}).get("go_version")
                    if self.phases
                    else None
                ),
            },
            "machine": {
                **machine_info(),
                "busy_before_run": getattr(self, "idle_check", None),
                "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
            },
        }

    def cleanup(self) -> None:
        if self.relay is not None and self.relay.poll() is None:
            with contextlib.suppress(Exception):
                self.stop_relay()
        if (
            self.topics_created
            and self.bootstrap
            and not self.args.keep_topics
            and not (self.broker_started and not self.args.keep_broker)
        ):
            # A broker that outlives the run (external, or --keep-broker) should not collect
            # a set of topics per run. (A private broker that stops is wiped instead.)
            try:
                asyncio.run(delete_topics(self.bootstrap, list(self.topics.values())))
            except Exception as exc:  # cleanup must not hide the result
                log(f"could not delete the bench topics: {exc}")
        self.release_broker()
        if not self.args.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log(f"work files kept in {self.workdir}")


# ---------------------------------------------------------------------------------------------
# Output


def fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def print_table(res: dict[str, Any], path: Path | None) -> None:
    p = print
    s = res["settings"]
    if s["pinned"]:
        where = (
            f"relay pinned to cpu {s['relay_cpu']}, "
            f"broker and load generator on cpu {s['broker_and_load_cpu']}"
        )
    else:
        where = "NOT pinned"
    p()
    p(f"whatsapp-relay benchmark {res['run_id']}{' (smoke)' if res['smoke'] else ''}: {where}")
    pl = res["payloads"]
    p(
        f"payloads: {pl['count']} bodies of {pl['bytes']['min']}-{pl['bytes']['max']} B "
        f"(median {pl['bytes']['median']}), {pl['records_per_request']} records per request"
    )
    cols = [
        ("phase", 11),
        ("offered/s", 10),
        ("acked/s", 9),
        ("p50", 8),
        ("p90", 8),
        ("p99", 8),
        ("p99.9", 8),
        ("max", 8),
        ("late", 7),
        ("non-200", 8),
        ("errors", 7),
        ("relay cpu", 10),
        ("cpu s/1k", 9),
        ("rss MiB", 8),
        ("cpu1", 6),
    ]
    head = "".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(cols))
    p()
    p("latencies in ms; cpu s/1k: relay cpu seconds per 1000 requests; cpu1: how busy the")
    p("broker + load generator core was; * marks an open-loop rate the relay did not keep up with")
    p(head)
    p("-" * len(head))
    for ph in res["closed_loop"] + res["open_loop"]:
        lat, rel = ph["latency_ms"], ph["relay"]
        offered = f"{ph['offered_rps']:.0f}" if ph["offered_rps"] else f"c={ph['connections']}"
        acked = f"{ph['acked_rps']:.0f}" + ("*" if ph.get("saturated") else "")
        values = [
            ph["name"],
            offered,
            acked,
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['p99_9']:.2f}",
            f"{lat['max']:.1f}",
            fmt(ph.get("late_sends")),
            str(ph["non_200"]),
            str(sum(ph["errors"].values())),
            fmt(rel.get("cpu_utilisation"), ".0%"),
            fmt(rel.get("cpu_seconds_per_1000_requests"), ".3f"),
            fmt(rel.get("rss_mib"), ".1f"),
            fmt(rel.get("core_busy", {}).get(f"cpu{LOAD_CPU}"), ".0%"),
        ]
        p(
            "".join(
                f"{v:<{w}}" if i == 0 else f"{v:>{w}}"
                for i, (v, (_, w)) in enumerate(zip(values, cols, strict=True))
            )
        )
    p()
    if res["open_loop"]:
        p(
            "open loop: latency runs from each request's due time, so queueing is counted "
            "(no coordinated omission); late = written > 1 ms after due"
        )
    ref = res.get("reference")
    if ref:
        p(
            f"reference, bare aiohttp + uvloop (token check, orjson parse, no Kafka): "
            f"{ref['throughput_rps']:.0f} req/s, p99 {ref['latency_ms']['p99']:.2f} ms, "
            f"cpu s/1k {fmt(ref['cpu_seconds_per_1000_requests'], '.3f')}"
        )
    relay = res["relay"]
    p(
        f"relay: peak RSS {fmt(relay.get('peak_rss_mib'), '.1f')} MiB, "
        f"cpu s/1k over the whole run {fmt(relay.get('cpu_seconds_per_1000_requests'), '.3f')}, "
        f"exit code {relay.get('exit_code')} after {fmt(relay.get('shutdown_seconds'))} s"
    )
    rc = res["reconciliation"]
    p()
    p(f"{'event type':<12}{'expected':>12}{'found':>12}{'lost':>8}{'extra':>8}")
    for t in EVENT_TYPES:
        p(
            f"{t:<12}{rc['expected'][t]:>12}{rc['found'][t]:>12}{rc['lost'][t]:>8}{rc['extra'][t]:>8}"
        )
    verdict = "OK, zero lost" if rc["ok"] else "FAILED"
    p(
        f"reconciliation: {verdict} ({rc['answered_200']} requests answered 200, "
        f"{rc['records_consumed']} records read back in {rc['consume_seconds']} s)"
    )
    p()
    if res["targets"] is None:
        p("targets: not evaluated in a smoke run")
    else:
        for name, t in res["targets"].items():
            mark = "met" if t["met"] else "NOT met"
            p(f"target {name} {t['target']}: {fmt(t['value'])} -> {mark}")
    v = res["versions"]
    p(
        f"versions: python {v['python']}, whatsapp-relay {v['whatsapp_relay']}, "
        f"aiohttp {v['aiohttp']}, aiokafka {v['aiokafka']}, orjson {v['orjson']}, "
        f"uvloop {v['uvloop']}, kafka {v['kafka_broker']}, {v['go']}"
    )
    mach = res["machine"]
    p(
        f"machine: {mach['cpu_model']}, {mach['cpus']} cpus, {mach['memory_gib']} GiB, "
        f"kernel {mach['kernel']}"
    )
    for note in res["notes"]:
        p(f"note: {note}")
    if path:
        p(f"results: {path}")
    if res["problems"]:
        p()
        bar = "!" * 78
        p(bar)
        for prob in res["problems"]:
            p(f"!! {prob}")
        p(bar)


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: closed loop 2 s + one open-loop rate 2 s; still reconciles",
    )
    ap.add_argument("--duration", type=float, default=20.0, help="closed-loop measured seconds")
    ap.add_argument("--warmup", type=float, default=3.0, help="closed-loop warm-up seconds")
    ap.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    ap.add_argument(
        "--rates",
        default="1000,2500,5000,7500,10000",
        help="open-loop rates (requests/s), comma separated; empty for none",
    )
    ap.add_argument(
        "--rate-duration", type=float, default=15.0, help="measured seconds per open-loop rate"
    )
    ap.add_argument(
        "--rate-warmup", type=float, default=2.0, help="warm-up seconds per open-loop rate"
    )
    ap.add_argument(
        "--open-connections",
        type=int,
        default=256,
        help="open-loop connection pool (the most requests in flight at once)",
    )
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between phases")
    ap.add_argument(
        "--request-timeout", type=float, default=10.0, help="per-request timeout, seconds"
    )
    ap.add_argument(
        "--payload-count", type=int, default=2000, help="distinct bodies (sent round-robin)"
    )
    ap.add_argument("--seed", type=int, default=1, help="payload generator seed")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, "
        "else a private scripts/local-kafka broker)",
    )
    ap.add_argument(
        "--kafka-dir", type=Path, default=BENCH_KAFKA_DIR, help="state dir of the private broker"
    )
    ap.add_argument("--kafka-port", type=int, default=19092, help="port of the private broker")
    ap.add_argument("--keep-broker", action="store_true", help="leave the private broker running")
    ap.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics")
    ap.add_argument(
        "--keep-workdir", action="store_true", help="keep payloads, relay config and log"
    )
    ap.add_argument(
        "--relay-cmd",
        help="command to run instead of `whatsapp-relay serve --config {config}` "
        "({config} is replaced by the generated config file)",
    )
    ap.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the relay, e.g. RELAY_KAFKA__LINGER_MS=5 (repeatable)",
    )
    ap.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for /readyz")
    ap.add_argument("--loadgen", help="a built load generator (default: build bench/loadgen)")
    ap.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin processes to cpus"
    )
    ap.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure bench/bare_server.py (default: on, off with --smoke)",
    )
    ap.add_argument("--reference-duration", type=float, default=10.0)
    ap.add_argument(
        "--output",
        type=Path,
        help="result file (default: bench/results/<run id>.json, "
        "and latest.json; smoke: bench/results/smoke.json)",
    )
    args = ap.parse_args(argv)
    if args.smoke:
        defaults = {
            "duration": 2.0,
            "warmup": 0.5,
            "rate_duration": 2.0,
            "rate_warmup": 0.5,
            "pause": 0.5,
            "rates": "500",
            "connections": 16,
            "open_connections": 32,
        }
        for key, value in defaults.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    if args.reference is None:
        args.reference = not args.smoke
    try:
        args.rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    except ValueError:
        ap.error(f"--rates: expected numbers, got {args.rates!r}")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    # SIGTERM (e.g. a test timeout) takes the same cleanup path as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        res = bench.execute()
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()

    if args.output:
        paths = [args.output]
    elif args.smoke:
        paths = [RESULTS_DIR / "smoke.json"]
    else:
        paths = [RESULTS_DIR / f"{bench.run_id}.json", RESULTS_DIR / "latest.json"]
    text = json.dumps(res, indent=2) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print_table(res, paths[0])
    if not res["ok"]:
        log("FAILED: " + "; ".join(res["problems"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
