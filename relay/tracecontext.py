"""W3C Trace Context (`traceparent`, `tracestate`) carried from a request onto its records.

The relay takes no part in the trace (it makes no span): it passes on the context the sender or
an ingress sent, so that a consumer can continue the trace. Only what was validated is copied;
anything malformed is dropped, never copied, and the request is served as usual.

- `traceparent`, version 00: exactly `00-<trace-id: 32 lowercase hex>-<parent-id: 16>-<flags:
  2>`, neither id all zeros. A higher version (01 to fe) is read by the spec's versioning rules
  (at least 55 characters; the version-00 fields, the flags followed by the end or a dash) and
  carried as version 00, the highest the relay knows: the spec's "downgrade the version"
  mutation, which drops the fields it does not know. Version ff, or more than one
  `traceparent` header, drops it.
- `tracestate` only travels with a valid `traceparent`. Several headers are one list joined by
  commas; empty members and optional whitespace are dropped. A member that breaks the grammar
  (Trace Context Level 2: `key=value`, key `[a-z0-9][a-z0-9_*/@-]{0,255}`, value of printable
  ASCII without `,` and `=` and not ending in a space, up to 256 characters), a key seen twice
  or more than 32 members drop the whole header. Longer than 512 characters, it is truncated
  as the spec says: whole members, those above 128 characters first, then from the end.

Each is written twice on a record: `ce_traceparent` / `ce_tracestate`, the CloudEvents
distributed-tracing extension in the Kafka binding's binary mode (what a CloudEvents SDK reads),
and `traceparent` / `tracestate`, the W3C names that OpenTelemetry's Kafka instrumentations read.
The extension carries the trace the event started in, the bare headers the current hop; with no
span of its own the relay has one context for both, as the extension's spec requires for a
single hop.

A request without the headers costs one header lookup; no regular expression runs for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from multidict import CIMultiDictProxy

MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32
# Members longer than this go first when a tracestate must be shortened.
_LONG_MEMBER_CHARS = 128
_VERSION_00_CHARS = 55

_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# A later version: the version-00 fields at the start, then the end or a dash and fields this
# relay does not know (never copied).
_TRACEPARENT_LATER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|$)")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
_MEMBER = re.compile(
    r"[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)

TraceHeaders = list[tuple[str, bytes]]


def trace_headers(headers: CIMultiDictProxy[str]) -> TraceHeaders:
    """The Kafka headers that carry the request's trace context; empty without a valid one."""
    parents = headers.getall("traceparent", ())
    if not parents:
        return []
    traceparent = parse_traceparent(parents)
    if traceparent is None:
        return []
    parent = traceparent.encode()
    carried = [("ce_traceparent", parent), ("traceparent", parent)]
    tracestate = parse_tracestate(headers.getall("tracestate", ()))
    if tracestate:
        state = tracestate.encode()
        carried += [("ce_tracestate", state), ("tracestate", state)]
    return carried


def parse_traceparent(values: Sequence[str]) -> str | None:
    """The version-00 `traceparent` to carry, or None if it is to be dropped."""
    if len(values) != 1:
        return None
    value = values[0].strip(" \t")
    match = _TRACEPARENT_00.fullmatch(value)
    if match is None:
        if value.startswith("00") or len(value) < _VERSION_00_CHARS:
            return None
        match = _TRACEPARENT_LATER.match(value)
        if match is None or match.group(1) == "ff":
            return None
        value = f"00-{match.group(2)}-{match.group(3)}-{match.group(4)}"
        trace_id, parent_id = match.group(2), match.group(3)
    else:
        trace_id, parent_id = match.group(1), match.group(2)
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    return value


def parse_tracestate(values: Sequence[str]) -> str | None:
    """The `tracestate` to carry (members joined by commas, at most 512 characters), or None."""
    members: list[str] = []
    keys: set[str] = set()
    for value in values:
        for raw in value.split(","):
            member = raw.strip(" \t")
            if not member:
                continue
            if _MEMBER.fullmatch(member) is None:
                return None
            key = member.partition("=")[0]
            if key in keys:
                return None
            keys.add(key)
            members.append(member)
            if len(members) > MAX_TRACESTATE_MEMBERS:
                return None
    if not members:
        return None
    while _joined_length(members) > MAX_TRACESTATE_CHARS:
        long = [i for i, m in enumerate(members) if len(m) > _LONG_MEMBER_CHARS]
        del members[long[-1] if long else -1]
    return ",".join(members) or None


def _joined_length(members: list[str]) -> int:
    return sum(map(len, members)) + max(len(members) - 1, 0)
