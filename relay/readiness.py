"""Whether this pod can serve webhooks: what /readyz answers and the readiness gauges show.

The service owns it and knows whether the webhook listener accepts and whether the process is
shutting down; the publisher keeps a `KafkaState` up to date and says whether its producer runs.

Not ready before the webhook listener is bound, while shutting down, while this pod's producer
is not running, until Kafka has answered once since start, and while a topic is missing or (with
`kafka.require_durable_topics`) not durable. Once Kafka has answered, a broker that dies or hangs
never turns readiness off, nor does the whole cluster going away: every replica would fail at the
same moment and the Service would empty, so senders would get the ingress's bare 503 instead of
the relay's 503 + Retry-After, and the relay's metrics would stop counting them (README,
"Readiness and Kafka"). `kafka_ready` and `degraded` tell.

With the spool on (relay.spool), a producer that is not running does not turn readiness off
either: the spool takes the webhooks meanwhile. Its troubles (full, failing writes) are
`degraded`, for the same reason as an outage: every replica would see them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass
class KafkaState:
    """What Kafka looks like from this pod; the publisher keeps it up to date."""

    producer_problem: str | None = "kafka producer not started"  # None while a producer runs
    reached: bool = False  # Kafka answered the topic check at least once since start
    unreachable: str | None = None  # the latest topic check found no broker
    topics_problem: str | None = None  # the last known problem with the topics

    def checked(self, unreachable: str | None, topics_problem: str | None) -> bool:
        """Record a topic check's result; True when anything changed."""
        before = (self.reached, self.unreachable, self.topics_problem)
        if unreachable is None:
            self.reached = True
            # An unreachable cluster says nothing new about the topics: the last answer stands.
            self.topics_problem = topics_problem
        self.unreachable = unreachable
        return (self.reached, self.unreachable, self.topics_problem) != before


class SpoolHealth(Protocol):
    @property
    def problem(self) -> str | None:
        """Why the spool refused the latest request, until it takes one again."""


class Readiness:
    def __init__(
        self,
        kafka: KafkaState,
        producer_alive: Callable[[], bool],
        spool: SpoolHealth | None = None,
    ) -> None:
        self._kafka = kafka
        self._spool = spool
        # Asked at read time, so a producer that just died turns readiness off before the
        # supervisor has noticed.
        self._producer_alive = producer_alive
        # The admin listener (and so /readyz) comes up before the public one: not ready until
        # webhooks can actually connect.
        self.accepting = False
        self.shutting_down = False

    @property
    def kafka_ready(self) -> bool:
        kafka = self._kafka
        return (
            kafka.reached
            and kafka.unreachable is None
            and kafka.topics_problem is None
            and self._producer_alive()
        )

    @property
    def reason(self) -> str | None:
        """Why not ready; None when ready."""
        kafka = self._kafka
        if self.shutting_down:
            return "shutting down"
        if not self.accepting:
            return "starting"
        if not self._producer_alive() and self._spool is None:
            return kafka.producer_problem or "kafka producer not running"
        if kafka.topics_problem is not None:
            return kafka.topics_problem
        if not kafka.reached:
            return kafka.unreachable or "kafka not reached yet"
        return None

    @property
    def degraded(self) -> str | None:
        """Ready, but Kafka does not answer (webhooks get the relay's own 503s, or go to the
        spool), or the spool refuses them."""
        kafka = self._kafka
        problems = [kafka.unreachable] if kafka.reached and kafka.unreachable else []
        if self._spool is not None:
            if not self._producer_alive():
                problems.append(kafka.producer_problem or "kafka producer not running")
            if self._spool.problem is not None:
                problems.append(self._spool.problem)
        return "; ".join(problems) if problems else None
