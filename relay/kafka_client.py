"""aiokafka, behind the two things the relay needs from it beyond its public API.

This is the only module that knows aiokafka's internals:

- **Producer liveness.** aiokafka has no "can this producer still deliver?" call; its sender
  task ending for good (a fatal error such as an out-of-order sequence) is the signal.
  `Producer` registers a callback on that task once, at start, which flips `alive`: the hot
  path reads a plain attribute.
- **Errors an idempotent producer does not survive.** Once the broker answers a batch with an
  out-of-order sequence number (or an unknown or fenced producer), every later batch to that
  partition fails the same way, yet aiokafka fails only the batch and keeps its sender running:
  its accumulator fails a batch whose partition has had no leader for `request_timeout_ms`
  after numbering it, so the numbers no longer match the broker's. `Producer.failed()` turns
  such a producer dead, for the supervisor to rebuild.
- **Cluster facts on connections of their own.** Readiness and the durability check ask the
  brokers for the topics' metadata and settings through `ClusterClient`, never through the
  producer's connections: a broker processes one request per connection at a time, so a
  metadata request sent behind produce requests that wait for a dead follower waits as long as
  they do (seconds), although the cluster answers in milliseconds.

`self_check()` verifies at start-up that the installed aiokafka still has what this module
relies on, so a release that renamed something fails the start with a clear message instead
of turning every webhook into a 500. The project pins aiokafka below its next minor release.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiokafka
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
    for_code,
)

from relay.startup import StartupError

try:  # the internals; self_check() reports a failed import instead of a traceback
    from aiokafka.client import AIOKafkaClient
    from aiokafka.producer.sender import Sender
    from aiokafka.protocol.admin import ApiVersionRequest, DescribeConfigsRequest
    from aiokafka.protocol.metadata import MetadataRequest
except ImportError as exc:  # pragma: no cover - only with an aiokafka this relay does not support
    _IMPORT_ERROR: str | None = str(exc)
else:
    _IMPORT_ERROR = None

log = logging.getLogger("relay.kafka")

SUPPORTED_AIOKAFKA = ">=0.14,<0.15"
_TOPIC_RESOURCE = 2  # DescribeConfigs resource type of a topic
_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
_PRODUCE_API_KEY = 0


class KafkaClientError(StartupError):
    """The installed aiokafka is not what this module was written against: the start fails
    with this message (exit 1), like the checks of `self_check()`."""


def self_check() -> list[str]:
    """What is missing from the installed aiokafka; empty when everything is in place."""
    if _IMPORT_ERROR is not None:
        return [f"cannot import: {_IMPORT_ERROR}"]
    problems = []
    # The producer keeps its sender as `_sender`; the sender exposes its task as `sender_task`.
    if "_sender" not in AIOKafkaProducer.__init__.__code__.co_names:
        problems.append("AIOKafkaProducer no longer keeps a `_sender`")
    if not isinstance(getattr(Sender, "sender_task", None), property):
        problems.append("Sender.sender_task is gone")
    for name in ("bootstrap", "send", "close"):
        if not callable(getattr(AIOKafkaClient, name, None)):
            problems.append(f"AIOKafkaClient.{name}() is gone")
    if "cluster" not in AIOKafkaClient.__init__.__code__.co_names:
        problems.append("AIOKafkaClient no longer keeps its `cluster` metadata")
    if "allow_auto_topic_creation" not in inspect.signature(MetadataRequest).parameters:
        problems.append("MetadataRequest cannot turn off topic auto-creation")
    if "resources" not in inspect.signature(DescribeConfigsRequest).parameters:
        problems.append("DescribeConfigsRequest(resources=...) is gone")
    return problems


def describe_problems(problems: list[str]) -> str:
    return (
        f"aiokafka {aiokafka.__version__} lacks what the relay relies on ("
        + "; ".join(problems)
        + f"): install aiokafka{SUPPORTED_AIOKAFKA}"
    )


# Delivery errors after which the producer's sequence numbers no longer match the broker's.
_FATAL_TO_PRODUCER = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    UnknownProducerId,
    ProducerFenced,
)


class Producer:
    """An `AIOKafkaProducer` and whether it can still deliver.

    `send` is the producer's own `send`, bound once. `alive` turns True once started and False
    for good when the sender task ends (or the producer is stopped).
    """

    __slots__ = ("alive", "producer", "send")

    def __init__(self, producer: AIOKafkaProducer) -> None:
        if not isinstance(getattr(producer, "_sender", None), Sender):
            raise KafkaClientError(describe_problems(["the producer has no `_sender`"]))
        self.producer = producer
        self.send = producer.send
        self.alive = False

    async def start(self) -> None:
        await self.producer.start()
        task = self.producer._sender.sender_task
        if not isinstance(task, asyncio.Future):
            await self.stop(1.0)  # started: its connections and tasks must not outlive it
            raise KafkaClientError(describe_problems(["the sender has no task after start()"]))
        self.alive = not task.done()
        task.add_done_callback(self._sender_ended)

    def _sender_ended(self, _task: asyncio.Future[Any]) -> None:
        self.alive = False

    def failed(self, error: BaseException) -> None:
        """A delivery failed with `error`: if it is one an idempotent producer does not
        survive, this one counts as dead from now on."""
        if self.alive and isinstance(error, _FATAL_TO_PRODUCER):
            self.alive = False
            log.error("kafka producer can no longer deliver", extra={"error": type(error).__name__})

    async def stop(self, within_seconds: float) -> bool:
        """Flush and close within the bound; False if records were left unflushed.
        `stop()` flushes first, and with the broker away an idempotent flush never ends."""
        self.alive = False
        try:
            async with asyncio.timeout(within_seconds):
                await self.producer.stop()
            return True
        except TimeoutError:
            with contextlib.suppress(TimeoutError, KafkaError, OSError):
                async with asyncio.timeout(1.0):
                    await self.producer.client.close()  # the connections, without the flush
            return False
        except (KafkaError, OSError):
            return True


@dataclass(frozen=True, slots=True)
class TopicState:
    """One topic as the cluster describes it."""

    name: str
    partitions: int
    replication_factor: int  # the fewest replicas any of its partitions has
    configs: dict[str, str] = field(default_factory=dict)  # those asked for and readable

    def config_int(self, key: str) -> int | None:
        value = self.configs.get(key)
        return int(value) if value is not None and value.lstrip("-").isdigit() else None


class ClusterUnreachable(Exception):
    """No broker answered."""


class ClusterClient:
    """Metadata and topic settings over connections of its own.

    Each request goes to one broker at a time: the one that answered last, then the others.
    A broker that fails or does not answer within `request_timeout_ms` is passed over; only
    when none answers is the cluster unreachable. (The list of brokers is aiokafka's: renewed
    every `metadata_max_age_ms` and whenever a connection breaks or times out.)
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._client: AIOKafkaClient | None = None
        self._last_good: int | None = None

    @property
    def brokers(self) -> int:
        """Brokers in the latest metadata (0 before the first answer)."""
        return len(self._client.cluster.brokers()) if self._client is not None else 0

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await client.close()

    async def topics(
        self, names: Iterable[str], configs: Iterable[str] = ()
    ) -> dict[str, TopicState | None]:
        """`name -> TopicState` for the topics that exist, `name -> None` for those that do
        not; a topic the broker answered with another error (say, in the middle of a leader
        election) is left out. `configs` are read too, as far as the broker lets this client
        (ACLs may not): a setting that could not be read is absent from `TopicState.configs`.
        """
        # Never auto-create: asking about a missing topic must not make one with the broker's
        # defaults (replication factor 1 on stock Kafka).
        request = MetadataRequest(list(names), allow_auto_topic_creation=False)
        metadata = await self._request(request)
        shapes: dict[str, tuple[int, int]] = {}
        missing: list[str] = []
        for topic in metadata.to_object()["topics"]:
            if topic["partitions"]:
                replicas = min(len(p["replicas"]) for p in topic["partitions"])
                shapes[topic["topic"]] = (len(topic["partitions"]), replicas)
            elif topic["error_code"] == _UNKNOWN_TOPIC:
                missing.append(topic["topic"])
        wanted = list(configs)
        settings = await self._configs(list(shapes), wanted) if wanted and shapes else {}
        found: dict[str, TopicState | None] = dict.fromkeys(missing)
        for name, shape in shapes.items():
            found[name] = TopicState(name, *shape, settings.get(name, {}))
        return found

    async def produce_versions(self) -> dict[str, Any]:
        """What a broker offers: its Produce API version range and how many APIs it has."""
        response = await self._request(ApiVersionRequest())
        versions = {key: (low, high) for key, low, high in response.api_versions}
        info: dict[str, Any] = {"brokers": self.brokers, "broker_api_keys": len(versions)}
        if _PRODUCE_API_KEY in versions:
            info["produce_api_versions"] = list(versions[_PRODUCE_API_KEY])
        return info

    async def _configs(self, names: list[str], keys: list[str]) -> dict[str, dict[str, str]]:
        resources = [(_TOPIC_RESOURCE, name, keys) for name in names]
        response = await self._request(DescribeConfigsRequest(resources))
        result: dict[str, dict[str, str]] = {}
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:  # e.g. no DescribeConfigs permission: unknown
                error = for_code(resource["error_code"]).__name__
                log.debug("topic settings not readable", extra={"error": error})
                continue
            result[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_value"] is not None
            }
        return result

    async def _request(self, request: Any) -> Any:
        client = await self._bootstrapped()
        nodes = [b.nodeId for b in client.cluster.brokers()]
        if self._last_good in nodes:
            nodes.remove(self._last_good)
            nodes.insert(0, self._last_good)
        error: BaseException | None = None
        for node in nodes:
            try:
                response = await client.send(node, request)
            except (KafkaError, OSError, TimeoutError) as exc:
                error = exc
                continue
            self._last_good = node
            return response
        # Start over from the bootstrap servers next time: the brokers may have new addresses.
        await self.close()
        raise ClusterUnreachable(_describe(error) if error else "no broker known")

    async def _bootstrapped(self) -> AIOKafkaClient:
        if self._client is None:
            client = AIOKafkaClient(**self._options)
            try:
                await client.bootstrap()
            except (KafkaError, OSError, TimeoutError) as exc:
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await client.close()
                raise ClusterUnreachable(_describe(exc)) from exc
            self._client = client
        return self._client


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
