"""The HTTP contract (docs/design.md §3) and the record contract (§5), end to end:
requests in through a real socket, records read back from a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from devsupport import samples
from devsupport.ports import LOOPBACK
from devsupport.topics import consume
from devsupport.topics import size as topic_size
from relay.config import EventType
from tests.raw_http import exchange, raw_request, signature
from tests.relays import (
    APP_SECRET,
    SECOND_TOKEN,
    TOKEN,
    VERIFY_TOKEN,
    Relays,
    RelayUnderTest,
)

pytestmark = pytest.mark.asyncio


async def topic_sizes(relay: RelayUnderTest) -> dict[EventType, int]:
    bootstrap = relay.settings.kafka.bootstrap_servers
    return {
        t: await topic_size(bootstrap, name) for t, name in relay.settings.topics.names().items()
    }


@contextlib.asynccontextmanager
async def stalled_request(
    relay: RelayUnderTest, *, content_length: int, sent: int = 1
) -> AsyncIterator[None]:
    """An authenticated POST that sends `sent` bytes of its body and stalls, in flight until
    the block ends."""
    assert relay.handler is not None
    _, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    writer.write(raw_request(length=content_length, body=b"{" + b" " * (sent - 1)))
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            while relay.handler.inflight == 0:
                await asyncio.sleep(0.01)
        yield
    finally:
        writer.close()


# -- accepted requests and the record contract ---------------------------------------------


async def test_message_is_published_byte_for_byte_with_contract_headers(
    relay: RelayUnderTest,
) -> None:
    # Escapes, spacing and key order a re-serialiser would change:
    data = samples.message_change(sender="4915112345678", text="gr\u00fc\u00dfe \U0001f600")
    body = b'{"object": "whatsapp_business_account",  "entry": [{"id": "%s", "changes": [%s]}]}' % (
        samples.WABA_ID.encode(),
        orjson.dumps(data).replace("ü".encode(), b"\\u00fc"),
    )
    before = time.time()
    response = await relay.post(body, headers={"X-Request-Id": "req-abc.123"})
    after = time.time()
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "req-abc.123"

    topic = relay.settings.topics.message
    [record] = await consume(relay.settings.kafka.bootstrap_servers, topic, expect=1)
    assert record.value == body
    assert record.key == f"{samples.PHONE_NUMBER_ID}:4915112345678".encode()
    headers = dict(record.headers)
    assert headers == {
        "ce_specversion": b"1.0",
        "ce_id": f"{hashlib.sha256(body).hexdigest()}-message".encode(),
        "ce_source": f"/waba/{samples.WABA_ID}".encode(),
        "ce_type": b"whatsapp.message",
        "ce_time": headers["ce_time"],
        "ce_subject": record.key,
        "content-type": b"application/json",
        "wa-fields": b"messages",
        "relay-request-id": b"req-abc.123",
    }
    received = datetime.fromisoformat(headers["ce_time"].decode()).timestamp()
    assert before - 0.01 <= received <= after + 0.01
    assert headers["ce_time"].endswith(b"Z")
    sizes = await topic_sizes(relay)
    assert sizes == {t: int(t is EventType.MESSAGE) for t in EventType}


async def test_records_parse_with_the_cloudevents_kafka_binding(relay: RelayUnderTest) -> None:
    body = samples.body(samples.envelope(samples.status_change(recipient="3161")))
    assert (await relay.post(body)).status == 200
    [record] = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.status, expect=1
    )
    # The SDK's own Kafka binding, as any CloudEvents consumer would read the record:
    event = from_binary_event(
        KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    )
    assert event.get_specversion() == "1.0"
    assert event.get_type() == "whatsapp.status"
    assert event.get_source() == f"/waba/{samples.WABA_ID}"
    assert event.get_id() == f"{hashlib.sha256(body).hexdigest()}-status"
    assert event.get_subject() == f"{samples.PHONE_NUMBER_ID}:3161"
    assert event.get_datacontenttype() == "application/json"
    published_at = event.get_time()
    assert published_at is not None
    assert published_at.tzinfo is not None
    assert event.get_data() == orjson.loads(body)


async def test_trace_context_is_carried_onto_every_record(relay: RelayUnderTest) -> None:
    """A valid traceparent and tracestate reach every record of the request, under the
    CloudEvents extension's names and the W3C ones; a malformed traceparent takes both away."""
    batch = samples.body(samples.envelope(samples.message_change(), samples.status_change()))
    tracestate = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"
    response = await relay.post(
        batch, headers={"traceparent": samples.TRACEPARENT, "tracestate": tracestate}
    )
    assert response.status == 200
    malformed = samples.body(samples.envelope(samples.template_change()))
    response = await relay.post(
        malformed,
        headers={"traceparent": samples.TRACEPARENT.upper(), "tracestate": "rojo=1"},
    )
    assert response.status == 200

    bootstrap = relay.settings.kafka.bootstrap_servers
    topics = relay.settings.topics
    traced = [
        *await consume(bootstrap, topics.message, expect=1),
        *await consume(bootstrap, topics.status, expect=1),
    ]
    assert len(traced) == 2
    for record in traced:
        headers = dict(record.headers)
        assert headers["ce_traceparent"] == headers["traceparent"] == samples.TRACEPARENT.encode()
        assert (
            headers["ce_tracestate"]
            == headers["tracestate"]
            == b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        )
        event = from_binary_event(
            KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
        )
        assert event.get_extension("traceparent") == samples.TRACEPARENT
        assert event.get_extension("tracestate") == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    [untraced] = await consume(bootstrap, topics.template, expect=1)
    names = {name for name, _ in untraced.headers}
    assert not names & {"ce_traceparent", "traceparent", "ce_tracestate", "tracestate"}


