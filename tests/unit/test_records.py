import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from relay.classify import EventGroup
from relay.config import EventType
from relay.records import build_records, rfc3339

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
    stamp = rfc3339(timestamp)
    assert stamp.endswith("Z")
    assert len(stamp) == len("2026-11-25T21:05:05.131009Z")
    parsed = datetime.fromisoformat(stamp)
    assert abs(parsed - datetime.fromtimestamp(timestamp, UTC)) <= timedelta(microseconds=1)
