"""Group commit: one thread appends frames to the segment files and fsyncs them, so that the
event loop never waits for the disk, and one fsync covers every frame that was queued while the
previous one ran (docs/design.md §9.3).

The event loop queues work (`append`, `close`, `delete`) and gets a future per append; the
thread takes everything queued at once, writes it, fsyncs each file it wrote, and hands the
results back to the loop in one call. A future resolves only after its frame's fsync returned:
that is what a 200 rests on. A write or fsync that fails breaks its segment for good (after a
failed fsync the kernel may have dropped the dirty pages, so neither the bytes nor a retry of
the fsync can be trusted): every frame of it in that batch fails, the file is cut back to what
was durable before, and later frames go to a new segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from relay.spool import segments

log = logging.getLogger("relay.spool")

# What one group commit takes from the queue at most; the rest waits for the next one.
BATCH_BYTES = 16 * 1024 * 1024


class Append(NamedTuple):
    base: int  # the segment's base sequence number
    path: Path
    data: bytes
    end: int  # the segment's size once this frame is in
    spooled_at: float
    future: asyncio.Future[None]


class Close(NamedTuple):
    base: int


class Delete(NamedTuple):
    base: int
    path: Path


_Item = Append | Close | Delete | None  # None: stop


class Result(NamedTuple):
    append: Append
    error: OSError | None


class Commit(NamedTuple):
    """One group commit, as handed back to the loop."""

    results: list[Result]
    seconds: float  # writing and fsyncing it
    broken: dict[int, OSError]  # segments that failed in it, by base


class BrokenSegment(OSError):
    """A frame queued for a segment that an earlier write or fsync broke."""


class GroupCommitWriter:
    def __init__(
        self,
        directory: Path,
        deliver: Callable[[Commit], None],
        *,
        write: Callable[[int, memoryview], int] = os.write,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self._directory = directory
        self._deliver = deliver  # called on the loop with each commit
        self._write = write
        self._fsync = fsync
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._fds: dict[int, int] = {}
        self._durable: dict[int, int] = {}  # segment base -> bytes known to be on disk
        self._broken: dict[int, OSError] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exited: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None

    # -- the loop's side ----------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        # A daemon: a disk that hangs must not keep the process from exiting.
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def append(self, base: int, path: Path, data: bytes, end: int, spooled_at: float) -> Append:
        assert self._loop is not None, "append() before start()"
        item = Append(base, path, data, end, spooled_at, self._loop.create_future())
        self._queue.put(item)
        return item

    def close(self, base: int) -> None:
        self._queue.put(Close(base))

    def delete(self, base: int, path: Path) -> None:
        self._queue.put(Delete(base, path))

    async def stop(self, within: float) -> bool:
        """Finish what is queued and stop; False if the thread did not end in time."""
        if self._exited is None:
            return True
        self._queue.put(None)
        try:
            async with asyncio.timeout(within):
                await asyncio.shield(self._exited)
        except TimeoutError:
            return False
        return True

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            running = True
            while running:
                batch = [self._queue.get()]
                size = _size(batch[0])
                while size < BATCH_BYTES:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                    size += _size(batch[-1])
                running = self._process(batch)
        except BaseException:  # pragma: no cover - a bug here must not end the thread unseen
            log.exception("spool writer failed")
            raise
        finally:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
            self._to_loop(self._set_exited)

    def _process(self, batch: list[_Item]) -> bool:
        """Items in queue order, each run of appends committed together; False at the stop."""
        run: list[Append] = []
        for item in batch:
            if isinstance(item, Append):
                run.append(item)
                continue
            if run:
                self._commit(run)
                run = []
            if item is None:
                return False
            self._close(item.base)
            if isinstance(item, Delete):
                self._broken.pop(item.base, None)
                self._unlink(item.path)
        if run:
            self._commit(run)
        return True

    def _commit(self, run: list[Append]) -> None:
        started = time.perf_counter()
        failed: dict[int, OSError] = {}
        written: dict[int, int] = {}  # base -> fd, in the order first written
        for item in run:
            base = item.base
            if base in failed or base in self._broken:
                continue
            try:
                fd = self._fds.get(base)
                if fd is None:
                    fd = self._create(base, item.path)
                self._write_all(fd, item.data)
                written[base] = fd
            except OSError as exc:
                failed[base] = exc
        for base, fd in written.items():
            if base in failed:
                continue
            try:
                self._fsync(fd)
            except OSError as exc:
                failed[base] = exc
        for base, error in failed.items():
            self._break(base, error)
        results = []
        for item in run:
            broken = self._broken.get(item.base)
            if broken is None:
                self._durable[item.base] = item.end
            elif item.base not in failed:
                broken = BrokenSegment(broken.errno, f"segment broken earlier: {broken.strerror}")
            results.append(Result(item, broken))
        commit = Commit(results, time.perf_counter() - started, failed)
        self._to_loop(self._deliver, commit)

    def _create(self, base: int, path: Path) -> int:
        """A new segment: its header durable, and its name in the directory, before any frame
        in it can count as written."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            self._write_all(fd, segments.header(base))
            self._fsync(fd)
            segments.sync_directory(self._directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._fds[base] = fd
        self._durable[base] = segments.HEADER_BYTES
        return fd

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._write(fd, view) :]

    def _break(self, base: int, error: OSError) -> None:
        self._broken[base] = error
        fd = self._fds.pop(base, None)
        durable = self._durable.get(base)
        log.error(
            "spool write failed: the segment is closed, later requests go to a new one",
            extra={"segment": base, "error": error.strerror or str(error)},
        )
        if fd is None:
            return
        # What this batch wrote of it never got a 200: cut it off if the disk lets us.
        with contextlib.suppress(OSError):
            if durable is not None:
                os.ftruncate(fd, durable)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _close(self, base: int) -> None:
        fd = self._fds.pop(base, None)
        self._durable.pop(base, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            # Left on disk it is drained again at the next start: duplicates, nothing lost.
            log.warning(
                "spool segment not deleted", extra={"segment": path.name, "error": exc.strerror}
            )

    def _to_loop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(callback, *args)

    def _set_exited(self) -> None:
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)


def _size(item: _Item) -> int:
    return len(item.data) if isinstance(item, Append) else 0
