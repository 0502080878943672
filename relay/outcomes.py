"""How a request on the public listener ends: the `outcome` label and its HTTP status.

One table for the HTTP contract (docs/design.md §3), shared by the webhook handler and the
connection layer that answers before a request reaches it (`relay.edge`).
"""

from __future__ import annotations

from enum import StrEnum

import orjson


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    UNAUTHORIZED = "unauthorized"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BAD_REQUEST = "bad_request"
    # Not HTTP/1.1 the parser accepts: request line, headers, chunked framing, a head too large.
    BAD_HTTP = "bad_http"
    EXPECTATION_FAILED = "expectation_failed"
    NOT_WHATSAPP = "not_whatsapp"
    REQUEST_TIMEOUT = "request_timeout"
    # The client went away before its request was complete; no answer reaches it.
    CLIENT_DISCONNECTED = "client_disconnected"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_FOUND = "not_found"
    OVERLOADED = "overloaded"
    PUBLISH_TIMEOUT = "publish_timeout"
    KAFKA_UNAVAILABLE = "kafka_unavailable"
    SHUTTING_DOWN = "shutting_down"
    VERIFIED = "verified"
    VERIFY_REJECTED = "verify_rejected"
    # A bug: something escaped the handler. Counted so that it can be alerted on.
    INTERNAL_ERROR = "internal_error"


STATUS: dict[Outcome, int] = {
    Outcome.ACCEPTED: 200,
    Outcome.VERIFIED: 200,
    Outcome.BAD_REQUEST: 400,
    Outcome.BAD_HTTP: 400,
    Outcome.CLIENT_DISCONNECTED: 400,
    Outcome.UNAUTHORIZED: 401,
    Outcome.VERIFY_REJECTED: 403,
    Outcome.NOT_FOUND: 404,
    Outcome.NOT_WHATSAPP: 404,
    Outcome.METHOD_NOT_ALLOWED: 405,
    Outcome.REQUEST_TIMEOUT: 408,
    Outcome.PAYLOAD_TOO_LARGE: 413,
    Outcome.UNSUPPORTED_MEDIA_TYPE: 415,
    Outcome.EXPECTATION_FAILED: 417,
    Outcome.INTERNAL_ERROR: 500,
    Outcome.OVERLOADED: 503,
    Outcome.PUBLISH_TIMEOUT: 503,
    Outcome.KAFKA_UNAVAILABLE: 503,
    Outcome.SHUTTING_DOWN: 503,
}

# Answer bodies name the outcome only: nothing of the request is ever echoed.
BODIES: dict[Outcome, bytes] = {o: orjson.dumps({"status": o.value}) for o in Outcome}


class ConnectionEnd(StrEnum):
    """Why the connection layer closed a connection on its own; the `reason` label."""

    HEADER_TIMEOUT = "header_timeout"  # no complete request head in time
    EVICTED = "evicted"  # idle or slow, closed to admit a new one at the connection cap
    REFUSED = "refused"  # the cap was reached with every connection busy
    DRAIN_LIMIT = "drain_limit"  # kept sending after an answer that closes the connection
    WRITE_TIMEOUT = "write_timeout"  # stopped reading its answers for the head timeout


class AuthFailure(StrEnum):
    MISSING_CREDENTIALS = "missing_credentials"
    MALFORMED_HEADER = "malformed_header"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a label value, not a secret)
    MISSING_SIGNATURE = "missing_signature"
    INVALID_SIGNATURE = "invalid_signature"


class PublishError(StrEnum):
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    TOO_LARGE = "too_large"
    KAFKA_ERROR = "kafka_error"
    # With the spool on (relay.spool): Kafka did not take the records and the spool could not.
    SPOOL_FULL = "spool_full"  # spool.max_bytes reached
    SPOOL_FAILED = "spool_failed"  # the write or its fsync failed, or did not finish in time


class ReloadResult(StrEnum):
    """How a reload of the credential files ended (relay.credentials)."""

    SUCCESS = "success"
    UNREADABLE = "unreadable"  # a file is missing, not readable or not text
    INVALID = "invalid"  # read, but refused: empty, too short, not printable ASCII


class SpoolReason(StrEnum):
    """Why a request went to the spool (relay.spool.publisher)."""

    TIMEOUT = "timeout"  # Kafka did not acknowledge within spool.after_seconds
    UNAVAILABLE = "unavailable"  # the producer is down or the cluster unreachable
    KAFKA_ERROR = "kafka_error"  # Kafka refused the records
    QUEUED = "queued"  # the spool held records: behind them, to keep their order
    ALWAYS = "always"  # spool.after_seconds is 0


class SpoolRefusal(StrEnum):
    """Why the spool did not take a request (a 503)."""

    FULL = "full"  # spool.max_bytes reached
    IO_ERROR = "io_error"  # the write or the fsync failed (disk full, I/O error)
    TIMEOUT = "timeout"  # the disk did not confirm the write within kafka.publish_timeout_seconds
