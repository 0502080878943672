"""The Kafka broker a run publishes to: one the user names (KAFKA_BOOTSTRAP_SERVERS or
--bootstrap), else a private one started with scripts/local-kafka and stopped afterwards.

The harness wants the broker's pid as well as its address: to pin it to the load cpu and to
count its CPU time. A private broker's pid comes from its state dir; an external one on
loopback is looked up by its listening port (when it runs in our pid namespace).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.progress import BenchError, log

LOCAL_KAFKA = Path(__file__).resolve().parent.parent / "scripts" / "local-kafka"
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


def _local_kafka(
    command: list[str], state_dir: Path, port: int, timeout: float, capture: bool
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCAL_KAFKA_DIR": str(state_dir), "LOCAL_KAFKA_PORT": str(port)}
    return subprocess.run(
        [str(LOCAL_KAFKA), *command],
        env=env,
        text=True,
        check=False,
        timeout=timeout,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
    )


def start_private(state_dir: Path, port: int) -> Broker:
    if not LOCAL_KAFKA.exists():
        raise BenchError("no KAFKA_BOOTSTRAP_SERVERS and no scripts/local-kafka")
    log(f"starting a private broker (scripts/local-kafka, {state_dir}, port {port})")
    # The first start fetches Kafka's jars from Maven Central: minutes, not seconds.
    proc = _local_kafka(["start"], state_dir, port, timeout=900, capture=True)
    if proc.returncode != 0:
        raise BenchError(f"scripts/local-kafka start failed:\n{proc.stderr[-3000:]}")
    # The script prints the bootstrap address last.
    bootstrap = proc.stdout.strip().splitlines()[-1].strip()
    pid = None
    with contextlib.suppress(OSError, ValueError):
        pid = int((state_dir / "kafka.pid").read_text().strip())
    version = None
    with contextlib.suppress(OSError):
        version = (state_dir / "kafka-version").read_text().strip()
    return Broker(bootstrap, pid, version or kafka_version_of(pid), private=True)


def stop_private(state_dir: Path, port: int, clean: bool) -> None:
    log("stopping the private broker (--keep-broker keeps it for the next run)")
    # --clean deletes its state dir: a full run leaves over half a GB of records.
    _local_kafka(["stop", *(["--clean"] if clean else [])], state_dir, port, 120, capture=False)