async def test_mixed_batch_gives_one_record_per_event_type(relay: RelayUnderTest) -> None:
    change = samples.message_change(sender="111")
    change["value"]["statuses"] = samples.status_change(recipient="222")["value"]["statuses"]
    data = samples.envelope(
        change,
        samples.status_change(recipient="333"),
        samples.template_change(),
        samples.account_change(),
        samples.echo_change(),
        {"field": "field_meta_adds_next_year", "value": {"x": 1}},
    )
    body = samples.body(data)
    response = await relay.post(body)
    assert response.status == 200

    bootstrap = relay.settings.kafka.bootstrap_servers
    expected = {
        EventType.MESSAGE: (f"{samples.PHONE_NUMBER_ID}:111", b"messages"),
        EventType.STATUS: (f"{samples.PHONE_NUMBER_ID}:222", b"messages"),
        EventType.TEMPLATE: (samples.WABA_ID, b"message_template_status_update"),
        EventType.ACCOUNT: (samples.WABA_ID, b"account_update"),
        EventType.UNROUTED: (samples.WABA_ID, b"smb_message_echoes,field_meta_adds_next_year"),
    }
    for event_type, (key, fields) in expected.items():
        [record] = await consume(bootstrap, relay.settings.topics.for_type(event_type), expect=1)
        headers = dict(record.headers)
        assert record.value == body
        assert record.key == key.encode()
        assert headers["wa-fields"] == fields
        assert headers["ce_type"] == f"whatsapp.{event_type.value}".encode()
        assert headers["ce_id"] == f"{hashlib.sha256(body).hexdigest()}-{event_type}".encode()
    metrics = relay.exposition()
    assert 'whatsapp_relay_unrouted_fields_total{field="smb_message_echoes"} 1.0' in metrics
    assert 'whatsapp_relay_unrouted_fields_total{field="other"} 1.0' in metrics


async def test_retry_of_the_same_body_yields_the_same_ce_id(relay: RelayUnderTest) -> None:
    body = samples.body(samples.envelope(samples.template_change()))
    assert (await relay.post(body)).status == 200
    assert (await relay.post(body)).status == 200
    records = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.template, expect=2
    )
    ids = {dict(r.headers)["ce_id"] for r in records}
    request_ids = {dict(r.headers)["relay-request-id"] for r in records}
    assert len(records) == 2
    assert len(ids) == 1
    assert len(request_ids) == 2


