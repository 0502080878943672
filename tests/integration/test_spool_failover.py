"""A broker crash in the private 3-node cluster with the spool on: a relay process under steady
load while the busiest partition leader is killed and restarted (the harness of
tests/integration/test_failover.py). Without the spool this costs seconds of 503s (README,
"Broker failures"); with it, requests Kafka does not acknowledge within `spool.after_seconds`
are spooled and answered 200. Afterwards every acknowledged webhook must be in Kafka and every
answer a 200 or a 503 with Retry-After. The 503 window is printed (`pytest -s`): the goal is
none. About 40 s.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devsupport.failover import TOKEN, Traffic, inject, read_back
from devsupport.local_kafka import LocalKafkaCluster
from devsupport.relay_process import RelayProcess
from tests.integration.test_failover import relay_env
from tests.relays import run_cli
from tests.spool_support import topic_names, until_drained

RATE = 100.0


@pytest.mark.timeout(300)
async def test_a_broker_crash_is_ridden_out_by_the_spool(
    kafka_cluster: LocalKafkaCluster, tmp_path: Path
) -> None:
    cluster = kafka_cluster
    names = topic_names(f"spoolfailover.{uuid.uuid4().hex[:8]}")
    env = {
        **relay_env(cluster, names),
        "RELAY_SPOOL__ENABLED": "true",
        "RELAY_SPOOL__DIRECTORY": str(tmp_path / "spool"),
    }
    assert env["RELAY_AUTH__BEARER_TOKENS"] == f'["{TOKEN}"]'
    created = run_cli("topics", "create", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    relay = RelayProcess(env, tmp_path / "relay.log").start(within=60)
    try:
        traffic = Traffic.start(relay.url, relay.admin_url, RATE)
        try:
            fault = await inject(cluster, traffic, list(names.values()), "crash")
            await until_drained(relay, within=60)
        finally:
            await traffic.finish()
        spooled = relay.metric("whatsapp_relay_spool_spooled_total", reason="timeout")
        queued = relay.metric("whatsapp_relay_spool_spooled_total", reason="queued")
    finally:
        relay.terminate()
        exit_code = relay.wait(30)
    assert exit_code == 0, relay.log()[-3000:]

    answers = traffic.load.answers
    window = fault.describe(answers, until=max(a.done for a in answers))
    print({**window, "spooled_after_timeout": spooled, "spooled_behind": queued})
    assert {a.status for a in answers} <= {200, 503}
    assert [a.error for a in answers if a.error] == []
    assert spooled > 0, "the crash was not felt: nothing waited past spool.after_seconds"
    stored = await read_back(cluster.bootstrap_servers, names.values())
    accepted = [a.body for a in answers if a.status == 200]
    assert [body for body in accepted if body not in stored] == []
