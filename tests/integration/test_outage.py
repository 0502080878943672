"""Kafka going away: every request gets a bounded 503, nothing hangs, readiness follows the
README's choice (ready once Kafka was reached; not before), and the relay heals by itself when
the broker returns. Uses a private broker this module can stop and restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from devsupport import samples
from devsupport.local_kafka import LocalKafka
from devsupport.topics import consume
from relay.topics import create_topics
from tests.relays import TOKEN, Relays, RelayUnderTest, SettingsFactory

PUBLISH_TIMEOUT = 1.5
# What a 503 may take beyond the publish timeout: scheduling and answer on a busy machine.
SLACK = 1.5


def fast_failing_kafka(kafka: LocalKafka) -> dict[str, Any]:
    """Kafka settings that notice an outage, and its end, within seconds."""
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        "publish_timeout_seconds": PUBLISH_TIMEOUT,
        "readiness_interval_seconds": 0.5,
        "request_timeout_ms": 3000,
        "restart_backoff_max_seconds": 1,
    }


@pytest.fixture
async def outage_relay(private_kafka: LocalKafka, relays: Relays) -> RelayUnderTest:
    private_kafka.start()  # idempotent: a previous test may have left it stopped
    return await relays(kafka=fast_failing_kafka(private_kafka))


async def post(
    http: aiohttp.ClientSession, relay: RelayUnderTest, body: bytes
) -> tuple[int, float]:
    started = time.monotonic()
    async with http.post(
        relay.url,
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    ) as response:
        await response.read()
        assert response.status != 503 or response.headers["Retry-After"]
        return response.status, time.monotonic() - started


async def readyz(http: aiohttp.ClientSession, relay: RelayUnderTest) -> tuple[int, dict[str, str]]:
    async with http.get(f"{relay.admin_url}/readyz") as response:
        return response.status, await response.json()


def status_body(index: int) -> bytes:
    return samples.body(samples.envelope(samples.status_change(recipient=f"r{index}")))


async def test_whole_cluster_outage_gives_bounded_503s_from_a_ready_relay_then_heals(
    outage_relay: RelayUnderTest, private_kafka: LocalKafka
) -> None:
    relay = outage_relay
    accepted: list[bytes] = []
    async with aiohttp.ClientSession() as http:
        body = status_body(0)
        assert (await post(http, relay, body))[0] == 200
        accepted.append(body)

        await asyncio.to_thread(private_kafka.stop)
        # A burst of concurrent requests while the broker is down: all 503, none hangs.
        results = await asyncio.gather(*(post(http, relay, status_body(i)) for i in range(1, 21)))
        assert {status for status, _ in results} == {503}
        assert max(elapsed for _, elapsed in results) < PUBLISH_TIMEOUT + SLACK

        # The relay stays ready (every replica would flip at once and the ingress would answer
        # instead), says why it refuses, and its Kafka gauge drops.
        async with asyncio.timeout(15):
            while relay.metric("whatsapp_relay_kafka_ready") != 0:
                await asyncio.sleep(0.2)
        status, answer = await readyz(http, relay)
        assert status == 200
        assert answer["status"] == "ready"
        assert answer["degraded"].startswith("kafka unreachable")

        await asyncio.to_thread(private_kafka.start)
        # Back without restarting the relay: requests succeed again within a bounded time.
        async with asyncio.timeout(60):
            while True:
                body = status_body(100)
                if (await post(http, relay, body))[0] == 200:
                    accepted.append(body)
                    break
                await asyncio.sleep(0.5)
        for i in range(101, 111):
            body = status_body(i)
            assert (await post(http, relay, body))[0] == 200
            accepted.append(body)
        async with asyncio.timeout(15):
            while relay.metric("whatsapp_relay_kafka_ready") != 1:
                await asyncio.sleep(0.2)
        assert await readyz(http, relay) == (200, {"status": "ready"})

    # Every 200 is in Kafka (503'd bodies may be there too: at least once, never less).
    records = await consume(
        private_kafka.bootstrap_servers, relay.settings.topics.status, expect=len(accepted)
    )
    stored = {r.value for r in records}
    assert all(body in stored for body in accepted)


async def test_relay_started_without_a_broker_serves_503_then_heals(
    private_kafka: LocalKafka, make_settings: SettingsFactory, relays: Relays
) -> None:
    private_kafka.start()
    settings = make_settings(kafka=fast_failing_kafka(private_kafka))
    await create_topics(settings)
    await asyncio.to_thread(private_kafka.stop)
    # It must neither fail nor block: it comes up not ready.
    relay = await relays.start(settings, create=False, ready=False)
    async with aiohttp.ClientSession() as http:
        status, reason = await readyz(http, relay)
        assert status == 503
        assert "kafka" in reason["reason"]
        status, elapsed = await post(http, relay, status_body(1))
        assert status == 503
        assert elapsed < 1.0  # no producer: refused at once, not after the timeout

        await asyncio.to_thread(private_kafka.start)
        await relay.wait_ready(within=60)
        body = status_body(2)
        assert (await post(http, relay, body))[0] == 200
    [record] = await consume(private_kafka.bootstrap_servers, settings.topics.status, expect=1)
    assert record.value == body


async def test_missing_topics_make_the_relay_not_ready(relays: Relays) -> None:
    relay = await relays.start(relays.settings(), create=False, ready=False)
    async with aiohttp.ClientSession() as http:
        status, reason = await readyz(http, relay)
    assert status == 503
    assert reason["reason"].startswith("topics missing: ")
    assert relay.settings.topics.status in reason["reason"]
