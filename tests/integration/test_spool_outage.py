"""A whole-Kafka outage of about 30 s under steady load, with the spool on: real relay processes,
a private broker stopped and started again.

Two relays ride out the same outage, each with a load of users that send their requests one
after another: one relay untouched, the other killed with SIGKILL in the middle of the outage
and started again on the same spool directory (still without Kafka). Afterwards every request
either got a 200 (the killed one's in-flight requests got no answer and were sent again), every
acknowledged request is in Kafka, and each user's requests appear in the order they were sent.
One outage for both keeps the suite's time down: about 70 s.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from devsupport import topics as kafka_topics
from devsupport.local_kafka import LocalKafka
from devsupport.relay_process import RelayProcess
from tests.relays import run_cli
from tests.spool_support import (
    KeyedLoad,
    order_problems,
    spool_env,
    start_serving,
    topic_names,
    until_drained,
)

OUTAGE_SECONDS = 30.0
KEYS = 10
PERIOD = 0.2  # each user's next request 0.2 s after the previous 200: 50 requests/s a relay


def counted(relay: RelayProcess, name: str, **labels: str) -> float:
    return relay.metric(name, **labels)


async def ride_out_an_outage(
    kafka: LocalKafka, loads: list[KeyedLoad], steady: RelayProcess, killed: RelayProcess
) -> None:
    """Load, then the outage with `killed` killed and restarted halfway, then Kafka back and
    both spools drained, then a few seconds of load on the direct path."""
    running = [asyncio.create_task(load.run()) for load in loads]
    try:
        await asyncio.sleep(3)
        outage_started = asyncio.get_running_loop().time()
        await asyncio.to_thread(kafka.stop)
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        killed.kill()  # SIGKILL, in the middle of the outage
        await asyncio.to_thread(start_serving, killed)  # the same directory, Kafka still away
        elapsed = asyncio.get_running_loop().time() - outage_started
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - elapsed))
        for relay in (steady, killed):
            assert relay.metric("whatsapp_relay_spool_requests") > 0, relay.log_tail()
        await asyncio.to_thread(kafka.start)
        for relay in (steady, killed):
            await until_drained(relay, within=90)
        await asyncio.sleep(3)  # back on the direct path, still under load
    finally:
        for load in loads:
            load.stop.set()
        await asyncio.gather(*running)


@pytest.mark.timeout(300)
async def test_a_whole_kafka_outage_is_ridden_out_by_the_spool(
    private_kafka: LocalKafka, tmp_path: Path
) -> None:
    bootstrap = private_kafka.start()
    names = topic_names(f"outage.{uuid.uuid4().hex[:8]}")
    steady_env = spool_env(bootstrap, names, tmp_path / "steady")
    killed_env = spool_env(bootstrap, names, tmp_path / "killed")
    created = run_cli("topics", "create", env=steady_env)
    assert created.returncode == 0, created.stdout + created.stderr
    steady = RelayProcess(steady_env, tmp_path / "steady.log")
    killed = RelayProcess(killed_env, tmp_path / "killed.log")
    try:
        steady.start(within=60)
        killed.start(within=60)
        loads = [KeyedLoad(steady.url, KEYS, PERIOD), KeyedLoad(killed.url, KEYS, PERIOD)]
        await ride_out_an_outage(private_kafka, loads, steady, killed)
        spooled = {
            name: sum(counted(r, "whatsapp_relay_spool_spooled_total", reason=reason)
                      for reason in ("timeout", "unavailable", "kafka_error", "queued"))
            for name, r in (("steady", steady), ("killed", killed))
        }  # fmt: skip
        drained = counted(steady, "whatsapp_relay_spool_drained_total")
    finally:
        for relay in (steady, killed):
            relay.stop()
    print(f"spooled {spooled}, drained by the steady relay {drained}")

    records = await kafka_topics.read_all(bootstrap, names.values())
    await kafka_topics.delete(bootstrap, names.values())
    steady_load, killed_load = loads
    # The untouched relay: not one answer but 200, all through the outage.
    assert {a.status for a in steady_load.answers} == {200}, [
        a for a in steady_load.answers if a.status != 200
    ][:5]
    assert spooled["steady"] > OUTAGE_SECONDS * KEYS / PERIOD / 2
    assert drained == spooled["steady"]
    # The killed one: no refusal either; only no answer while it was down.
    assert {a.status for a in killed_load.answers} <= {0, 200}
    assert spooled["killed"] > 0
    for load in loads:
        assert len(load.accepted()) > (OUTAGE_SECONDS + 3) * KEYS / PERIOD / 2
        assert order_problems(load, records) == []
