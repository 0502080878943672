"""The spool's disk, with real relay processes: a torn last frame after a crash, a spool that
reaches `spool.max_bytes`, and a disk that is really full (a small tmpfs). Kafka is first out of
reach (a bootstrap address nothing listens on), so every request goes to the spool; then a
relay on the same directory and the session's broker drains it, and every request that got a
200 must be in Kafka, whole, and nothing else from the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devsupport import samples
from devsupport import topics as kafka_topics
from devsupport.ports import LOOPBACK, free_port
from devsupport.relay_process import RelayProcess
from relay.spool import segments
from tests.relays import TOKEN, run_cli
from tests.spool_support import (
    headers_of,
    metric,
    spool_env,
    start_serving,
    topic_names,
    until_drained,
)

# About 10 KB each: a handful fill the small spools below.
TEXT = "x" * 10_000


def body(index: int) -> bytes:
    change = samples.message_change(sender=f"1888{index:06d}", text=f"{index} {TEXT}")
    return samples.body(samples.envelope(change))


def unreachable() -> str:
    return f"{LOOPBACK}:{free_port()}"


async def post(url: str, data: bytes) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=data, headers=headers) as response,
    ):
        answer = await response.json()
        return response.status, answer["status"], response.headers.get("Retry-After", "")


@pytest.fixture
def names(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    names = topic_names(f"spool.{uuid.uuid4().hex[:8]}")
    yield names
    with contextlib.suppress(Exception):
        asyncio.run(kafka_topics.delete(kafka_bootstrap, names.values()))


def drain_into_kafka(
    kafka_bootstrap: str, names: dict[str, str], directory: Path, log: Path
) -> RelayProcess:
    """A relay on the spool's directory that reaches Kafka, its topics created."""
    env = spool_env(kafka_bootstrap, names, directory)
    created = run_cli("topics", "create", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    return RelayProcess(env, log).start(within=60)


async def test_a_torn_last_frame_is_counted_and_dropped_and_the_rest_drained(
    kafka_bootstrap: str, names: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "spool"
    relay = RelayProcess(spool_env(unreachable(), names, directory), tmp_path / "relay.log")
    start_serving(relay)
    try:
        bodies = [body(i) for i in range(5)]
        for data in bodies:
            assert (await post(relay.url, data))[:2] == (200, "accepted"), relay.log_tail()
        relay.signal(signal.SIGKILL)  # a crash: no shutdown, the lock goes with the process
        relay.wait(10)
    finally:
        relay.kill()
    [(base, path)] = segments.listed(directory)
    size = path.stat().st_size
    assert segments.scan(path, base).frames == 5
    os.truncate(path, size - 100)  # the last frame cut in its middle, as a crash mid-write

    drainer = drain_into_kafka(kafka_bootstrap, names, directory, tmp_path / "drain.log")
    try:
        await until_drained(drainer, within=30)
        assert drainer.metric("whatsapp_relay_spool_corrupt_frames_total") == 1
        assert drainer.metric("whatsapp_relay_spool_drained_total") == 4
        assert drainer.metric("whatsapp_relay_spool_bytes") == 0
        assert segments.listed(directory) == []  # drained segments are deleted
    finally:
        drainer.stop()
    records = await kafka_topics.read_all(kafka_bootstrap, [names["message"]])
    # The four whole frames, once each; nothing of the torn one.
    assert sorted(r.value for r in records) == sorted(bodies[:4])
    for record in records:
        headers = headers_of(record)
        assert headers["relay-spooled-at"].endswith(b"Z")
        # The record as the direct path makes it: its deterministic ce_id included.
        assert headers["ce_id"] == hashlib.sha256(record.value).hexdigest().encode() + b"-message"
    assert "spool segment damaged" in drainer.log()


async def test_spool_max_bytes_reached_gives_503_and_every_200_is_drained(
    kafka_bootstrap: str, names: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "spool"
    env = spool_env(unreachable(), names, directory, max_bytes=65536)
    relay = start_serving(RelayProcess(env, tmp_path / "relay.log"))
    accepted: list[int] = []
    try:
        for index in range(12):
            status, outcome, retry_after = await post(relay.url, body(index))
            if status == 200:
                assert not accepted or accepted[-1] == index - 1, "a 200 after a 503"
                accepted.append(index)
            else:
                assert (status, outcome) == (503, "overloaded")
                assert retry_after
        assert 3 <= len(accepted) < 12
        assert relay.metric("whatsapp_relay_spool_refused_total", reason="full") == 12 - len(
            accepted
        )
        assert relay.metric("whatsapp_relay_spool_bytes") <= 65536
    finally:
        stopped = relay.stop()
    # SIGTERM with Kafka away: the drain waits out the shutdown bound (5 s), the rest stays on
    # disk, and the exit is clean.
    assert stopped is not None
    assert stopped.exit_code == 0, relay.log_tail()
    assert stopped.seconds is not None
    assert stopped.seconds < 5 + 3
    assert "spool not drained at shutdown" in relay.log()
    drainer = drain_into_kafka(kafka_bootstrap, names, directory, tmp_path / "drain.log")
    try:
        await until_drained(drainer, within=30)
        # Empty again: the direct path, and room for anything.
        assert (await post(drainer.url, body(100)))[:2] == (200, "accepted")
    finally:
        drainer.stop()
    values = {r.value for r in await kafka_topics.read_all(kafka_bootstrap, [names["message"]])}
    assert values == {body(i) for i in accepted} | {body(100)}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 KiB tmpfs of this test's own: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run the suite as root")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k,mode=0755", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_gives_503_never_a_200_without_the_write(
    kafka_bootstrap: str, names: dict[str, str], tmp_path: Path, small_disk: Path
) -> None:
    directory = small_disk / "spool"
    relay = RelayProcess(spool_env(unreachable(), names, directory), tmp_path / "relay.log")
    start_serving(relay)
    accepted: list[int] = []
    refused: list[int] = []
    try:
        for index in range(24):
            status, outcome, retry_after = await post(relay.url, body(index))
            if status == 200:
                accepted.append(index)
            else:
                assert (status, outcome) == (503, "kafka_unavailable"), relay.log_tail()
                assert retry_after
                refused.append(index)
        # The disk holds about 15 of them: the rest were refused, none accepted unwritten.
        assert accepted
        assert refused
        assert max(accepted) < min(refused)
        assert relay.metric("whatsapp_relay_spool_refused_total", reason="io_error") == len(refused)
        assert "spool write failed" in relay.log()
    finally:
        relay.stop()
    drainer = drain_into_kafka(kafka_bootstrap, names, directory, tmp_path / "drain.log")
    try:
        await until_drained(drainer, within=30)
        assert metric(drainer, "whatsapp_relay_spool_corrupt_frames_total") in (0, 1)
        # The space is free again: spooling works once more.
        assert (await post(drainer.url, body(100)))[:2] == (200, "accepted")
    finally:
        drainer.stop()
    values = [r.value for r in await kafka_topics.read_all(kafka_bootstrap, [names["message"]])]
    assert {body(i) for i in accepted} <= set(values)
    # Whole bodies only (a 503'd frame may be there too: its write may have reached the disk).
    assert set(values) <= {body(i) for i in range(24)} | {body(100)}
