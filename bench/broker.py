"""The Kafka broker a run publishes to: one the user names (KAFKA_BOOTSTRAP_SERVERS or
--bootstrap), else a private one started with scripts/local-kafka and stopped afterwards.

The harness wants the broker's pid as well as its address: to pin it to the load cpu and to
count its CPU time. A private broker's pid comes from its state dir; an external one on
loopback is looked up by its listening port (when it runs in our pid namespace).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.progress import BenchError, log
from devsupport.local_kafka import LOCAL_KAFKA_SCRIPT, LocalKafka, LocalKafkaError

DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "bench-kafka"
DEFAULT_PORT = 19092


@dataclass
class Broker:
    bootstrap: str
    pid: int | None
    version: str | None
    private: bool  # started by this run, so it is ours to stop


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
    """The Kafka version in a broker's classpath (kafka_2.13-4.1.0.jar, kafka-4.1.0...)."""
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    m = re.search(r"kafka(?:_2\.1[23])?-(\d+\.\d+\.\d+)", cmdline)
    return m.group(1) if m else None


def external(bootstrap: str) -> Broker:
    pid = None
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host in ("127.0.0.1", "localhost", "::1", "[::1]") and port.isdigit():
        pid = listening_pid(int(port))
    log(f"using the broker at {bootstrap}" + (f" (pid {pid})" if pid else ""))
    return Broker(bootstrap, pid, kafka_version_of(pid), private=False)


def private_broker(state_dir: Path, port: int) -> LocalKafka:
    """The run's own broker. Its controller gets the port after the broker's, the script's
    default, so that a state dir kept by --keep-broker is started the same way every time."""
    return LocalKafka(state_dir, port, port + 1)


def start_private(state_dir: Path, port: int) -> Broker:
    if not LOCAL_KAFKA_SCRIPT.exists():
        raise BenchError("no KAFKA_BOOTSTRAP_SERVERS and no scripts/local-kafka")
    log(f"starting a private broker (scripts/local-kafka, {state_dir}, port {port})")
    kafka = private_broker(state_dir, port)
    try:
        # The first start fetches Kafka's jars from Maven Central: minutes, not seconds.
        bootstrap = kafka.start(timeout=900)
    except LocalKafkaError as exc:
        raise BenchError(str(exc)) from exc
    pid = kafka.pid()
    return Broker(bootstrap, pid, kafka.version() or kafka_version_of(pid), private=True)


def stop_private(state_dir: Path, port: int, clean: bool) -> None:
    log("stopping the private broker (--keep-broker keeps it for the next run)")
    kafka = private_broker(state_dir, port)
    try:
        if clean:  # deletes its state dir: a full run leaves over half a GB of records
            kafka.clean()
        else:
            kafka.stop()
    except LocalKafkaError as exc:  # cleanup must not hide the run's result
        log(str(exc))
