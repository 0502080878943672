"""The drainer: the spool's frames to Kafka, oldest first, through the relay's own producer
(docs/design.md §9.4).

Each frame's records go out exactly as the direct path sends them (topic, key, value,
headers), plus `relay-spooled-at`. At most WINDOW_REQUESTS frames and WINDOW_BYTES are in flight
at once. A frame counts as drained once Kafka acknowledged all its records, and frames are
acknowledged to the store in order, so a segment is deleted only when every frame in it is in
Kafka. When a send fails or the producer it went through dies, the drainer starts again from
the first frame not acknowledged, resending what came after it too: at least once, never less.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from dataclasses import dataclass

from aiokafka.errors import KafkaError

from relay.kafka_client import Producer
from relay.metrics import Metrics
from relay.publish import Publisher
from relay.records import rfc3339
from relay.spool import segments
from relay.spool.frames import Frame
from relay.spool.store import Segment, SpoolStore

log = logging.getLogger("relay.spool")

SPOOLED_AT_HEADER = "relay-spooled-at"
WINDOW_REQUESTS = 256
WINDOW_BYTES = 8 * 1024 * 1024
# How often the drainer looks again when nothing told it to (a producer that came back).
_IDLE_SECONDS = 0.5
_FIRST_BACKOFF, _MAX_BACKOFF = 0.5, 5.0


@dataclass(eq=False, slots=True)
class _InFlight:
    segment: Segment
    start: int  # the frame's offset in its segment
    seq: int
    size: int
    spooled_at: float
    remaining: int  # records not acknowledged yet
    failed: str | None = None


@dataclass(slots=True)
class _Cursor:
    """Where the next frame to read is."""

    segment: Segment | None
    offset: int
    seq: int


class Drainer:
    def __init__(self, store: SpoolStore, publisher: Publisher, metrics: Metrics) -> None:
        self._store = store
        self._publisher = publisher
        self._metrics = metrics
        self._window: deque[_InFlight] = deque()
        self._window_bytes = 0
        self._read: deque[tuple[Frame, Segment, int, int]] = deque()  # read, not sent yet
        self._cursor = _Cursor(None, 0, 0)
        self._skip: Segment | None = None  # a damaged segment: the rest of it is dropped
        self._producer: Producer | None = None  # what the window was sent through
        self._generation = 0  # callbacks of a window given up on are ignored
        self._failure: str | None = None
        self._head_spooled_at: float | None = None  # of the first frame not acknowledged
        self._wake = asyncio.Event()
        store.on_change = self._wake.set

    def oldest_spooled_at(self) -> float | None:
        """When the oldest request not yet in Kafka was spooled; None when there is none."""
        if self._store.empty:
            return None
        if self._window:
            return self._window[0].spooled_at
        return self._head_spooled_at or self._store.oldest_spooled_at()

    async def run(self) -> None:
        backoff = _FIRST_BACKOFF
        while True:
            self._wake.clear()
            if self._collect():
                backoff = _FIRST_BACKOFF
            if self._failure is not None:
                self._rewind()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            # Nothing is sent while the cluster is known to be away: records left waiting in
            # the producer only come back as duplicates (or, expired, as failures).
            producer = self._publisher.live_producer()
            reachable = self._publisher.kafka.unreachable is None
            if producer is not None and reachable and self._room():
                entry = await self._next()
                if entry is not None:
                    await self._send(producer, *entry)
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_IDLE_SECONDS):
                    await self._wake.wait()

    # -- reading ------------------------------------------------------------------------------

    def _room(self) -> bool:
        return len(self._window) < WINDOW_REQUESTS and self._window_bytes < WINDOW_BYTES

    async def _next(self) -> tuple[Frame, Segment, int, int] | None:
        """The next frame to send, with its segment, start and end; None when there is none
        to read now."""
        while not self._read:
            cursor = self._cursor
            segment = cursor.segment
            if segment is None or self._exhausted(segment):
                following = self._store.after(segment.base if segment else None)
                if following is None:
                    return None
                self._skip = None
                self._cursor = _Cursor(following, segments.HEADER_BYTES, following.base)
                continue
            if cursor.offset >= segment.committed:
                return None  # the newest segment, read to its end: wait for more
            chunk = await asyncio.to_thread(
                segments.read_chunk, segment.path, cursor.offset, segment.committed, cursor.seq
            )
            start = cursor.offset
            for frame, end in chunk.frames:
                self._read.append((frame, segment, start, end))
                start = end
            self._cursor = _Cursor(segment, chunk.end, cursor.seq + len(chunk.frames))
            if chunk.problem is not None:
                self._damaged(segment, chunk.end, chunk.problem)
        return self._read.popleft()

    def _exhausted(self, segment: Segment) -> bool:
        """Read to its end, and nothing more can come to it: drop what was not read (a damaged
        segment's rest) and move on."""
        read = segment is self._skip or self._cursor.offset >= segment.committed
        if not (read and segment.sealed and not segment.pending):
            return False
        unread = segment.frames - (self._cursor.seq - segment.base)
        if unread > 0:
            self._store.acknowledge(segment, unread)
        return True

    def _damaged(self, segment: Segment, offset: int, problem: str) -> None:
        self._metrics.spool_corrupt_frames.inc()
        log.error(
            "spool frame damaged: the rest of its segment is dropped",
            extra={"segment": segment.path.name, "offset": offset, "problem": problem},
        )
        self._skip = segment
        self._store.seal(segment)

    # -- sending ------------------------------------------------------------------------------

    async def _send(
        self, producer: Producer, frame: Frame, segment: Segment, start: int, end: int
    ) -> None:
        if not self._window:
            self._producer = producer
        elif producer is not self._producer:
            self._failure = "the producer was rebuilt"
            self._read.appendleft((frame, segment, start, end))
            return
        entry = _InFlight(
            segment, start, frame.seq, end - start, frame.spooled_at, len(frame.records)
        )
        self._window.append(entry)
        self._window_bytes += entry.size
        spooled = (SPOOLED_AT_HEADER, rfc3339(frame.spooled_at))
        done = functools.partial(self._record_done, entry, self._generation)
        for record in frame.records:
            try:
                future = await producer.send(
                    record.topic, record.value, key=record.key, headers=[*record.headers, spooled]
                )
            except (KafkaError, OSError) as exc:
                entry.failed = str(exc) or type(exc).__name__
                self._failure = entry.failed
                return
            future.add_done_callback(done)

    def _record_done(
        self, entry: _InFlight, generation: int, future: asyncio.Future[object]
    ) -> None:
        if generation != self._generation:
            return
        if future.cancelled():
            entry.failed = "cancelled"
        elif (exc := future.exception()) is not None:
            entry.failed = str(exc) or type(exc).__name__
            if self._producer is not None:
                self._producer.failed(exc)
        entry.remaining -= 1
        self._wake.set()

    def _collect(self) -> bool:
        """Acknowledge the frames at the head of the window that are wholly in Kafka; note a
        failure. True when any was."""
        acknowledged = False
        window = self._window
        while window:
            head = window[0]
            if head.failed is not None:
                self._failure = head.failed
                break
            if head.remaining:
                break
            window.popleft()
            self._window_bytes -= head.size
            self._store.acknowledge(head.segment)
            self._metrics.spool_drained.inc()
            self._head_spooled_at = window[0].spooled_at if window else None
            acknowledged = True
        producer = self._producer
        if window and self._failure is None and producer is not None and not producer.alive:
            self._failure = "the producer stopped"
        return acknowledged

    def _rewind(self) -> None:
        """Give the window up and read again from its first frame."""
        head = self._window[0] if self._window else None
        if head is not None:
            self._cursor = _Cursor(head.segment, head.start, head.seq)
            self._head_spooled_at = head.spooled_at
        elif self._read:
            frame, segment, start, _ = self._read[0]
            self._cursor = _Cursor(segment, start, frame.seq)
        log.warning(
            "spool drain interrupted: sending again from the first request not acknowledged",
            extra={"reason": self._failure, "requests_in_flight": len(self._window)},
        )
        self._metrics.spool_drain_retries.inc()
        self._window.clear()
        self._window_bytes = 0
        self._read.clear()
        self._producer = None
        self._generation += 1
        self._failure = None
