"""Kafka records in the contract's shape (docs/design.md §5): CloudEvents 1.0, binary mode.

The value is always the request body as received: re-serialising would break the sender's
signature and could change non-ASCII escapes that consumers verify or compare.
"""

from __future__ import annotations

import functools
import hashlib
import time as _time
from typing import NamedTuple

from relay.classify import EventGroup
from relay.config import EventType

CE_SPECVERSION = b"1.0"
CONTENT_TYPE = b"application/json"
CE_TYPES = {t: f"whatsapp.{t.value}".encode() for t in EventType}

Headers = list[tuple[str, bytes]]


class Record(NamedTuple):
    event_type: EventType
    topic: str
    key: bytes
    value: bytes
    headers: Headers


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> bytes:
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(second)).encode()


def rfc3339(timestamp: float) -> bytes:
    """RFC 3339 UTC with microseconds; the calendar part is formatted once per second."""
    second = int(timestamp)
    return b"%s.%06dZ" % (_utc_second(second), int((timestamp - second) * 1_000_000))


# What repeats from request to request is encoded once: the ce_id suffix per type, the source
# per WABA id (a bounded cache: ids come from senders). The wa-fields value is joined each time:
# one or two short names join faster than a tuple can be built and looked up.
_ID_SUFFIXES = {t: f"-{t.value}".encode() for t in EventType}


@functools.lru_cache(maxsize=4096)
def _source(waba_id: str) -> bytes:
    # CloudEvents requires a non-empty URI-reference; a body naming no WABA (`"entry": []`)
    # gets the collection itself rather than a path ending in a bare slash.
    return f"/waba/{waba_id}".encode() if waba_id else b"/waba"


def build_records(
    body: bytes,
    groups: list[EventGroup],
    topics: dict[EventType, str],
    *,
    request_id: str,
    received_at: float,
    signature: str | None,
    trace: Headers | None = None,
) -> list[Record]:
    """One record per event group. `ce_id` is derived from the body so a retry of the same
    body yields the same id, which is what lets consumers deduplicate. `trace` is the request's
    validated trace context (relay.tracecontext), copied onto every record."""
    digest = hashlib.sha256(body).hexdigest().encode()
    time = rfc3339(received_at)
    request_id_bytes = request_id.encode()
    signature_bytes = signature.encode("utf-8", "surrogateescape") if signature else None
    records = []
    for group in groups:
        event_type = group.event_type
        key = group.key.encode()
        headers: Headers = [
            ("ce_specversion", CE_SPECVERSION),
            ("ce_id", digest + _ID_SUFFIXES[event_type]),
            ("ce_source", _source(group.waba_id)),
            ("ce_type", CE_TYPES[event_type]),
            ("ce_time", time),
            ("content-type", CONTENT_TYPE),
            ("wa-fields", ",".join(group.fields).encode()),
            ("relay-request-id", request_id_bytes),
        ]
        if key:  # CloudEvents forbids an empty subject; a body without ids has no key
            headers.append(("ce_subject", key))
        if signature_bytes is not None:
            headers.append(("x-hub-signature-256", signature_bytes))
        if trace:
            headers += trace
        records.append(Record(event_type, topics[event_type], key, body, headers))
    return records
