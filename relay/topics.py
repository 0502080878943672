"""`whatsapp-relay topics create`: the five topics, sized for what the ingress accepts."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from relay.config import Settings
from relay.kafka_options import connection_options


@dataclass(frozen=True, slots=True)
class TopicResult:
    name: str
    status: str  # "created" | "exists" | "failed"
    detail: str = ""


def topic_configs(settings: Settings) -> dict[str, str]:
    # A topic whose max.message.bytes is below the body limit would refuse records the
    # ingress accepted: every such request would end in a 503 and retry for days.
    max_bytes = settings.topics.max_message_bytes or settings.record_size_limit
    return {"max.message.bytes": str(max_bytes)}


def new_topics(settings: Settings) -> list[NewTopic]:
    topics = settings.topics
    configs = topic_configs(settings)
    # aiokafka only accepts replication_factor=-1 (the broker's default) together with an
    # explicit, here empty, replica assignment.
    assignments: dict[int, list[int]] | None = {} if topics.replication_factor == -1 else None
    return [
        NewTopic(
            name,
            num_partitions=topics.partitions,
            replication_factor=topics.replication_factor,
            replica_assignments=assignments,
            topic_configs=configs,
        )
        for name in topics.names().values()
    ]


async def create_topics(settings: Settings) -> list[TopicResult]:
    admin = AIOKafkaAdminClient(**connection_options(settings.kafka))
    await admin.start()
    try:
        response = await admin.create_topics(new_topics(settings))
    finally:
        await admin.close()
    results = []
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        message = topic_error[2] if len(topic_error) > 2 else None
        if code == 0:
            results.append(TopicResult(name, "created"))
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            results.append(TopicResult(name, "exists"))
        else:
            results.append(TopicResult(name, "failed", message or error.__name__))
    return results
