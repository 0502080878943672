"""Kafka as it really fails: a real relay process under steady load against a private 3-node
KRaft cluster while the busiest partition leader is killed and restarted, then the active
controller, then a broker is paused (SIGSTOP) and resumed. Afterwards every topic is read back
and reconciled against the answers: no acknowledged record is missing, no answer was a 500 or a
broken connection, the relay never restarted (not even its producer), and /readyz answered 200
throughout (a quorum of brokers was always up).

One cluster start (~15-40 s on a busy 2-core machine) and three faults of ~30 s each: about two
to three minutes. The 503 windows are printed (`pytest -s`), never asserted: timings are
measured by bench/failover.py (README, "Broker failures").
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from devsupport.failover import FAULTS, TOKEN, Fault, Traffic, inject, read_back
from devsupport.local_kafka import LocalKafkaCluster
from devsupport.relay_process import RelayProcess
from relay.config import EventType
from tests.relays import run_cli

RATE = 100.0  # webhooks per second
HANG_SECONDS = 12.0  # longer than broker.session.timeout.ms (9 s): the node gets fenced


def relay_env(cluster: LocalKafkaCluster, topics: dict[str, str]) -> dict[str, str]:
    return {
        "RELAY_KAFKA__BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
        "RELAY_AUTH__BEARER_TOKENS": json.dumps([TOKEN]),
        **{f"RELAY_TOPICS__{t.upper()}": name for t, name in topics.items()},
        # As the chart's production values: a pod that cannot prove durability is not ready.
        "RELAY_KAFKA__REQUIRE_DURABLE_TOPICS": "true",
        # Readiness asked ten times a second, so a flap would be seen.
        "RELAY_KAFKA__READINESS_INTERVAL_SECONDS": "0.1",
    }


async def scrape(relay: RelayProcess) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{relay.admin_url}/metrics") as response,
    ):
        text = await response.text()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("whatsapp_relay_")
    }


@pytest.mark.timeout(600)
async def test_crashes_and_hangs_lose_nothing_and_never_flip_readiness(
    kafka_cluster: LocalKafkaCluster, tmp_path: Path
) -> None:
    cluster = kafka_cluster
    suffix = uuid.uuid4().hex[:8]
    topics = {t.value: f"failover.{suffix}.{t.value}" for t in EventType}
    names = list(topics.values())
    env = relay_env(cluster, topics)

    # The relay's own `topics create`: on 3 brokers, 3 replicas and min.insync.replicas 2.
    created = run_cli("topics", "create", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    assert created.stdout.count(": created") == len(names), created.stdout

    relay = RelayProcess(env, tmp_path / "relay.log").start(within=60)
    try:
        metrics = await scrape(relay)
        for event_type in topics:
            labels = f'{{event_type="{event_type}"}}'
            assert metrics[f"whatsapp_relay_topic_replication_factor{labels}"] == 3
            assert metrics[f"whatsapp_relay_topic_min_insync_replicas{labels}"] == 2

        traffic = Traffic.start(relay.url, relay.admin_url, RATE)
        faults: list[Fault] = []
        try:
            for kind in FAULTS:
                pids = {node: cluster.pid(node) for node in range(1, cluster.nodes + 1)}
                fault = await inject(cluster, traffic, names, kind, hang_seconds=HANG_SECONDS)
                faults.append(fault)
                # A crashed node is a new process now; a paused one is the same, resumed.
                restarted = cluster.pid(fault.node) != pids[fault.node]
                assert restarted == (kind != "hang"), (kind, pids, cluster.pid(fault.node))
        finally:
            await traffic.finish()

        assert relay.process is not None
        assert relay.process.poll() is None, "the relay process must not have restarted"
        metrics = await scrape(relay)
        assert metrics["whatsapp_relay_producer_restarts_total"] == 0
        assert metrics['whatsapp_relay_requests_total{outcome="accepted"}'] > 0
    finally:
        relay.terminate()
        exit_code = relay.wait(30)
    assert exit_code == 0, relay.log()[-3000:]

    answers = traffic.load.answers
    end = max(a.done for a in answers)
    for fault, following in zip(faults, [*faults[1:], None], strict=True):
        # The 503 window of each fault, for the record (`pytest -s`).
        print(fault.describe(answers, until=following.at if following else end))
        during = [a for a in answers if fault.at <= a.due < fault.recovered]
        # The fault was felt: acks=all waits until the dead node leaves the in-sync replicas.
        assert any(a.status == 503 or a.done - a.due > 1.0 for a in during), fault

    # Every answer was a 200 or a 503 with Retry-After: no 500, no reset, no timeout.
    assert {a.status for a in answers} <= {200, 503}
    assert [a.error for a in answers if a.error] == []
    # Readiness never left 200: a quorum of brokers was up all along.
    assert traffic.readiness.samples
    assert traffic.readiness.not_ready(0, end + 60) == []

    stored = await read_back(cluster.bootstrap_servers, names)
    accepted = [a.body for a in answers if a.status == 200]
    assert accepted
    assert [body for body in accepted if body not in stored] == []