async def test_unknown_fields_are_accepted_on_unrouted(relay: RelayUnderTest) -> None:
    body = samples.body(samples.envelope({"field": "calls", "value": {"calls": []}}))
    response = await relay.post(body)
    assert response.status == 200
    [record] = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.unrouted, expect=1
    )
    assert record.key == samples.WABA_ID.encode()
    assert dict(record.headers)["wa-fields"] == b"calls"


async def test_routing_override_sends_echoes_to_the_message_topic_keyed_by_the_user(
    relays: Relays,
) -> None:
    # The override the README and the example configuration show, on a real echo body.
    relay = await relays(routing={"fields": {"smb_message_echoes": "message"}})
    body = samples.body(samples.envelope(samples.echo_change(to_user_id=samples.BSUID)))
    assert (await relay.post(body)).status == 200
    [record] = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.message, expect=1
    )
    assert record.value == body
    assert record.key == f"{samples.PHONE_NUMBER_ID}:{samples.BSUID}".encode()
    assert dict(record.headers)["wa-fields"] == b"smb_message_echoes"


async def test_one_user_keeps_one_key_whatever_meta_withholds(relay: RelayUnderTest) -> None:
    """A user's conversation as Meta sends it in 2026, read back from Kafka: the BSUID keys
    it whether or not the phone number is present, statuses included; a changed BSUID is
    announced on the new key's partition, ahead of what the user sends next."""
    bsuid, phone, renewed = samples.BSUID, "16315551181", "US.40187760351962118042"
    bodies = {
        EventType.MESSAGE: [
            samples.message_change(sender=phone, user_id=bsuid, text="first"),
            samples.message_change(sender=None, user_id=bsuid, username="@kerry", text="2nd"),
            samples.system_change(previous_user_id=bsuid, user_id=renewed),
            samples.message_change(sender=None, user_id=renewed, text="after the change"),
        ],
        EventType.STATUS: [
            samples.status_change(recipient=phone, status="sent", user_id=bsuid),
            samples.status_change(recipient=None, status="read", user_id=bsuid),
        ],
    }
    for changes in bodies.values():
        for change in changes:
            assert (await relay.post(samples.body(samples.envelope(change)))).status == 200

    bootstrap = relay.settings.kafka.bootstrap_servers
    messages = await consume(bootstrap, relay.settings.topics.message, expect=4)
    statuses = await consume(bootstrap, relay.settings.topics.status, expect=2)
    first, second = f"{samples.PHONE_NUMBER_ID}:{bsuid}", f"{samples.PHONE_NUMBER_ID}:{renewed}"
    keys = {record.value: record.key.decode() for record in messages + statuses}
    assert [keys[samples.body(samples.envelope(c))] for c in bodies[EventType.MESSAGE]] == [
        first,
        first,
        second,
        second,
    ]
    assert {keys[samples.body(samples.envelope(c))] for c in bodies[EventType.STATUS]} == {first}
    for record in messages + statuses:
        assert dict(record.headers)["ce_subject"] == record.key
    # Same key, same partition, in the order sent: the notice precedes the next message.
    by_key = [r for r in messages if r.key == second.encode()]
    assert len({r.partition for r in by_key}) == 1
    assert [orjson.loads(r.value)["entry"][0]["changes"][0]["value"]["messages"][0]["type"]
            for r in sorted(by_key, key=lambda r: r.offset)] == ["system", "text"]  # fmt: skip


async def test_a_body_near_the_limit_is_accepted_and_stored(relay: RelayUnderTest) -> None:
    # Meta sends up to ~3 MB: the producer and the topic must take what the ingress takes.
    change = samples.message_change(text="x" * (3_500_000))
    body = samples.body(samples.envelope(change))
    assert len(body) < relay.settings.server.max_body_bytes
    response = await relay.post(body)
    assert response.status == 200
    [record] = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.message, expect=1
    )
    assert record.value == body


