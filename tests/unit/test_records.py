import hashlib
import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.web_protocol import RequestHandler
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from multidict import CIMultiDict, CIMultiDictProxy

from devsupport import samples
from relay.classify import (
    MAX_FIELDS_PER_RECORD,
    MAX_ID_CHARS,
    Classifier,
    EventGroup,
    RecordTooLarge,
)
from relay.config import EventType, Settings
from relay.records import Record, build_records, rfc3339
from relay.tracecontext import MAX_TRACESTATE_CHARS, trace_headers

TOPICS = {t: f"topic.{t.value}" for t in EventType}
BODY = '{"object":"whatsapp_business_account","x":"\\u00e9 é"}'.encode()


def test_records_carry_the_body_untouched_and_cloudevents_headers() -> None:
    groups = [
        EventGroup(EventType.MESSAGE, "pn:from", "waba", ["messages"]),
        EventGroup(EventType.UNROUTED, "waba", "waba", ["calls", "history"]),
    ]
    records = build_records(
        BODY, groups, TOPICS, request_id="rid-1", received_at=0.5, signature="sha256=ab"
    )
    digest = hashlib.sha256(BODY).hexdigest()
    assert [r.topic for r in records] == ["topic.message", "topic.unrouted"]
    assert all(r.value is BODY for r in records)
    message = dict(records[0].headers)
    assert records[0].key == b"pn:from"
    assert message == {
        "ce_specversion": b"1.0",
        "ce_id": f"{digest}-message".encode(),
        "ce_source": b"/waba/waba",
        "ce_type": b"whatsapp.message",
        "ce_time": b"1970-01-01T00:00:00.500000Z",
        "ce_subject": b"pn:from",
        "content-type": b"application/json",
        "wa-fields": b"messages",
        "relay-request-id": b"rid-1",
        "x-hub-signature-256": b"sha256=ab",
    }
    unrouted = dict(records[1].headers)
    assert unrouted["ce_id"] == f"{digest}-unrouted".encode()
    assert unrouted["wa-fields"] == b"calls,history"


def test_same_body_gives_same_ce_id_whatever_the_request() -> None:
    group = [EventGroup(EventType.STATUS, "k", "w", ["messages"])]
    first = build_records(BODY, group, TOPICS, request_id="a", received_at=1, signature=None)
    again = build_records(BODY, group, TOPICS, request_id="b", received_at=2, signature=None)
    assert dict(first[0].headers)["ce_id"] == dict(again[0].headers)["ce_id"]
    assert "x-hub-signature-256" not in dict(first[0].headers)


def test_empty_key_has_no_subject() -> None:
    group = [EventGroup(EventType.UNROUTED, "", "", [])]
    headers = dict(build_records(BODY, group, TOPICS, request_id="a", received_at=1,
                                 signature=None)[0].headers)  # fmt: skip
    assert "ce_subject" not in headers


@pytest.mark.parametrize(
    "timestamp", [0.0, 0.5, 1764100000.123456, 1764100059.999999, 4102444800.0]
)
def test_rfc3339_is_utc_and_parses_back(timestamp: float) -> None:
    stamp = rfc3339(timestamp).decode()
    assert stamp.endswith("Z")
    assert len(stamp) == len("2026-11-25T21:05:05.131009Z")
    parsed = datetime.fromisoformat(stamp)
    assert abs(parsed - datetime.fromtimestamp(timestamp, UTC)) <= timedelta(microseconds=1)


# The longest X-Request-Id the relay keeps (relay.webhook), and the longest header field the
# HTTP server accepts, which bounds an X-Hub-Signature-256 passed through unverified.
LONGEST_REQUEST_ID = 128
LONGEST_HEADER_FIELD = int(
    inspect.signature(RequestHandler.__init__).parameters["max_field_size"].default
)


# The most trace context a request can bring onto a record: a traceparent, and a tracestate
# of exactly the bound, each under two names (relay.tracecontext).
LONGEST_TRACE = trace_headers(
    CIMultiDictProxy(
        CIMultiDict(traceparent=samples.TRACEPARENT, tracestate=samples.longest_tracestate()[0])
    )
)


def from_body(
    data: dict[str, Any], body: bytes, *, signature: str | None = None, **overrides: EventType
) -> list[Record]:
    groups = Classifier(overrides).classify(data)
    return build_records(
        body,
        groups,
        TOPICS,
        request_id="r" * LONGEST_REQUEST_ID,
        received_at=1.0,
        signature=signature,
        trace=LONGEST_TRACE,
    )


@pytest.mark.parametrize(
    "data",
    [
        {"object": "whatsapp_business_account", "entry": []},
        {"object": "whatsapp_business_account", "entry": [{"changes": []}]},
        {"object": "whatsapp_business_account", "entry": [{"id": None, "changes": [{}]}]},
    ],
)
def test_a_body_naming_no_waba_gets_a_source_without_a_bare_slash(data: dict[str, Any]) -> None:
    # CloudEvents requires a non-empty URI-reference; "/waba/" would name an empty account.
    [record] = from_body(data, b"{}")
    headers = dict(record.headers)
    assert headers["ce_source"] == b"/waba"
    assert record.key == b""
    assert "ce_subject" not in headers  # CloudEvents forbids an empty subject


def test_ce_subject_is_the_key() -> None:
    change = samples.message_change(sender=None, user_id=samples.BSUID)
    [record] = from_body(samples.envelope(change), b"{}")
    assert record.key == f"{samples.PHONE_NUMBER_ID}:{samples.BSUID}".encode()
    assert dict(record.headers)["ce_subject"] == record.key


def test_the_largest_record_the_classifier_accepts_fits_what_the_producer_accepts() -> None:
    settings = Settings()
    data, routes = samples.largest_record()
    body = b" " * settings.server.max_body_bytes  # the value's size is all that matters here
    [record] = from_body(data, body, signature="s" * LONGEST_HEADER_FIELD, **routes)
    headers = dict(record.headers)
    assert len(record.key) == (2 * MAX_ID_CHARS) * 4 + 1
    assert len(headers["wa-fields"].split(b",")) == MAX_FIELDS_PER_RECORD
    assert len(headers["tracestate"]) == len(headers["ce_tracestate"]) == MAX_TRACESTATE_CHARS
    # aiokafka refuses a record whose estimate exceeds max_request_size, which the relay
    # sets to this limit (and `topics create` sets max.message.bytes to it).
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        record.key, record.value, record.headers
    )
    assert size <= settings.record_size_limit


@pytest.mark.parametrize(("extra_id_chars", "extra_fields"), [(1, 0), (0, 1)])
def test_just_past_the_bounds_the_classifier_refuses(
    extra_id_chars: int, extra_fields: int
) -> None:
    data, routes = samples.largest_record(extra_id_chars, extra_fields)
    with pytest.raises(RecordTooLarge):
        Classifier(routes).classify(data)
