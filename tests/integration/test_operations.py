"""What an SRE watches: the admin listener, metrics that move, a producer that heals, logs."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from devsupport import samples
from devsupport.ports import LOOPBACK
from relay import logs
from relay.config import EventType
from relay.metrics import LATENCY_BUCKETS
from relay.outcomes import AuthFailure, Outcome, PublishError
from relay.service import Service
from relay.topics import create_topics
from tests.relays import (
    APP_SECRET,
    TOKEN,
    VERIFY_TOKEN,
    Relays,
    RelayUnderTest,
    SettingsFactory,
)


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples_of(text)[name, tuple(sorted(labels.items()))]


async def test_every_metric_exists_at_zero_before_any_request(relay: RelayUnderTest) -> None:
    text = relay.exposition()
    for outcome in Outcome:
        assert value(text, "whatsapp_relay_requests_total", outcome=outcome) == 0
        assert value(text, "whatsapp_relay_request_duration_seconds_count", outcome=outcome) == 0
    for event_type in EventType:
        assert value(text, "whatsapp_relay_records_published_total", event_type=event_type) == 0
        for error in PublishError:
            assert (
                value(text, "whatsapp_relay_publish_errors_total", event_type=event_type,
                      error=error) == 0
            )  # fmt: skip
    for reason in AuthFailure:
        assert value(text, "whatsapp_relay_auth_failures_total", reason=reason) == 0
    assert value(text, "whatsapp_relay_auth_success_total", credential="bearer:0") == 0
    assert value(text, "whatsapp_relay_auth_success_total", credential="bearer:1") == 0
    assert value(text, "whatsapp_relay_unrouted_fields_total", field="other") == 0
    assert value(text, "whatsapp_relay_publish_duration_seconds_count") == 0
    assert value(text, "whatsapp_relay_request_body_bytes_count") == 0
    assert value(text, "whatsapp_relay_inflight_requests") == 0
    assert value(text, "whatsapp_relay_inflight_limit") == 512
    assert value(text, "whatsapp_relay_kafka_ready") == 1
    assert value(text, "whatsapp_relay_ready") == 1
    assert value(text, "whatsapp_relay_producer_restarts_total") == 0
    assert value(
        text, "whatsapp_relay_build_info", version=pytest.importorskip("relay").__version__
    )
    # Histograms resolve the sub-millisecond to seconds range the relay lives in.
    buckets = {
        float(dict(labels)["le"])
        for (name, labels) in samples_of(text)
        if name == "whatsapp_relay_request_duration_seconds_bucket"
    }
    assert {0.0005, 0.001, 0.005, 0.01, 1.0} <= buckets
    assert LATENCY_BUCKETS[0] <= 0.0005


async def test_metrics_count_what_happened(relay: RelayUnderTest) -> None:
    good = samples.body(samples.envelope(samples.status_change(), samples.echo_change()))
    for _ in range(3):
        assert (await relay.post(good)).status == 200
    assert (await relay.post(good, token="wrong")).status == 401
    not_json, page = b"{oops", b'{"object":"page","entry":[]}'
    assert (await relay.post(not_json)).status == 400
    assert (await relay.post(page)).status == 404
    assert (await relay.post(good, headers={"Content-Type": "text/plain"})).status == 415
    text = relay.exposition()

    def requests(outcome: Outcome) -> float:
        return value(text, "whatsapp_relay_requests_total", outcome=outcome)

    assert requests(Outcome.ACCEPTED) == 3
    assert requests(Outcome.UNAUTHORIZED) == 1
    assert requests(Outcome.BAD_REQUEST) == 1
    assert requests(Outcome.NOT_WHATSAPP) == 1
    assert requests(Outcome.UNSUPPORTED_MEDIA_TYPE) == 1
    assert value(text, "whatsapp_relay_request_duration_seconds_count", outcome="accepted") == 3
    assert value(text, "whatsapp_relay_records_published_total", event_type="status") == 3
    assert value(text, "whatsapp_relay_records_published_total", event_type="unrouted") == 3
    assert value(text, "whatsapp_relay_records_published_total", event_type="message") == 0
    assert value(text, "whatsapp_relay_unrouted_fields_total", field="smb_message_echoes") == 3
    assert value(text, "whatsapp_relay_publish_duration_seconds_count") == 3
    assert value(text, "whatsapp_relay_auth_failures_total", reason="invalid_token") == 1
    # Bodies are measured once read: the 3 accepted, the 400 and the 404.
    assert value(text, "whatsapp_relay_request_body_bytes_count") == 5
    assert value(text, "whatsapp_relay_request_body_bytes_sum") == 3 * len(good) + len(
        not_json
    ) + len(page)


async def test_413_and_broker_failures_are_counted(relays: Relays) -> None:
    relay = await relays(server={"max_body_bytes": 2048})
    assert (await relay.post(b"{" + b" " * 3000 + b"}")).status == 413
    # Kill the producer's sender: the next request is refused as Kafka-unavailable.
    assert relay.service is not None
    producer = relay.service.publisher._producer
    assert producer is not None
    await _kill_sender(producer.producer)
    body = samples.body(samples.envelope(samples.template_change()))
    assert (await relay.post(body)).status == 503
    text = relay.exposition()
    assert value(text, "whatsapp_relay_requests_total", outcome="payload_too_large") == 1
    assert value(text, "whatsapp_relay_requests_total", outcome="kafka_unavailable") == 1
    assert (
        value(text, "whatsapp_relay_publish_errors_total", event_type="template",
              error="unavailable") == 1
    )  # fmt: skip


async def test_the_producer_is_idempotent_with_acks_all_and_sized_for_the_body_limit(
    relay: RelayUnderTest,
) -> None:
    assert relay.service is not None
    handle = relay.service.publisher._producer
    assert handle is not None
    producer = handle.producer
    assert producer._txn_manager is not None  # what enable_idempotence builds
    assert producer._sender._acks == -1  # acks=all
    assert producer._max_request_size == relay.settings.record_size_limit
    assert producer._max_request_size > relay.settings.server.max_body_bytes


async def test_health_and_readiness_live_on_the_admin_port_only(relay: RelayUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{relay.admin_url}/healthz") as health:
            assert health.status == 200
        async with http.get(f"{relay.admin_url}/readyz") as ready:
            assert ready.status == 200
            assert (await ready.json())["status"] == "ready"
        async with http.get(f"{relay.admin_url}/metrics") as metrics:
            assert metrics.status == 200
            assert metrics.content_type == "text/plain"
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(relay.url.replace("/webhook", path)) as public:
                assert public.status == 404
        async with http.post(f"{relay.admin_url}/webhook", data=b"{}") as webhook_on_admin:
            assert webhook_on_admin.status in (404, 405)


async def _kill_sender(producer: AIOKafkaProducer) -> None:
    """Put aiokafka's producer in the state a fatal sender error leaves it: its sender task
    ended for good (here cancelled; an OutOfOrderSequence error ends it the same way)."""
    task = producer._sender.sender_task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_dead_producer_is_rebuilt_without_a_restart(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(kafka={"restart_backoff_max_seconds": 0.5})
    failures_left = 0
    built: list[AIOKafkaProducer] = []

    def factory() -> AIOKafkaProducer:
        # The first rebuilds fail, so the window where the relay is unready is observable.
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            producer = AIOKafkaProducer(bootstrap_servers=f"{LOOPBACK}:1")
        else:
            producer = service.publisher._default_producer()
        built.append(producer)
        return producer

    service = Service(settings, producer_factory=factory)
    await create_topics(settings)
    await service.start()
    relay = RelayUnderTest.around(service)
    try:
        await relay.wait_ready()
        first = built[-1]
        failures_left = 2
        await _kill_sender(first)

        assert service.readiness.reason == "kafka producer not running"
        async with aiohttp.ClientSession() as http:
            url = f"http://{LOOPBACK}:{service.public_port}/webhook"
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            body = samples.body(samples.envelope(samples.account_change()))
            async with http.post(url, data=body, headers=headers) as refused:
                assert refused.status == 503
            async with http.get(f"http://{LOOPBACK}:{service.admin_port}/readyz") as ready:
                assert ready.status == 503

            await relay.wait_ready(within=30)
            async with http.post(url, data=body, headers=headers) as accepted:
                assert accepted.status == 200
        assert built[-1] is not first
        assert len(built) >= 4  # the first, two failed rebuilds, the one that worked
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{LOOPBACK}:{service.admin_port}/metrics") as scrape,
        ):
            text = await scrape.text()
        assert value(text, "whatsapp_relay_producer_restarts_total") == 1
    finally:
        await service.shutdown()


async def test_logs_are_json_with_request_ids_and_never_secrets(
    relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    formatter = logs.JsonFormatter()
    relay: RelayUnderTest = await relays(
        auth={"app_secrets": [APP_SECRET], "bearer_tokens": [TOKEN]}
    )
    body = samples.body(samples.envelope(samples.message_change(text="private words")))
    with caplog.at_level(logging.DEBUG):
        await relay.post(body, token="wrong-token-xyz", headers={"X-Request-Id": "rid-401"})
        await relay.post(body, headers={"X-Hub-Signature-256": "sha256=00", "X-Request-Id": "r2"})
        async with relay.http.get(relay.url, params={"hub.verify_token": "guess"}):
            pass
    lines = [formatter.format(record) for record in caplog.records]
    parsed = [orjson.loads(line) for line in lines]
    rejected = [p for p in parsed if p["msg"] == "request rejected"]
    assert {p["request_id"] for p in rejected} == {"rid-401", "r2"}
    assert {p["reason"] for p in rejected} == {"invalid_token", "invalid_signature"}
    assert all(p["level"] == "INFO" for p in rejected)
    text = "\n".join(lines)
    for secret in (TOKEN, APP_SECRET, VERIFY_TOKEN, "wrong-token-xyz", "private words"):
        assert secret not in text


async def test_per_request_lines_only_at_debug(
    relay: RelayUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    body = samples.body(samples.envelope(samples.template_change()))
    with caplog.at_level(logging.INFO):
        await relay.post(body)
    assert not [r for r in caplog.records if r.name == "relay.webhook"]
    with caplog.at_level(logging.DEBUG, logger="relay"):
        await relay.post(body, headers={"X-Request-Id": "dbg-1"})
    accepted = [r for r in caplog.records if r.getMessage() == "accepted"]
    assert [getattr(r, "request_id", None) for r in accepted] == ["dbg-1"]


def test_text_format_is_available() -> None:
    record = logging.makeLogRecord(
        {"msg": "request rejected", "levelname": "INFO", "request_id": "x1", "name": "relay"}
    )
    line = logs.TextFormatter().format(record)
    assert re.search(r"INFO relay request rejected request_id=x1$", line)


async def test_readyz_fails_at_once_when_shutting_down(make_settings: SettingsFactory) -> None:
    settings = make_settings(shutdown={"drain_seconds": 1.0, "timeout_seconds": 3})
    service = (await RelayUnderTest.in_process(settings)).service
    assert service is not None
    stopping = asyncio.create_task(service.shutdown())
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{LOOPBACK}:{service.admin_port}/readyz") as ready:
            assert ready.status == 503
            assert (await ready.json())["reason"] == "shutting down"
        async with http.get(f"http://{LOOPBACK}:{service.admin_port}/healthz") as health:
            assert health.status == 200
        # During the drain the webhook still works: load balancers may still send.
        body = samples.body(samples.envelope(samples.template_change()))
        async with http.post(
            f"http://{LOOPBACK}:{service.public_port}/webhook",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        ) as response:
            assert response.status == 200
    await stopping
