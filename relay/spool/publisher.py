"""The spooling publisher: the webhook handler's publisher when `spool.enabled` (docs/design.md
§9.1). It wraps the direct `relay.publish.Publisher`; with the spool off the handler uses that
one itself and nothing here runs.

A request goes to Kafka directly while the spool is empty. It goes to the spool when Kafka has
not acknowledged it within `spool.after_seconds`, at once when the producer is down, Kafka
refused it or the cluster is unreachable, and always while the spool holds anything (records
not yet acknowledged by Kafka, or on their way to the disk): nothing overtakes a spooled
record, so records of one key keep the order their requests were answered in. The spool is
"empty" only when the drainer had every frame acknowledged, and the handler reads that on the
one event loop, so checking and switching back to the direct path is one step.

A direct attempt given up on at `spool.after_seconds` leaves its records in the producer's
queue; they may still reach Kafka, before the spooled copy: a duplicate with the same `ce_id`
(the README's "at least once"), never a loss, and never out of order, since the copy comes
later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import NoReturn

from relay.config import Settings
from relay.deadlines import Deadlines
from relay.metrics import Metrics
from relay.outcomes import PublishError, SpoolReason, SpoolRefusal
from relay.publish import Publisher, PublishFailed
from relay.records import Record
from relay.spool.drainer import Drainer
from relay.spool.store import SpoolFull, SpoolStore

log = logging.getLogger("relay.spool")

_REASONS = {
    PublishError.TIMEOUT: SpoolReason.TIMEOUT,
    PublishError.UNAVAILABLE: SpoolReason.UNAVAILABLE,
    PublishError.KAFKA_ERROR: SpoolReason.KAFKA_ERROR,
}
# What the drain on SIGTERM leaves the producer's flush of the shutdown bound.
_FLUSH_RESERVE_SECONDS = 1.0


class SpoolingPublisher:
    def __init__(self, settings: Settings, metrics: Metrics, direct: Publisher) -> None:
        self._direct = direct
        self._kafka = direct.kafka
        self._metrics = metrics
        self.store = SpoolStore(settings.spool, metrics)
        self._drainer = Drainer(self.store, direct, metrics)
        after = settings.spool.after_seconds
        self._after = Deadlines(after) if after > 0 else None
        # A write the disk has not made durable by then is given up on (a hung disk).
        self._durable_within = Deadlines(settings.kafka.publish_timeout_seconds)
        self._max_bytes = settings.spool.max_bytes
        self._task: asyncio.Task[None] | None = None
        # Why the last request was refused (full, a failed write), until one is spooled again:
        # /readyz shows it as `degraded`.
        self.problem: str | None = None
        metrics.spool_bytes.set_function(lambda: self.store.bytes)
        metrics.spool_max_bytes.set(self._max_bytes)
        metrics.spool_requests.set_function(lambda: self.store.held)
        metrics.spool_oldest_age.set_function(self._oldest_age)

    def _oldest_age(self) -> float:
        oldest = self._drainer.oldest_spooled_at()
        return max(0.0, time.time() - oldest) if oldest is not None else 0.0

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the directory and recover it (before the producer starts, so a second relay
        on the same directory fails at once)."""
        await self.store.open()
        if self._after is not None:
            self._after.start()
        self._durable_within.start()

    def start_draining(self) -> None:
        self._task = asyncio.create_task(self._drainer.run(), name="spool-drainer")

    async def stop(self, deadline: float) -> None:
        """Drain until the spool is empty or `deadline` (loop time, less the producer's flush)
        is near; what is left stays on disk for the next start."""
        loop = asyncio.get_running_loop()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline - _FLUSH_RESERVE_SECONDS):
                    await self.store.emptied.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._after is not None:
            await self._after.stop()
        await self._durable_within.stop()
        if not self.store.empty:
            log.warning(
                "spool not drained at shutdown: the rest is delivered at the next start",
                extra={"requests": self.store.held, "bytes": self.store.bytes},
            )
        await self.store.close(max(0.5, deadline - loop.time()))

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, records: list[Record]) -> None:
        """Return once Kafka acknowledged every record or they are durable in the spool;
        raise `PublishFailed` otherwise."""
        if not self.store.empty:
            return await self._spool(records, SpoolReason.QUEUED)
        if self._after is None:
            return await self._spool(records, SpoolReason.ALWAYS)
        if self._kafka.unreachable is not None:
            return await self._spool(records, SpoolReason.UNAVAILABLE)
        deadline = self._after.arm()
        try:
            await self._direct.publish(records)
            return None
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            self._after.absorb()
            reason = SpoolReason.TIMEOUT
        except PublishFailed as failed:
            if failed.error not in _REASONS:
                raise  # too large for Kafka: spooling it would only block the drain
            reason = _REASONS[failed.error]
        finally:
            deadline.disarm()
        return await self._spool(records, reason)

    async def _spool(self, records: list[Record], reason: SpoolReason) -> None:
        try:
            durable = self.store.append(records)
        except SpoolFull as exc:
            self._metrics.spool_refused[SpoolRefusal.FULL].inc()
            self.problem = "spool full"
            raise PublishFailed(PublishError.SPOOL_FULL, str(exc)) from None
        deadline = self._durable_within.arm()
        try:
            await durable
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            self._durable_within.absorb()
            self._refused(SpoolRefusal.TIMEOUT, "the spool's disk did not confirm the write")
        except OSError as exc:
            self._refused(SpoolRefusal.IO_ERROR, f"spool write failed: {exc.strerror or exc}")
        finally:
            deadline.disarm()
        self.problem = None
        self._metrics.spool_spooled[reason].inc()

    def _refused(self, refusal: SpoolRefusal, problem: str) -> NoReturn:
        self._metrics.spool_refused[refusal].inc()
        self.problem = problem
        raise PublishFailed(PublishError.SPOOL_FAILED, problem)
