"""What `topics create` makes for a cluster, and when a 200 could rest on a single replica."""

import pytest

from relay.config import parse
from relay.kafka_client import TopicState
from relay.topics import Wanted, availability_warning, durability_problem

TOKENS = {"RELAY_AUTH__BEARER_TOKENS": '["t1"]'}


def wanted(brokers: int, **topics: str) -> Wanted:
    env = {**TOKENS, **{f"RELAY_TOPICS__{key.upper()}": value for key, value in topics.items()}}
    return Wanted.for_cluster(parse(None, env), brokers)


@pytest.mark.parametrize(
    ("brokers", "replication", "min_insync"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 2), (6, 3, 2)],
)
def test_default_replication_is_what_the_cluster_holds_up_to_three(
    brokers: int, replication: int, min_insync: int
) -> None:
    made = wanted(brokers)
    assert (made.replication_factor, made.min_insync_replicas) == (replication, min_insync)
    assert made.configs()["min.insync.replicas"] == str(min_insync)
    assert made.impossible(brokers) is None


def test_configured_replication_and_min_insync_win() -> None:
    made = wanted(5, replication_factor="5", min_insync_replicas="3")
    assert (made.replication_factor, made.min_insync_replicas) == (5, 3)
    assert wanted(5, replication_factor="4").min_insync_replicas == 3


def test_broker_default_replication_leaves_min_insync_to_the_broker_too() -> None:
    made = wanted(3, replication_factor="-1")
    assert made.replication_factor == -1
    assert made.min_insync_replicas is None
    assert "min.insync.replicas" not in made.configs()


def test_settings_the_cluster_cannot_hold_are_refused_before_creating() -> None:
    reason = wanted(1, replication_factor="3").impossible(1)
    assert reason == "replication factor 3 needs as many brokers; the cluster has 1"
    reason = wanted(1, min_insync_replicas="2").impossible(1)
    assert reason is not None
    assert "every write would be refused" in reason


def state(replication: int, min_insync: str | None, partitions: int = 3) -> TopicState:
    configs = {} if min_insync is None else {"min.insync.replicas": min_insync}
    return TopicState("whatsapp.status", partitions, replication, configs)


@pytest.mark.parametrize(
    ("replication", "min_insync", "durable"),
    [(3, "2", True), (2, "2", True), (3, "1", False), (1, "1", False), (1, "2", False)],
)
def test_durable_only_when_an_ack_needs_two_copies(
    replication: int, min_insync: str, durable: bool
) -> None:
    problem = durability_problem(state(replication, min_insync))
    assert (problem is None) == durable
    if problem:
        assert problem.startswith("whatsapp.status: a 200 can rest on one replica")


def test_unknown_min_insync_is_not_taken_for_durable() -> None:
    problem = durability_problem(state(3, None))
    assert problem is not None
    assert "unknown" in problem


def test_durable_settings_that_stop_writes_are_warned_about() -> None:
    assert availability_warning(state(3, "2")) is None
    equal = availability_warning(state(2, "2"))
    assert equal is not None
    assert "any one replica is away" in equal
    above = availability_warning(state(2, "3"))
    assert above is not None
    assert "every write is refused" in above


def test_existing_topics_that_differ_are_named_with_what_differs() -> None:
    made = wanted(3)
    same = TopicState(
        "t", 3, 3, {"min.insync.replicas": "2", "max.message.bytes": str(made.max_message_bytes)}
    )
    assert made.differences(same) == []
    other = TopicState("t", 1, 1, {"min.insync.replicas": "1"})
    assert made.differences(other) == [
        "1 partitions (configured 3)",
        "replication factor 1 (configured 3)",
        "min.insync.replicas 1 (configured 2)",
    ]