async def test_nothing_the_ingress_accepts_is_refused_by_the_producer(
    relays: Relays,
) -> None:
    """The largest record the relay accepts (a body of exactly the limit, the longest ids,
    the most and longest field names, the longest signature header the server takes) is
    stored; one id character or one field name more is a 400, never a 503 to retry forever."""
    data, routes = samples.largest_record()
    _, one_more_route = samples.largest_record(extra_fields=1)
    relay = await relays(routing={"fields": one_more_route})
    limit = relay.settings.server.max_body_bytes
    change = data["entry"][0]["changes"][0]
    change["value"]["messages"][0]["text"]["body"] = "x" * (limit - len(samples.body(data)))
    body = samples.body(data)
    assert len(body) == limit
    signature = "sha256=" + "0" * 8000  # unverified in bearer mode, passed through as is
    tracestate, carried = samples.longest_tracestate()
    response = await relay.post(
        body,
        headers={
            "X-Hub-Signature-256": signature,
            "traceparent": samples.TRACEPARENT,
            "tracestate": tracestate,
        },
    )
    assert response.status == 200

    [record] = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.message, expect=1
    )
    person = change["value"]["messages"][0]["from_user_id"]
    assert record.value == body
    assert record.key == f"{person}:{person}".encode()
    headers = dict(record.headers)
    assert headers["wa-fields"].decode().split(",") == ["messages", *routes]
    assert headers["x-hub-signature-256"] == signature.encode()
    assert headers["ce_tracestate"] == headers["tracestate"] == carried.encode()

    refused = [
        samples.largest_record(extra_id_chars=1)[0],
        samples.largest_record(extra_fields=1)[0],
        # The hostile-edge issue's reproductions: a 1.3 MB entry id, 10,000 field names.
        samples.envelope(samples.template_change(), waba_id="9" * 1_300_000),
        samples.envelope(*({"field": f"f{i}", "value": {}} for i in range(10_000))),
    ]
    for over in refused:
        answer = await relay.post(samples.body(over), headers={"X-Hub-Signature-256": signature})
        assert answer.status == 400
    assert await topic_sizes(relay) == {t: int(t is EventType.MESSAGE) for t in EventType}
    metrics = relay.exposition()
    assert f'whatsapp_relay_requests_total{{outcome="bad_request"}} {len(refused)}.0' in metrics


async def test_request_id_is_generated_when_absent_or_unsafe(relay: RelayUnderTest) -> None:
    body = samples.body(samples.envelope(samples.template_change()))
    plain = await relay.post(body)
    unsafe = await relay.post(body, headers={"X-Request-Id": "bad id\twith spaces"})
    for response in (plain, unsafe):
        assert len(response.headers["X-Request-Id"]) == 32
    assert plain.headers["X-Request-Id"] != unsafe.headers["X-Request-Id"]


# -- authentication ---------------------------------------------------------------------------


async def test_both_rotated_tokens_are_accepted_and_counted_by_index(relay: RelayUnderTest) -> None:
    body = samples.body(samples.envelope(samples.account_change()))
    assert (await relay.post(body, token=TOKEN)).status == 200
    assert (await relay.post(body, token=SECOND_TOKEN)).status == 200
    assert (await relay.post(body, token=SECOND_TOKEN)).status == 200
    metrics = relay.exposition()
    assert 'whatsapp_relay_auth_success_total{credential="bearer:0"} 1.0' in metrics
    assert 'whatsapp_relay_auth_success_total{credential="bearer:1"} 2.0' in metrics


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_credentials"),
        (b"Bearer wrong-token", "invalid_token"),
        (b"Basic dXNlcjpwYXNz", "malformed_header"),
        (b"Bearer " + TOKEN.encode() + b"x", "invalid_token"),
        (b"Bearer t\xc3\xb6k\xc3\xa9n", "invalid_token"),  # UTF-8 bytes
        (b"Bearer \xff\xfe\xfd", "invalid_token"),  # not UTF-8 at all
    ],
)
async def test_bad_credentials_get_401_and_publish_nothing(
    relay: RelayUnderTest, header: bytes | None, reason: str
) -> None:
    body = samples.body(samples.envelope(samples.message_change()))
    lines = [b"Authorization: " + header] if header is not None else []
    answer = await exchange(relay.port, raw_request(*lines, token=None, body=body), answers=1)
    assert answer.status == 401
    assert answer.header("X-Request-Id")
    assert b"token" not in answer.body  # no hint which check failed
    assert await topic_sizes(relay) == dict.fromkeys(EventType, 0)
    metrics = relay.exposition()
    assert f'whatsapp_relay_auth_failures_total{{reason="{reason}"}} 1.0' in metrics


