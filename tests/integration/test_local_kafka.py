"""scripts/local-kafka against a real broker: a private instance in a tmp dir on free ports.

Nothing is mocked: these tests start and stop Apache Kafka's own broker (two starts for the
module, about 5-10 s each once the jars are cached) and never touch the shared session broker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devsupport import topics
from devsupport.local_kafka import (
    LOCAL_KAFKA_SCRIPT,
    LocalKafka,
    LocalKafkaCluster,
    run_local_kafka,
)
from devsupport.ports import LOOPBACK
from tests.brokers import bootstrap_for_session

_HAVE_JAVA = bool(os.environ.get("JAVA_HOME") or shutil.which("java"))
needs_java = pytest.mark.skipif(not _HAVE_JAVA, reason="scripts/local-kafka needs Java 17+")
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/cmdline").exists(), reason="process checks read /proc (Linux)"
)


def _process_alive(pid: int) -> bool:
    """True while the process exists and has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _broker_pids(kafka: LocalKafka) -> list[int]:
    """Pids of live kafka.Kafka processes running this instance's configuration."""
    config = str(kafka.state_dir / "server.properties")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "kafka.Kafka" in args and config in args and _process_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """One private instance for the module; tests start/stop it as they need (both idempotent)."""
    instance = LocalKafka(tmp_path_factory.mktemp("local-kafka") / "state")
    try:
        yield instance
    finally:
        # Whatever happened, leave no broker behind.
        instance.clean()


@needs_java
@needs_proc
def test_start_prints_the_bootstrap_address_last(kafka: LocalKafka) -> None:
    kafka.stop()
    result = kafka.run("start", timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"127.0.0.1:{kafka.port}"
    # Progress goes to stderr: stdout is only the address, so `$(scripts/local-kafka start)` works.
    assert result.stdout.strip() == f"127.0.0.1:{kafka.port}"
    with socket.create_connection((LOOPBACK, kafka.port), timeout=5):
        pass


@needs_java
@needs_proc
def test_second_start_is_idempotent(kafka: LocalKafka) -> None:
    address = kafka.start()
    pid = kafka.pid()
    assert pid is not None
    assert _broker_pids(kafka) == [pid]

    result = kafka.run("start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == address
    assert kafka.pid() == pid
    assert _broker_pids(kafka) == [pid]


@needs_java
def test_status_exit_codes(kafka: LocalKafka) -> None:
    address = kafka.start()
    running = kafka.run("status")
    assert running.returncode == 0
    assert running.stdout.startswith(f"running {address}")

    kafka.stop()
    stopped = kafka.run("status")
    assert stopped.returncode != 0
    assert stopped.stdout.startswith(f"stopped {address}")


@needs_java
@needs_proc
def test_stop_leaves_no_process_and_is_idempotent(kafka: LocalKafka) -> None:
    kafka.start()
    pid = kafka.pid()
    assert pid is not None

    result = kafka.run("stop")
    assert result.returncode == 0, result.stderr
    assert not _process_alive(pid)
    assert _broker_pids(kafka) == []
    assert not (kafka.state_dir / "kafka.pid").exists()
    assert not kafka.is_running()

    again = kafka.run("stop")
    assert again.returncode == 0, again.stderr


@needs_java
async def test_topic_and_records_survive_stop_and_start(kafka: LocalKafka) -> None:
    bootstrap = await asyncio.to_thread(kafka.start)
    topic = f"local-kafka-test-{uuid.uuid4().hex[:8]}"

    await topics.create(bootstrap, [topic], partitions=2, replication=1)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"before-restart", key=b"k")
    finally:
        await producer.stop()

    await asyncio.to_thread(kafka.stop)
    assert not await asyncio.to_thread(kafka.is_running)
    assert await asyncio.to_thread(kafka.start) == bootstrap

    async with topics.admin_client(bootstrap) as admin:
        assert topic in await admin.list_topics()

    # No consumer group: assigning the partition directly avoids a group join and its delay.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, sent.partition)])
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.offset) == (b"k", b"before-restart", sent.offset)


def test_start_fails_fast_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        instance = LocalKafka(tmp_path / "state", port)
        result = instance.run("start", timeout=30)
    assert result.returncode != 0
    assert "already in use" in result.stderr
    # Most likely the user's own Kafka: the message says how to use it instead.
    assert f"KAFKA_BOOTSTRAP_SERVERS={LOOPBACK}:{port} make run" in result.stderr
    assert not instance.is_running()


