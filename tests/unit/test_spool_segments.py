"""Segment files, recovery after a crash, the writer's group commit and its failures, the lock:
on a real directory, with the disk's failures injected where a real disk will not fail on cue."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from relay.config import SpoolConfig
from relay.metrics import Metrics
from relay.spool import frames, segments
from relay.spool.lock import DirectoryLock
from relay.spool.store import SpoolFull, SpoolStore
from relay.spool.writer import GroupCommitWriter
from relay.startup import StartupError
from tests.unit.test_spool_frames import records


def write_segment(directory: Path, base: int, count: int) -> Path:
    path = segments.path_of(directory, base)
    data = segments.header(base)
    for i in range(count):
        data += frames.encode(base + i, 1000.0 + i, records(base + i))
    path.write_bytes(data)
    return path


def test_recovery_keeps_whole_frames_cuts_a_torn_tail_once_and_deletes_empty_segments(
    tmp_path: Path,
) -> None:
    write_segment(tmp_path, 0, 3)
    torn = write_segment(tmp_path, 3, 4)
    size = torn.stat().st_size
    os.truncate(torn, size - 7)  # the last frame cut short: a crash mid-write
    segments.path_of(tmp_path, 7).write_bytes(segments.header(7)[:5])  # created, never synced
    (tmp_path / "lock").write_text("1\n")  # not a segment: left alone

    recovered = segments.recover(tmp_path)
    assert [(s.base, s.frames) for s in recovered.segments] == [(0, 3), (3, 3)]
    assert recovered.corrupt == 1
    assert recovered.next_seq == 6
    assert recovered.segments[0].first_spooled_at == 1000.0
    assert [base for base, _ in segments.listed(tmp_path)] == [0, 3]
    assert torn.stat().st_size == recovered.segments[1].size  # cut where the frames end
    assert segments.recover(tmp_path).corrupt == 0  # counted once


def test_damage_in_one_segment_drops_its_rest_but_keeps_the_later_segments(
    tmp_path: Path,
) -> None:
    damaged = write_segment(tmp_path, 0, 3)
    write_segment(tmp_path, 3, 2)
    data = bytearray(damaged.read_bytes())
    data[segments.HEADER_BYTES + 20] ^= 0xFF  # inside the first frame
    damaged.write_bytes(bytes(data))
    recovered = segments.recover(tmp_path)
    # The first segment had nothing left: deleted. A write that failed closed its segment, so
    # the later one holds frames acknowledged on their own.
    assert [(s.base, s.frames) for s in recovered.segments] == [(3, 2)]
    assert recovered.corrupt == 1


def test_a_file_of_another_format_stops_the_start_instead_of_being_deleted(
    tmp_path: Path,
) -> None:
    path = segments.path_of(tmp_path, 0)
    path.write_bytes(b"WARSPOOL\x00\x00\x00\x02" + bytes(8))
    with pytest.raises(segments.ForeignSegment, match="not a spool segment of format 1"):
        segments.recover(tmp_path)
    assert path.exists()


def test_a_frame_larger_than_one_read_is_read_whole(tmp_path: Path) -> None:
    big = records(0, b"y" * (segments.READ_BYTES + 1000))
    path = segments.path_of(tmp_path, 5)
    data = segments.header(5) + frames.encode(5, 1.0, big) + frames.encode(6, 2.0, records(1))
    path.write_bytes(data)
    chunk = segments.read_chunk(path, segments.HEADER_BYTES, len(data), 5)
    assert [frame.seq for frame, _ in chunk.frames] == [5]
    assert chunk.frames[0][0].records == big
    rest = segments.read_chunk(path, chunk.end, len(data), 6)
    assert [frame.seq for frame, _ in rest.frames] == [6]
    assert rest.end == len(data)


def test_a_second_relay_on_the_directory_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    first = DirectoryLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(StartupError, match=rf"in use by another relay \(process {os.getpid()}"):
            DirectoryLock(tmp_path).acquire()
    finally:
        first.release()
    second = DirectoryLock(tmp_path)
    second.acquire()  # released with its holder
    second.release()


def config(directory: Path, **overrides: int) -> SpoolConfig:
    return SpoolConfig(enabled=True, directory=directory, **overrides)


async def test_one_fsync_covers_every_frame_queued_while_the_previous_one_ran(
    tmp_path: Path,
) -> None:
    synced: list[int] = []

    def slow_fsync(fd: int) -> None:
        time.sleep(0.01)  # a disk that takes 10 ms per fsync
        os.fsync(fd)
        synced.append(fd)

    metrics = Metrics("test")
    store = SpoolStore(config(tmp_path), metrics)
    store._writer = GroupCommitWriter(tmp_path, store._committed, fsync=slow_fsync)
    await store.open()
    try:
        await asyncio.gather(*(store.append(records(i)) for i in range(200)))
        assert store.held == 200
        commits = metrics.spool_commit_duration._children[()]
        assert sum(commits.counts) < 20, "about one fsync per batch, not per request"
        assert len(synced) < 25  # the commits, and the new segment's header
    finally:
        await store.close(5)
    recovered = segments.recover(tmp_path)
    assert sum(s.frames for s in recovered.segments) == 200


@pytest.mark.parametrize("failing", ["fsync", "write"])
async def test_a_failed_write_or_fsync_fails_its_requests_and_the_next_go_to_a_new_segment(
    tmp_path: Path, failing: str
) -> None:
    broken = threading.Event()  # set: the disk fails, once (in the writer's thread)

    def flaky(real):
        def call(fd, *args):
            if broken.is_set():
                broken.clear()
                code = errno.EIO if failing == "fsync" else errno.ENOSPC
                raise OSError(code, os.strerror(code))
            return real(fd, *args)

        return call

    store = SpoolStore(config(tmp_path), Metrics("test"))
    hooks = {"fsync": flaky(os.fsync)} if failing == "fsync" else {"write": flaky(os.write)}
    store._writer = GroupCommitWriter(tmp_path, store._committed, **hooks)
    await store.open()
    try:
        await store.append(records(0))
        broken.set()
        results = await asyncio.gather(
            *(store.append(records(i)) for i in range(1, 4)), return_exceptions=True
        )
        assert all(isinstance(r, OSError) for r in results), results
        assert store.held == 1  # only what was durable counts
        await store.append(records(4))
        assert store.held == 2
        assert len(store.segments) == 2  # the failed segment closed, a new one for the rest
    finally:
        await store.close(5)
    recovered = segments.recover(tmp_path)
    assert [s.frames for s in recovered.segments] == [1, 1]
    assert recovered.corrupt == 0  # what failed was cut off again


async def test_max_bytes_is_a_bound_on_what_is_held(tmp_path: Path) -> None:
    store = SpoolStore(config(tmp_path, max_bytes=65536), Metrics("test"))
    await store.open()
    try:
        body = b"z" * 10_000
        for i in range(6):  # 10 KB frames: six fit in 64 KiB, with the segment's header
            await store.append(records(i, body))
        with pytest.raises(SpoolFull):
            store.append(records(6, body))
        assert store.held == 6
        assert store.reserved <= 65536
    finally:
        await store.close(5)


async def test_segments_roll_at_segment_bytes_and_go_once_every_frame_is_acknowledged(
    tmp_path: Path,
) -> None:
    store = SpoolStore(config(tmp_path, segment_bytes=4096), Metrics("test"))
    await store.open()
    try:
        for i in range(12):
            await store.append(records(i, b"w" * 1000))
        assert len(store.segments) >= 3
        oldest = store.after(None)
        assert oldest is not None
        store.acknowledge(oldest, oldest.frames)
        await asyncio.sleep(0.1)  # the writer deletes it
        assert not oldest.path.exists()
        assert oldest.base not in store.segments
        for segment in list(store.segments.values()):
            store.acknowledge(segment, segment.frames - segment.acked)
        assert store.empty
        assert store.segments == {}  # the newest one too: back to the direct path
        await asyncio.sleep(0.1)
        assert segments.listed(tmp_path) == []
        assert store.bytes == 0
    finally:
        await store.close(5)
