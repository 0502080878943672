"""The segment log as the event loop sees it: which segments exist, what each holds, how much of
it Kafka has acknowledged, and the byte budget (docs/design.md §9).

Everything here runs on the event loop and is plain bookkeeping: the disk is the writer
thread's (relay.spool.writer) and the recovery scan's (relay.spool.segments, in a thread).
Frames are laid out here, in the order requests are spooled, so sequence numbers and file
offsets follow that order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relay.config import SpoolConfig
from relay.metrics import Metrics
from relay.records import Record
from relay.spool import frames, segments
from relay.spool.lock import DirectoryLock
from relay.spool.writer import Append, Commit, GroupCommitWriter
from relay.startup import StartupError

log = logging.getLogger("relay.spool")


class SpoolFull(Exception):
    """The frame would take the spool past `spool.max_bytes`."""


@dataclass(eq=False)
class Segment:
    base: int
    path: Path
    laid_out: int  # bytes assigned to frames so far, header included
    committed: int  # bytes durable: what the drainer may read
    frames: int  # durable frames
    acked: int = 0  # frames Kafka acknowledged (or dropped as damaged), from the first on
    pending: int = 0  # frames queued for the writer, not yet durable or failed
    first_spooled_at: float | None = None
    sealed: bool = False  # no frame is laid out in it any more

    @property
    def drained(self) -> bool:
        return self.sealed and not self.pending and self.acked >= self.frames


class SpoolStore:
    def __init__(self, config: SpoolConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self.directory = config.directory
        self._lock = DirectoryLock(self.directory)
        self._writer = GroupCommitWriter(self.directory, self._committed)
        self.segments: dict[int, Segment] = {}  # by base, oldest first
        self._next_seq = 0
        self.bytes = 0  # durable bytes of the segments on disk
        self._pending_bytes = 0
        self._pending = 0
        self.held = 0  # durable frames Kafka has not acknowledged
        # Called after every commit: the drainer waits for more to read.
        self.on_change: Callable[[], None] = _nothing
        self.emptied = asyncio.Event()  # set while empty (the drain at shutdown waits for it)
        self.emptied.set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the directory, recover what an earlier run left, start the writer."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            recovered = await asyncio.to_thread(segments.recover, self.directory)
        except segments.ForeignSegment as exc:
            self._lock.release()
            raise StartupError(str(exc)) from None
        except BaseException:
            self._lock.release()
            raise
        for found in recovered.segments:
            self.segments[found.base] = Segment(
                found.base,
                found.path,
                laid_out=found.size,
                committed=found.size,
                frames=found.frames,
                first_spooled_at=found.first_spooled_at,
                sealed=True,  # new frames always go to a new segment
            )
            self.bytes += found.size
            self.held += found.frames
        self._next_seq = recovered.next_seq
        if self.held:
            self.emptied.clear()
        self._metrics.spool_corrupt_frames.inc(recovered.corrupt)
        self._writer.start()
        if self.held:
            log.info(
                "spool recovered: draining it to Kafka",
                extra={"requests": self.held, "bytes": self.bytes,
                       "segments": len(self.segments), "corrupt_frames": recovered.corrupt},
            )  # fmt: skip

    async def close(self, within: float) -> None:
        """Stop the writer (what it was given is written first) and release the lock."""
        if not await self._writer.stop(within):
            log.error("spool writer did not stop in time: the disk does not answer")
        self._lock.release()

    # -- state --------------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Nothing Kafka has not acknowledged, and nothing on its way to the disk."""
        return not self.held and not self._pending

    @property
    def reserved(self) -> int:
        return self.bytes + self._pending_bytes

    def oldest_spooled_at(self) -> float | None:
        for segment in self.segments.values():
            if segment.acked < segment.frames:
                return segment.first_spooled_at
        return None

    # -- writing ------------------------------------------------------------------------------

    def append(self, records: list[Record]) -> asyncio.Future[None]:
        """Lay the records out as the next frame and queue it; the future resolves once it is
        durable (raises the OSError if it failed). SpoolFull at once if it does not fit."""
        spooled_at = time.time()
        data = frames.encode(self._next_seq, spooled_at, records)
        if self.reserved + len(data) + segments.HEADER_BYTES > self._config.max_bytes:
            raise SpoolFull(f"spool.max_bytes ({self._config.max_bytes}) reached")
        segment = self._active()
        self.emptied.clear()
        segment.laid_out += len(data)
        segment.pending += 1
        self._next_seq += 1
        self._pending += 1
        self._pending_bytes += len(data)
        item = self._writer.append(segment.base, segment.path, data, segment.laid_out, spooled_at)
        return item.future

    def _active(self) -> Segment:
        """The segment the next frame goes to: the newest, unless it is sealed or full."""
        if self.segments:
            newest = next(reversed(self.segments.values()))
            if not newest.sealed and newest.laid_out < self._config.segment_bytes:
                return newest
            if not newest.sealed:
                self.seal(newest)
        base = self._next_seq
        segment = Segment(
            base,
            segments.path_of(self.directory, base),
            laid_out=segments.HEADER_BYTES,
            committed=segments.HEADER_BYTES,
            frames=0,
        )
        self.segments[base] = segment
        self.bytes += segments.HEADER_BYTES
        return segment

    def seal(self, segment: Segment) -> None:
        """No frame is laid out in `segment` any more (it is full, broken or damaged)."""
        if segment.sealed:
            return
        segment.sealed = True
        self._writer.close(segment.base)
        self._delete_if_drained(segment)

    def _committed(self, commit: Commit) -> None:
        """The writer's results, on the loop: bookkeeping first, then the waiting requests."""
        self._metrics.spool_commit_duration.observe(commit.seconds)
        for result in commit.results:
            item: Append = result.append
            size = len(item.data)
            self._pending -= 1
            self._pending_bytes -= size
            segment = self.segments.get(item.base)
            if segment is not None:
                segment.pending -= 1
                if result.error is None:
                    segment.committed = item.end
                    segment.frames += 1
                    if segment.first_spooled_at is None:
                        segment.first_spooled_at = item.spooled_at
                    self.bytes += size
                    self.held += 1
            future = item.future
            if not future.done():
                if result.error is None:
                    future.set_result(None)
                else:
                    future.set_exception(result.error)
        for base in commit.broken:
            segment = self.segments.get(base)
            if segment is not None:
                self.seal(segment)
                self._delete_if_drained(segment)
        self.on_change()
        if self.empty:
            self.retire()

    # -- draining -----------------------------------------------------------------------------

    def acknowledge(self, segment: Segment, count: int = 1) -> None:
        """`count` more frames of `segment`, from its first on, are in Kafka (or were dropped
        as damaged); a drained segment is deleted, and an empty spool closes its last one."""
        segment.acked += count
        self.held -= count
        if segment.drained:
            self._delete(segment)
        if self.empty:
            self.retire()

    def retire(self) -> None:
        """Nothing left to drain: the newest segment is closed and deleted too, so the next
        spooled request starts a new one (and the relay is back on the direct path)."""
        self.emptied.set()
        for segment in list(self.segments.values()):
            if not segment.sealed:
                segment.sealed = True
                self._writer.close(segment.base)
            self._delete_if_drained(segment)

    def _delete_if_drained(self, segment: Segment) -> None:
        if segment.drained:
            self._delete(segment)

    def _delete(self, segment: Segment) -> None:
        if self.segments.pop(segment.base, None) is None:
            return
        self.bytes -= segment.committed
        self._writer.delete(segment.base, segment.path)

    def after(self, base: int | None) -> Segment | None:
        """The first segment after `base` (the oldest one with None)."""
        for segment in self.segments.values():
            if base is None or segment.base > base:
                return segment
        return None


def _nothing() -> None:
    pass
