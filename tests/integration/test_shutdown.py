"""SIGTERM under load, with a real process: every request gets 200 or 503 (no reset while
draining), every 200 is in Kafka, and the process exits 0 within the configured bound."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from devsupport import samples
from devsupport.local_kafka import LocalKafka
from devsupport.relay_process import RelayProcess
from devsupport.topics import consume
from tests.relays import TOKEN, SettingsFactory, run_cli, settings_env

SHUTDOWN_TIMEOUT = 5.0
WORKERS = 8


@dataclass
class StreamResult:
    accepted: list[bytes] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    refused: int = 0  # new connections refused once the listener closed: expected
    broken: list[str] = field(default_factory=list)  # resets, truncated answers: never


async def steady_stream(url: str, stop: asyncio.Event, result: StreamResult) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    counter = iter(range(1_000_000))

    async def worker(http: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            body = samples.body(
                samples.envelope(samples.status_change(recipient=f"r{next(counter)}"))
            )
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    result.statuses[response.status] += 1
                    if response.status == 200:
                        result.accepted.append(body)
                    else:
                        assert response.status == 503, response.status
                        assert response.headers["Retry-After"]
            except aiohttp.ClientConnectorError:
                result.refused += 1
                await asyncio.sleep(0.05)
            except (aiohttp.ClientError, ConnectionError) as exc:
                result.broken.append(repr(exc))
                await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=WORKERS)
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(WORKERS)))


async def run_sigterm_under_load(
    relay: RelayProcess, *, before_sigterm: float, on_load: object = None
) -> tuple[StreamResult, float, int]:
    stop = asyncio.Event()
    result = StreamResult()
    stream = asyncio.create_task(steady_stream(relay.url, stop, result))
    await asyncio.sleep(before_sigterm)
    if callable(on_load):
        await on_load()
    sent_at = time.monotonic()
    relay.terminate()
    code = await asyncio.to_thread(relay.wait, SHUTDOWN_TIMEOUT + 10)
    exited_after = time.monotonic() - sent_at
    await asyncio.sleep(0.3)  # workers see the closed listener
    stop.set()
    await stream
    return result, exited_after, code


def assert_clean_exit(
    relay: RelayProcess, result: StreamResult, exited_after: float, code: int
) -> None:
    """Exit 0 within the bound, and every request answered 200 or 503, none reset."""
    assert code == 0, relay.log()
    assert exited_after < SHUTDOWN_TIMEOUT + 1
    assert result.broken == [], result.broken
    assert set(result.statuses) <= {200, 503}


async def assert_every_200_stored(bootstrap: str, topic: str, result: StreamResult) -> None:
    records = await consume(bootstrap, topic, expect=len(result.accepted))
    stored = {r.value for r in records}
    assert all(body in stored for body in result.accepted)


def relay_env(settings_env_: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **settings_env_,
        "RELAY_SHUTDOWN__TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT),
        "RELAY_KAFKA__READINESS_INTERVAL_SECONDS": "0.5",
        **extra,
    }


async def test_sigterm_under_load_drains_cleanly(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    env = relay_env(settings_env(settings))
    assert run_cli("topics", "create", env=env).returncode == 0
    relay = RelayProcess(env, tmp_path / "relay.log").start()
    try:
        result, exited_after, code = await run_sigterm_under_load(relay, before_sigterm=1.5)
    finally:
        relay.kill()
    assert_clean_exit(relay, result, exited_after, code)
    assert result.statuses[200] > 50
    await assert_every_200_stored(settings.kafka.bootstrap_servers, settings.topics.status, result)


async def test_sigterm_with_the_broker_down_still_exits_in_bound(
    make_settings: SettingsFactory, private_kafka: LocalKafka, tmp_path: Path
) -> None:
    await asyncio.to_thread(private_kafka.start)
    settings = make_settings(kafka={"bootstrap_servers": private_kafka.bootstrap_servers})
    # A request timeout above the shutdown bound: aiokafka expires a batch whose partition has
    # no leader after request_timeout_ms, which would let the flush end on its own; here it must
    # be cut short.
    env = relay_env(
        settings_env(settings),
        RELAY_KAFKA__PUBLISH_TIMEOUT_SECONDS="1.5",
        RELAY_KAFKA__REQUEST_TIMEOUT_MS="30000",
    )
    assert run_cli("topics", "create", env=env).returncode == 0
    relay = RelayProcess(env, tmp_path / "relay.log").start()

    async def broker_goes_away() -> None:
        await asyncio.to_thread(private_kafka.stop)
        await asyncio.sleep(1.0)  # requests now pile up waiting for acks that never come

    try:
        result, exited_after, code = await run_sigterm_under_load(
            relay, before_sigterm=1.0, on_load=broker_goes_away
        )
    finally:
        relay.kill()
    assert_clean_exit(relay, result, exited_after, code)
    assert result.statuses[503] > 0
    assert '"producer_flushed":false' in relay.log()

    # Whatever got a 200 (before the outage) is in Kafka once it is back.
    await asyncio.to_thread(private_kafka.start)
    await assert_every_200_stored(private_kafka.bootstrap_servers, settings.topics.status, result)