def test_start_refuses_java_older_than_17(tmp_path: Path) -> None:
    java_home = tmp_path / "jdk11"
    (java_home / "bin").mkdir(parents=True)
    fake_java = java_home / "bin" / "java"
    # Answers the script's version probe the way a Java 11 runtime does (on stderr).
    fake_java.write_text(
        "#!/bin/sh\n"
        "echo 'Property settings:' >&2\n"
        "echo '    java.specification.version = 11' >&2\n"
        "echo 'openjdk version \"11.0.24\" 2024-07-16' >&2\n"
    )
    fake_java.chmod(0o755)
    instance = LocalKafka(tmp_path / "state")
    result = run_local_kafka("start", env={**instance.env, "JAVA_HOME": str(java_home)})
    assert result.returncode != 0
    assert "Java 17" in result.stderr
    assert not (tmp_path / "state").exists(), "nothing should be created before the checks pass"


def test_start_explains_missing_java(tmp_path: Path) -> None:
    # A PATH with the few tools the script needs before it looks for java, and no java.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "rm", "tr", "sed", "head", "ps"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    instance = LocalKafka(tmp_path / "state")
    result = run_local_kafka("start", env={**instance.env, "JAVA_HOME": "", "PATH": str(bin_dir)})
    assert result.returncode != 0
    assert "java not found" in result.stderr


def test_clean_refuses_a_directory_it_did_not_create(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    result = run_local_kafka("clean", env={"LOCAL_KAFKA_DIR": str(precious)})
    assert result.returncode != 0
    assert "refusing" in result.stderr
    assert (precious / "keep.txt").read_text() == "mine"


def test_session_broker_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9092")
    bootstrap, cleanup = bootstrap_for_session()
    assert bootstrap == "kafka-a:9092,kafka-b:9092"
    cleanup()  # a broker the session did not start is left alone


# What a developer exports for the session's broker: none of it may reach a private instance.
SESSION_BROKER_KNOBS = {
    "LOCAL_KAFKA_NODES": "2",
    "LOCAL_KAFKA_PORT": "41000",
    "LOCAL_KAFKA_CONTROLLER_PORT": "41001",
    "LOCAL_KAFKA_PORTS": "41000,41002",
    "LOCAL_KAFKA_CONTROLLER_PORTS": "41001,41003",
}


@pytest.mark.parametrize("nodes", [1, 3])
def test_an_instance_ignores_the_knobs_of_the_session_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: int
) -> None:
    for name, value in SESSION_BROKER_KNOBS.items():
        monkeypatch.setenv(name, value)
    instance = (
        LocalKafka(tmp_path / "kafka")
        if nodes == 1
        else LocalKafkaCluster(tmp_path / "kafka", nodes=nodes)
    )
    result = instance.run("status")
    # 3 is "stopped": the script accepted the instance's own ports (1 would be a refusal).
    assert result.returncode == 3, result.stderr
    assert instance.bootstrap_servers in result.stdout


def test_script_is_executable() -> None:
    assert os.access(LOCAL_KAFKA_SCRIPT, os.X_OK)


@needs_java
@needs_proc
def test_a_cluster_brings_back_only_the_node_that_died(kafka_cluster: LocalKafkaCluster) -> None:
    kafka_cluster.start()
    pids = [kafka_cluster.pid(node) for node in (1, 2, 3)]
    assert None not in pids
    running = kafka_cluster.run("status")
    assert running.returncode == 0
    assert running.stdout.startswith(f"running {kafka_cluster.bootstrap_servers} ")

    kafka_cluster.signal(2, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while kafka_cluster.pid(2) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    degraded = kafka_cluster.run("status")
    assert degraded.returncode == 4
    assert degraded.stdout.startswith(f"degraded {kafka_cluster.bootstrap_servers} ")
    assert " down=2 " in degraded.stdout

    result = kafka_cluster.run("start", timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == kafka_cluster.bootstrap_servers
    assert "node 2: starting" in result.stderr
    assert "node 1: starting" not in result.stderr
    after = [kafka_cluster.pid(node) for node in (1, 2, 3)]
    assert after[0] == pids[0]
    assert after[2] == pids[2]
    assert after[1] not in (None, pids[1])


def test_a_state_dir_keeps_its_node_count(kafka_cluster: LocalKafkaCluster) -> None:
    single = LocalKafka(kafka_cluster.state_dir)  # the cluster's dir, as if for one node
    result = single.run("start", timeout=60)
    assert result.returncode != 0
    assert "holds a Kafka with 3 node(s), not 1" in result.stderr
    assert kafka_cluster.pid(1) is not None  # the cluster was left alone
