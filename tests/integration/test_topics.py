"""Durability against a real broker: what `topics create` makes and reports, and what the
running relay does about topics whose 200s could rest on a single replica.

The session broker is a single node, so every topic on it is exactly that; the durable case
(3 replicas, min.insync.replicas 2) runs against a 3-node cluster in test_failover.py.
"""

from __future__ import annotations

import logging

import pytest

from devsupport import topics
from relay.config import EventType
from relay.readiness import Readiness
from tests.relays import Relays, RelayUnderTest, SettingsFactory, run_cli, settings_env


async def test_topics_create_says_a_single_broker_cannot_be_durable_and_reports_differences(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    env = settings_env(settings)
    # Asked for more replicas than the cluster has: nothing is created, the reason is given.
    refused = run_cli("topics", "create", env=env | {"RELAY_TOPICS__REPLICATION_FACTOR": "3"})
    assert refused.returncode == 1
    assert refused.stdout.count(
        ": failed - replication factor 3 needs as many brokers; the cluster has 1"
    ) == len(EventType), refused.stdout

    # Someone made the status topic by hand, with other settings.
    await topics.create(
        settings.kafka.bootstrap_servers, [settings.topics.status], partitions=1, replication=1
    )

    result = run_cli("topics", "create", env=env)
    assert result.returncode == 3, result.stdout + result.stderr  # existing topics differ
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines[settings.topics.status].startswith("differs - 1 partitions (configured 3)")
    assert "max.message.bytes" in lines[settings.topics.status]
    created = lines[settings.topics.message]
    assert created.startswith("created - a 200 can rest on one replica")
    assert "(replication factor 1, min.insync.replicas 1)" in created


async def test_a_relay_that_requires_durable_topics_is_not_ready_on_a_single_replica(
    relays: Relays,
) -> None:
    relay = await relays(kafka={"require_durable_topics": True}, ready=False)
    assert relay.service is not None
    readiness: Readiness = relay.service.readiness
    reason = readiness.reason
    assert reason is not None
    assert reason.startswith("topics not durable: ")
    assert f"{relay.settings.topics.status}: a 200 can rest on one replica" in reason
    async with relay.http.get(f"{relay.admin_url}/readyz") as answer:
        assert answer.status == 503
    for event_type in EventType:
        assert relay.metric("whatsapp_relay_topic_replication_factor", event_type=event_type) == 1
        assert relay.metric("whatsapp_relay_topic_min_insync_replicas", event_type=event_type) == 1
    assert relay.metric("whatsapp_relay_ready") == 0


async def test_without_the_requirement_it_serves_and_warns_once_per_topic(
    relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.topics"):
        relay: RelayUnderTest = await relays()
        assert relay.service is not None
        readiness: Readiness = relay.service.readiness
        assert readiness.reason is None
        await relay.service.publisher._watch.check()  # a second look warns no more
    warnings = [r for r in caplog.records if r.getMessage().startswith("kafka topic settings")]
    problems = sorted(getattr(record, "problem", "") for record in warnings)
    assert len(problems) == len(EventType)
    assert all("a 200 can rest on one replica" in problem for problem in problems)
