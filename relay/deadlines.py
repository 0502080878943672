"""Many timeouts of the same length on one timer.

`asyncio.timeout()` arms and cancels a timer per use (about 4 µs, a few percent of a request).
Every publish waits at most the same `publish_timeout_seconds`, so deadlines expire in the
order they were armed: a FIFO queue and one sweeper task that wakes every `resolution`
seconds replace the per-request timers. A deadline fires up to `resolution` late.

    entry = deadlines.arm()
    try:
        await work()
    except asyncio.CancelledError:
        if entry.expired:   # our deadline, not someone else's cancellation
            deadlines.absorb()
            ...timed out...
        raise
    finally:
        entry.disarm()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class Deadline:
    __slots__ = ("expired", "task", "when")

    def __init__(self, task: asyncio.Task[object] | None, when: float) -> None:
        self.task = task
        self.when = when
        self.expired = False

    def disarm(self) -> None:
        self.task = None


class Deadlines:
    def __init__(self, seconds: float, resolution: float = 0.05) -> None:
        self.seconds = seconds
        self._resolution = resolution
        self._queue: collections.deque[Deadline] = collections.deque()
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        # Kept for arm(): on Python 3.11, every lookup of the running loop costs a getpid()
        # system call, and arm() runs once per request.
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep(), name="deadline-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def arm(self) -> Deadline:
        """A deadline for the current task, `seconds` from now (after start())."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("Deadlines.arm() before start()")
        entry = Deadline(asyncio.current_task(loop), loop.time() + self.seconds)
        self._queue.append(entry)
        return entry

    @staticmethod
    def absorb() -> None:
        """Take back the cancellation a deadline delivered, as `asyncio.timeout` does, so
        the task is not left marked as being cancelled."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            await asyncio.sleep(self._resolution)
            now = loop.time()
            while queue and queue[0].when <= now:
                entry = queue.popleft()
                if entry.task is not None:
                    entry.expired = True
                    entry.task.cancel()