async def test_meta_signature_is_checked_and_passed_through(
    relays: Relays,
) -> None:
    relay = await relays(
        auth={"bearer_tokens": [], "app_secrets": ["old-app-secret-000", APP_SECRET]}
    )
    body = samples.body(samples.envelope(samples.status_change()))
    good = await relay.post(body, token=None, headers={"X-Hub-Signature-256": signature(body)})
    assert good.status == 200
    bad = await relay.post(body, token=None, headers={"X-Hub-Signature-256": signature(body, "x")})
    missing = await relay.post(body, token=None)
    tampered = await relay.post(
        body + b" ", token=None, headers={"X-Hub-Signature-256": signature(body)}
    )
    assert (bad.status, missing.status, tampered.status) == (401, 401, 401)

    [record] = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.status, expect=1
    )
    assert dict(record.headers)["x-hub-signature-256"] == signature(body).encode()
    metrics = relay.exposition()
    assert 'whatsapp_relay_auth_success_total{credential="app_secret:1"} 1.0' in metrics
    assert 'whatsapp_relay_auth_failures_total{reason="invalid_signature"} 2.0' in metrics
    assert 'whatsapp_relay_auth_failures_total{reason="missing_signature"} 1.0' in metrics


async def test_with_both_credentials_configured_both_are_required(
    relays: Relays,
) -> None:
    relay = await relays(auth={"app_secrets": [APP_SECRET]})
    body = samples.body(samples.envelope(samples.status_change()))
    signed = {"X-Hub-Signature-256": signature(body)}
    assert (await relay.post(body, token=None, headers=signed)).status == 401
    assert (await relay.post(body, token=TOKEN)).status == 401
    assert (await relay.post(body, token=TOKEN, headers=signed)).status == 200


# -- refusals: nothing published, clear 4xx -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        # A lone surrogate escape: valid JSON syntax, but not text any consumer can decode.
        (
            b'{"object": "whatsapp_business_account", "entry": [{"id": "\\ud800"}]}',
            "application/json",
            400,
        ),
        (b"[1, 2]", "application/json", 400),
        (b'{"object": "whatsapp_business_account"}', "application/json", 400),
        (b'{"object": "whatsapp_business_account", "entry": {}}', "application/json", 400),
        (b'{"object": "page", "entry": []}', "application/json", 404),
        (b'{"object": "whatsapp_business_account", "entry": []}', "text/plain", 415),
        (b'{"object": "whatsapp_business_account", "entry": []}', "application/xml", 415),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_nothing_published(
    relay: RelayUnderTest, body: bytes, content_type: str, status: int
) -> None:
    response = await relay.post(body, headers={"Content-Type": content_type})
    assert response.status == status
    assert "X-Request-Id" in response.headers
    assert await topic_sizes(relay) == dict.fromkeys(EventType, 0)


