"""The relay's five topics: `whatsapp-relay topics create`, and the checks the running relay
makes on them (they exist; a 200 rests on more than one replica).

Durability. With `acks=all` the leader acknowledges a record once every in-sync replica has
it, and refuses the write while fewer than `min.insync.replicas` are in sync. So a 200 rests on
at least min(replication factor, min.insync.replicas) copies. When that is 1 (stock Kafka's
`min.insync.replicas` is 1, and `-1` replication means the broker default, also 1), the leader
alone may acknowledge, and losing its disk after the 200 loses the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from relay.config import Settings
from relay.kafka_client import ClusterClient, ClusterUnreachable, TopicState
from relay.kafka_options import connection_options
from relay.metrics import Metrics

log = logging.getLogger("relay.topics")

MIN_INSYNC = "min.insync.replicas"
MAX_MESSAGE_BYTES = "max.message.bytes"
# The replication factor `topics create` picks when none is configured, if the cluster has
# that many brokers: one broker may fail and a 200 still rests on two copies.
DEFAULT_REPLICATION = 3
_DESCRIBE_ATTEMPTS = 50
_DESCRIBE_PAUSE_S = 0.2


@dataclass(frozen=True, slots=True)
class TopicResult:
    name: str
    status: str  # "created" | "exists" | "differs" | "failed"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Wanted:
    """What `topics create` makes, for a cluster of a given size."""

    partitions: int
    replication_factor: int  # -1: the broker's default
    min_insync_replicas: int | None  # None: the broker's default
    max_message_bytes: int

    @classmethod
    def for_cluster(cls, settings: Settings, brokers: int) -> Wanted:
        topics = settings.topics
        replication = topics.replication_factor
        if replication is None:
            replication = max(1, min(DEFAULT_REPLICATION, brokers))
        min_insync = topics.min_insync_replicas
        if min_insync is None and replication > 0:
            min_insync = max(1, replication - 1)
        # A topic whose max.message.bytes is below the body limit would refuse records the
        # ingress accepted: every such request would end in a 503 and retry for days.
        max_bytes = topics.max_message_bytes or settings.record_size_limit
        return cls(topics.partitions, replication, min_insync, max_bytes)

    def impossible(self, brokers: int) -> str | None:
        """Why topics made like this could never take a write, if they could not."""
        if self.replication_factor > brokers:
            return (
                f"replication factor {self.replication_factor} needs as many brokers; "
                f"the cluster has {brokers}"
            )
        if (
            self.min_insync_replicas is not None
            and 0 < self.replication_factor < self.min_insync_replicas
        ):
            return (
                f"{MIN_INSYNC} {self.min_insync_replicas} above the replication factor "
                f"{self.replication_factor}: every write would be refused"
            )
        return None

    def configs(self) -> dict[str, str]:
        configs = {MAX_MESSAGE_BYTES: str(self.max_message_bytes)}
        if self.min_insync_replicas is not None:
            configs[MIN_INSYNC] = str(self.min_insync_replicas)
        return configs

    def differences(self, state: TopicState) -> list[str]:
        """How an existing topic differs from what `topics create` would have made."""
        found = []
        if state.partitions != self.partitions:
            found.append(f"{state.partitions} partitions (configured {self.partitions})")
        if self.replication_factor > 0 and state.replication_factor != self.replication_factor:
            found.append(
                f"replication factor {state.replication_factor} "
                f"(configured {self.replication_factor})"
            )
        for key, want in self.configs().items():
            have = state.configs.get(key)
            if have is not None and have != want:
                found.append(f"{key} {have} (configured {want})")
        return found


def durability_problem(state: TopicState) -> str | None:
    """Why a 200 on this topic could rest on a single replica, or None when it cannot."""
    min_insync = state.config_int(MIN_INSYNC)
    if min_insync is None:
        return f"{state.name}: {MIN_INSYNC} unknown (no DescribeConfigs permission?)"
    if min(state.replication_factor, min_insync) < 2:
        return (
            f"{state.name}: a 200 can rest on one replica (replication factor "
            f"{state.replication_factor}, {MIN_INSYNC} {min_insync})"
        )
    return None


def availability_warning(state: TopicState) -> str | None:
    """Settings that are durable but refuse writes when a broker is away."""
    min_insync = state.config_int(MIN_INSYNC)
    if min_insync is None:
        return None
    if min_insync > state.replication_factor:
        return (
            f"{state.name}: {MIN_INSYNC} {min_insync} above the replication factor "
            f"{state.replication_factor}: every write is refused"
        )
    if min_insync == state.replication_factor > 1:
        return (
            f"{state.name}: {MIN_INSYNC} equals the replication factor "
            f"({min_insync}): writes stop while any one replica is away"
        )
    return None


def cluster_client(settings: Settings) -> ClusterClient:
    return ClusterClient(**connection_options(settings.kafka))


# ----------------------------------------------------------------------- topics create


async def create_topics(settings: Settings) -> list[TopicResult]:
    """Create the missing topics; report every topic, and existing ones that differ."""
    names = list(settings.topics.names().values())
    cluster = cluster_client(settings)
    try:
        before = await cluster.topics(names)
        wanted = Wanted.for_cluster(settings, cluster.brokers)
        missing = [name for name, state in before.items() if state is None]
        failures = await _create(settings, wanted, missing, cluster.brokers) if missing else {}
        after = await _described(cluster, names, expected=len(names) - len(failures))
    finally:
        await cluster.close()
    results = []
    for name in names:
        state = after.get(name)
        if name in failures or state is None:
            results.append(TopicResult(name, "failed", failures.get(name, "not found")))
            continue
        notes = [n for n in (durability_problem(state), availability_warning(state)) if n]
        if name in missing:
            results.append(TopicResult(name, "created", _strip_names(name, notes)))
            continue
        differences = wanted.differences(state)
        status = "differs" if differences else "exists"
        results.append(TopicResult(name, status, _strip_names(name, differences + notes)))
    return results


async def _create(
    settings: Settings, wanted: Wanted, names: list[str], brokers: int
) -> dict[str, str]:
    """Create `names`; the ones that failed, with why."""
    why = wanted.impossible(brokers)
    if why:
        return dict.fromkeys(names, why)
    # aiokafka only accepts replication_factor=-1 (the broker's default) together with an
    # explicit, here empty, replica assignment.
    assignments: dict[int, list[int]] | None = {} if wanted.replication_factor == -1 else None
    new = [
        NewTopic(
            name,
            num_partitions=wanted.partitions,
            replication_factor=wanted.replication_factor,
            replica_assignments=assignments,
            topic_configs=wanted.configs(),
        )
        for name in names
    ]
    admin = AIOKafkaAdminClient(**connection_options(settings.kafka))
    await admin.start()
    try:
        response = await admin.create_topics(new)
    finally:
        await admin.close()
    failed = {}
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        error = for_code(code)
        if code != 0 and error is not TopicAlreadyExistsError:
            message = topic_error[2] if len(topic_error) > 2 else None
            failed[name] = message or error.__name__
    return failed


async def _described(
    cluster: ClusterClient, names: list[str], *, expected: int
) -> dict[str, TopicState | None]:
    """The topics with their settings, once `expected` of them show: a broker answering
    right after a creation may not know the new topics yet."""
    for _ in range(_DESCRIBE_ATTEMPTS):
        states = await cluster.topics(names, (MIN_INSYNC, MAX_MESSAGE_BYTES))
        if sum(state is not None for state in states.values()) >= expected:
            break
        await asyncio.sleep(_DESCRIBE_PAUSE_S)
    return states


def _strip_names(name: str, notes: list[str]) -> str:
    return "; ".join(note.removeprefix(f"{name}: ") for note in notes)


# ----------------------------------------------------------------------- the running relay


@dataclass(frozen=True, slots=True)
class TopicCheck:
    """What one look at the cluster found."""

    unreachable: str | None = None  # no broker answered: why
    problem: str | None = None  # a reason to refuse readiness: topics missing or not durable


class TopicWatch:
    """Asks the cluster, on connections of its own, whether the topics exist and how durable
    they are; keeps the topic metrics up to date and logs every change of their settings."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._names = settings.topics.names()
        self._cluster = cluster_client(settings)
        self._warned: frozenset[str] = frozenset()
        # The last answer about each topic: one that a broker could not answer this time (an
        # election, a settings read refused) is judged by what was known, so readiness never
        # flaps with a passing error.
        self._known: dict[str, TopicState | None] = {}
        self.broker_info: dict[str, Any] = {}

    async def close(self) -> None:
        await self._cluster.close()

    async def check(self) -> TopicCheck:
        try:
            answer = await self._cluster.topics(
                self._names.values(), (MIN_INSYNC, MAX_MESSAGE_BYTES)
            )
            if not self.broker_info:
                with contextlib.suppress(ClusterUnreachable):
                    self.broker_info = await self._cluster.produce_versions()
        except ClusterUnreachable as exc:
            return TopicCheck(unreachable=f"kafka unreachable: {exc}")
        states = {name: self._remember(name, answer) for name in self._names.values()}
        self._record(states)
        present = [state for state in states.values() if state is not None]
        problems = [p for p in map(durability_problem, present) if p]
        self._warn(problems + [w for w in map(availability_warning, present) if w])
        missing = sorted(name for name, state in states.items() if state is None)
        if missing:
            return TopicCheck(problem=f"topics missing: {', '.join(missing)}")
        if problems and self._settings.kafka.require_durable_topics:
            return TopicCheck(problem=f"topics not durable: {'; '.join(problems)}")
        return TopicCheck()

    def _remember(self, name: str, answer: dict[str, TopicState | None]) -> TopicState | None:
        known = self._known.get(name)
        if name not in answer:
            return known
        state = answer[name]
        if state is not None and known is not None:
            # Settings this read could not get: keep the ones read before.
            state = replace(state, configs={**known.configs, **state.configs})
        self._known[name] = state
        return state

    def _record(self, states: dict[str, TopicState | None]) -> None:
        for event_type, name in self._names.items():
            state = states.get(name)
            replication = state.replication_factor if state else 0
            min_insync = (state.config_int(MIN_INSYNC) if state else None) or 0
            self._metrics.topic_replication_factor[event_type].set(replication)
            self._metrics.topic_min_insync_replicas[event_type].set(min_insync)

    def _warn(self, notes: list[str]) -> None:
        """Log each durability or availability problem when it appears, not every check."""
        current = frozenset(notes)
        for note in sorted(current - self._warned):
            log.warning("kafka topic settings put webhooks at risk", extra={"problem": note})
        if self._warned and not current:
            log.info("kafka topic settings are durable again")
        self._warned = current