async def test_json_with_charset_parameter_is_accepted(relay: RelayUnderTest) -> None:
    body = samples.body(samples.envelope(samples.template_change()))
    response = await relay.post(body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status == 200


async def test_other_paths_and_methods(relay: RelayUnderTest) -> None:
    async with relay.http.post(relay.url + "x", data=b"{}") as elsewhere:
        assert elsewhere.status == 404
        assert "X-Request-Id" in elsewhere.headers
    async with relay.http.put(relay.url, data=b"{}") as put:
        assert put.status == 405
        assert put.headers["Allow"] == "GET, POST"
        assert "X-Request-Id" in put.headers
    async with relay.http.get(relay.url.replace("/webhook", "/metrics")) as metrics:
        assert metrics.status == 404  # the admin listener's paths are not on the public port


async def test_content_length_above_limit_is_413_before_the_body_is_sent(
    relays: Relays,
) -> None:
    relay = await relays(server={"max_body_bytes": 10_000})
    # Headers only: a relay that waited for the body would time out instead of answering.
    answer = await exchange(relay.port, raw_request(length=10001), read_for=3)
    assert answer.status == 413


async def test_chunked_body_growing_past_limit_is_413(relays: Relays) -> None:
    relay = await relays(server={"max_body_bytes": 10_000})

    async def chunks() -> Any:
        for _ in range(30):
            yield b" " * 1000

    async with relay.http.post(
        relay.url,
        data=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
    assert await topic_sizes(relay) == dict.fromkeys(EventType, 0)


async def test_stalled_body_is_cut_off_with_408(relays: Relays) -> None:
    relay = await relays(server={"body_read_timeout_seconds": 0.5})
    started = time.monotonic()
    answer = await exchange(relay.port, raw_request(length=500, body=b'{"obj'), read_for=5)
    assert answer.status == 408
    assert time.monotonic() - started < 4
    assert relay.handler is not None
    assert relay.handler.inflight == 0


async def test_inflight_cap_answers_503_at_once(relays: Relays) -> None:
    relay = await relays(server={"max_inflight_requests": 1, "body_read_timeout_seconds": 5})
    # Hold the only slot with a request whose body never completes.
    async with stalled_request(relay, content_length=100):
        body = samples.body(samples.envelope(samples.template_change()))
        started = time.monotonic()
        response = await relay.post(body)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert time.monotonic() - started < 1
    metrics = relay.exposition()
    assert 'whatsapp_relay_requests_total{outcome="overloaded"} 1.0' in metrics


async def test_inflight_bytes_cap_bounds_memory(relays: Relays) -> None:
    relay = await relays(server={"max_inflight_bytes": 4096, "body_read_timeout_seconds": 5})
    # Bodies are counted as they arrive: announcing 3500 bytes holds nothing; having sent 3000
    # of them holds most of the budget.
    async with stalled_request(relay, content_length=3500, sent=3000):
        assert relay.handler is not None
        while relay.handler.inflight_bytes < 3000:
            await asyncio.sleep(0.01)
        small = samples.body(samples.envelope(samples.template_change()))
        assert len(small) < 1096
        assert (await relay.post(small)).status == 200  # fits next to it
        big = samples.body(samples.envelope(samples.message_change(text="x" * 1500)))
        response = await relay.post(big)
        assert response.status == 503  # would exceed the budget
        assert response.headers["Retry-After"]


# -- Meta's verification handshake --------------------------------------------------------


async def test_verification_handshake(relay: RelayUnderTest) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    async with relay.http.get(relay.url, params=query) as ok:
        assert ok.status == 200
        assert await ok.text() == "1158201444"
        assert ok.content_type == "text/plain"
        assert "X-Request-Id" in ok.headers
    for wrong in (
        {**query, "hub.verify_token": "nope"},
        {**query, "hub.mode": "unsubscribe"},
        {"hub.challenge": "1"},
    ):
        async with relay.http.get(relay.url, params=wrong) as refused:
            assert refused.status == 403


async def test_handshake_is_refused_without_a_verify_token(
    relays: Relays,
) -> None:
    relay = await relays(auth={"verify_token": None})
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    async with relay.http.get(relay.url, params=query) as refused:
        assert refused.status == 403
