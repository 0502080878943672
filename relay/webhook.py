"""The public listener: Meta's GET handshake and the authenticated webhook POST.

It runs on aiohttp's low-level server: one handler sees every request, so every answer
(404 and 405 included) carries `X-Request-Id` and is counted, and no router or middleware
chain sits on the hot path. Checks run cheapest first, and nothing unauthenticated is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import orjson
from aiohttp import hdrs
from aiohttp.http import HttpVersion11
from aiohttp.web_protocol import RequestPayloadError

from relay.answers import Answers, Reply
from relay.auth import Authenticator, AuthResult
from relay.classify import Classifier, EnvelopeError, EventGroup, NotWhatsApp
from relay.config import EventType, Settings
from relay.edge import EdgeRequest
from relay.logs import RateLimitedLog
from relay.metrics import Metrics
from relay.outcomes import AuthFailure, Outcome, PublishError
from relay.publish import PublishFailed
from relay.records import Record, build_records
from relay.tracecontext import trace_headers

log = logging.getLogger("relay.webhook")

_JSON = "application/json"
_SIGNATURE = "X-Hub-Signature-256"
# aiohttp's read buffer: the most one read of a chunked body delivers.
_CHUNK_ALLOWANCE = 64 * 1024
# A body is given this long before `server.min_body_rate_bytes_per_second` applies: a round
# trip and a lost segment's retransmission on a slow link.
BODY_GRACE_SECONDS = 2.0
# Every publish failure is a 503 the sender retries; the outcome says whether Kafka was slow
# or away. They are logged where they happen, with the Kafka error's detail.
_PUBLISH_OUTCOMES: dict[PublishError, Outcome] = {
    PublishError.TIMEOUT: Outcome.PUBLISH_TIMEOUT,
    PublishError.UNAVAILABLE: Outcome.KAFKA_UNAVAILABLE,
    PublishError.TOO_LARGE: Outcome.KAFKA_UNAVAILABLE,
    PublishError.KAFKA_ERROR: Outcome.KAFKA_UNAVAILABLE,
    # With the spool on (relay.spool): a capacity bound, like the in-flight caps; a disk that
    # fails is storage unavailable, as Kafka is.
    PublishError.SPOOL_FULL: Outcome.OVERLOADED,
    PublishError.SPOOL_FAILED: Outcome.KAFKA_UNAVAILABLE,
}
_LOGGED_WHEN_PUBLISHING = frozenset(_PUBLISH_OUTCOMES.values())


class _Rejected(Exception):
    """Ends a request early with `outcome`."""

    def __init__(self, outcome: Outcome, reason: str, close: bool = False) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        # Close the connection when the body was left unread: a client that keeps sending an
        # unauthenticated or oversized body must not have it read to keep the connection.
        self.close = close


def _elements(lines: list[str]) -> list[str]:
    """The elements of a list-valued header over all its lines, in lower case; empty ones are
    not elements (RFC 9110 §5.6.1)."""
    return [e for e in (part.strip().lower() for line in lines for part in line.split(",")) if e]


def _body_failed(exc: TimeoutError | RequestPayloadError | ConnectionError) -> _Rejected:
    """How a body that did not arrive whole ends its request."""
    if isinstance(exc, TimeoutError):
        return _Rejected(Outcome.REQUEST_TIMEOUT, "body too slow", True)
    if isinstance(exc, RequestPayloadError):  # the connection layer saw its framing break
        return _Rejected(Outcome.BAD_HTTP, "malformed body framing", True)
    return _Rejected(Outcome.CLIENT_DISCONNECTED, "client went away", True)


class RecordPublisher(Protocol):
    """What the handler needs of a publisher: `relay.publish.Publisher`, with the spool on
    `relay.spool.publisher.SpoolingPublisher`, or a small fake in the broker-free tests of
    tests/edge."""

    async def publish(self, records: list[Record]) -> None:
        """Return once Kafka acknowledged every record (or, with the spool on, they are
        fsynced in it); raise `PublishFailed` otherwise."""


class WebhookHandler:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        publisher: RecordPublisher,
        authenticator: Authenticator,
    ) -> None:
        server = settings.server
        self._path = server.path
        self._max_body = server.max_body_bytes
        self._read_timeout = server.body_read_timeout_seconds
        self._min_body_rate = server.min_body_rate_bytes_per_second
        self._max_inflight = server.max_inflight_requests
        self._max_inflight_bytes = server.max_inflight_bytes
        self._answers = Answers(server.retry_after_seconds)
        # Any client can be refused at will: rate-limited, so a flood costs a bounded log.
        self._refused = RateLimitedLog(log, "request rejected", settings.log.rate_limit_seconds)
        self._handshake_refused = RateLimitedLog(
            log, "verification handshake refused", settings.log.rate_limit_seconds
        )
        # Replaced whole when the credential files change (relay.credentials); each request
        # reads it once, so it is checked against one set of credentials from start to end.
        self.authenticator = authenticator
        self._classifier = Classifier(settings.routing.fields)
        self._topics = settings.topics.names()
        self._metrics = metrics
        self._publisher = publisher
        self._inflight = 0
        self._inflight_bytes = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Set once the listener stops accepting: answer 503 and close, so keep-alive clients
        # move to another replica instead of finding their connection reset.
        self.closing = False

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def inflight_bytes(self) -> int:
        return self._inflight_bytes

    async def wait_idle(self) -> None:
        """Return once no webhook request is in flight."""
        await self._idle.wait()

    async def __call__(self, request: EdgeRequest) -> Reply:
        started = time.perf_counter()
        request_id = request.request_id
        response: Reply
        if request.path != self._path:
            outcome = Outcome.NOT_FOUND
            response = self._answers.response(outcome, request_id)
        elif request.method == "POST":
            outcome, response = await self._post(request, request_id)
        elif request.method in ("GET", "HEAD"):
            outcome, response = self._verify(request, request_id)
        else:
            outcome = Outcome.METHOD_NOT_ALLOWED
            response = self._answers.response(outcome, request_id)
        self._metrics.requests[outcome].inc()
        self._metrics.request_duration[outcome].observe(time.perf_counter() - started)
        return response

    # -- GET: Meta's verification handshake -------------------------------------------------

    def _verify(self, request: EdgeRequest, request_id: str) -> tuple[Outcome, Reply]:
        query = request.query
        token = query.get("hub.verify_token")
        challenge = query.get("hub.challenge")
        if (
            query.get("hub.mode") == "subscribe"
            and token is not None
            and challenge is not None
            and self.authenticator.check_verify_token(token)
        ):
            return Outcome.VERIFIED, self._answers.challenge(challenge, request_id)
        self._handshake_refused.info(
            Outcome.VERIFY_REJECTED, "wrong or no verify token", request_id=request_id
        )
        return Outcome.VERIFY_REJECTED, self._answers.response(Outcome.VERIFY_REJECTED, request_id)

    # -- POST: the webhook ------------------------------------------------------------------

    async def _post(self, request: EdgeRequest, request_id: str) -> tuple[Outcome, Reply]:
        received_at = time.time()
        if self.closing:
            return self._reject(request_id, _Rejected(Outcome.SHUTTING_DOWN, "shutting down", True))
        if self._inflight >= self._max_inflight:
            return self._reject(
                request_id, _Rejected(Outcome.OVERLOADED, "in-flight cap reached", True)
            )
        self._inflight += 1
        self._idle.clear()
        try:
            outcome = await self._accept(request, request_id, received_at, self.authenticator)
            return outcome, self._answers.response(outcome, request_id)
        except _Rejected as rejected:
            return self._reject(request_id, rejected)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _accept(
        self, request: EdgeRequest, request_id: str, received_at: float, auth: Authenticator
    ) -> Outcome:
        credentials = self._check_head(request, auth)
        content = request.content
        if request.content_length is not None and content.is_eof():
            # The whole body came with the head (the usual case for webhooks): take it as it is,
            # with no coroutine and no timer on the hot path. (Or it ended early: the error.)
            try:
                body = content.read_nowait()
            except (RequestPayloadError, ConnectionError) as exc:
                raise _body_failed(exc) from None
            self._reserve(len(body), held=0)
        else:
            body = await self._receive_body(request)
        self._metrics.request_body_bytes.observe(len(body))
        try:
            signature = request.headers.get(_SIGNATURE)  # one at most (`_check_head`)
            if auth.needs_signature:
                credentials += self._authenticated(auth.check_signature(signature, body))
            groups = self._classify(body)
            records = build_records(
                body,
                groups,
                self._topics,
                request_id=request_id,
                received_at=received_at,
                signature=signature,
                trace=trace_headers(request.headers),
            )
            await self._publish(records, request_id)
        finally:
            self._inflight_bytes -= len(body)
        self._count_accepted(groups, credentials)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "accepted",
                extra={"request_id": request_id, "records": [g.event_type.value for g in groups]},
            )
        return Outcome.ACCEPTED

    def _check_head(self, request: EdgeRequest, auth: Authenticator) -> tuple[str, ...]:
        """Everything decided before a body byte is read; the credentials that matched."""
        headers = request.headers
        credentials: tuple[str, ...] = ()
        if auth.needs_bearer:
            # Two Authorization headers are two answers to "who is this": a proxy in front and
            # the relay could each believe another one. Neither counts.
            authorization = headers.getall(hdrs.AUTHORIZATION, ())
            credentials = self._authenticated(auth.check_bearer(authorization), close=True)
        if len(headers.getall(_SIGNATURE, ())) > 1:
            raise self._unauthorized(AuthFailure.MALFORMED_HEADER, close=True)
        length = request.content_length
        if length is not None and length > self._max_body:
            raise _Rejected(Outcome.PAYLOAD_TOO_LARGE, "content-length above limit", True)
        if request.content_type != _JSON:
            raise _Rejected(Outcome.UNSUPPORTED_MEDIA_TYPE, "content type is not JSON", True)
        # These three are lists, and a list may come in several header lines (RFC 9110 §5.3):
        # every element of every line counts.
        framing = headers.getall(hdrs.TRANSFER_ENCODING, ())
        if framing and _elements(framing) != ["chunked"]:
            # aiohttp's parser accepts `gzip, chunked`; with inflating off, the coded bytes
            # would be the body.
            raise _Rejected(Outcome.BAD_HTTP, "transfer coding other than chunked", True)
        encodings = headers.getall(hdrs.CONTENT_ENCODING, ())
        if encodings and any(coding != "identity" for coding in _elements(encodings)):
            # Neither Meta nor the gateway compresses; inflating would break the byte-for-byte
            # value and let a small body become a large one.
            raise _Rejected(Outcome.UNSUPPORTED_MEDIA_TYPE, "content encoding not accepted", True)
        expectations = headers.getall(hdrs.EXPECT, ())
        if (
            expectations
            and request.version >= HttpVersion11
            and any(expectation != "100-continue" for expectation in _elements(expectations))
        ):
            raise _Rejected(Outcome.EXPECTATION_FAILED, "unknown expectation", True)
        return credentials

    async def _receive_body(self, request: EdgeRequest) -> bytes:
        """A body still arriving, counted in the in-flight bytes as it comes (the caller
        releases it), within the time and pace the configuration allows.

        Memory is reserved for bytes received, never for bytes announced: an upload that
        announces 4 MiB and stalls holds nothing, so stalled uploads cannot starve the rest.
        """
        content = request.content
        length = request.content_length
        if request.version >= HttpVersion11 and request.headers.get(hdrs.EXPECT) is not None:
            # Only a 100-continue expectation gets this far (`_check_head`); everything that
            # could refuse the body before it is sent already has.
            await request.send_continue()
        loop = asyncio.get_running_loop()
        started = loop.time()
        latest = started + self._read_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(self._body_deadline(started, latest, length, 0)) as limit:
                async for chunk in content.iter_any():
                    if size + len(chunk) > self._max_body:
                        raise _Rejected(Outcome.PAYLOAD_TOO_LARGE, "body above limit", True)
                    self._reserve(len(chunk), held=size)
                    size += len(chunk)
                    chunks.append(chunk)
                    if length is None:
                        limit.reschedule(self._body_deadline(started, latest, None, size))
        except (TimeoutError, RequestPayloadError, ConnectionError) as exc:
            self._inflight_bytes -= size
            raise _body_failed(exc) from None
        except BaseException:
            self._inflight_bytes -= size
            raise
        return b"".join(chunks)

    def _body_deadline(self, started: float, latest: float, length: int | None, size: int) -> float:
        # A chunked body of unknown length must keep the rate for what has come so far plus
        # one more read buffer's worth.
        expected = length if length is not None else size + _CHUNK_ALLOWANCE
        return min(latest, started + BODY_GRACE_SECONDS + expected / self._min_body_rate)

    def _reserve(self, size: int, *, held: int) -> None:
        # One body alone may exceed the budget (it is bounded by max_body_bytes).
        if self._inflight_bytes > held and self._inflight_bytes + size > self._max_inflight_bytes:
            raise _Rejected(Outcome.OVERLOADED, "in-flight bytes cap reached", True)
        self._inflight_bytes += size

    def _classify(self, body: bytes) -> list[EventGroup]:
        try:
            return self._classifier.classify(orjson.loads(body))
        except orjson.JSONDecodeError:
            raise _Rejected(Outcome.BAD_REQUEST, "body is not JSON") from None
        except EnvelopeError as exc:
            raise _Rejected(Outcome.BAD_REQUEST, str(exc)) from None
        except NotWhatsApp as exc:
            raise _Rejected(Outcome.NOT_WHATSAPP, str(exc)) from None

    async def _publish(self, records: list[Record], request_id: str) -> None:
        try:
            await self._publisher.publish(records)
        except PublishFailed as failed:
            for record in records:
                self._metrics.publish_errors[record.event_type, failed.error].inc()
            outcome = _PUBLISH_OUTCOMES[failed.error]
            log.warning(
                "publish failed",
                extra={"request_id": request_id, "outcome": outcome.value, "reason": str(failed)},
            )
            raise _Rejected(outcome, str(failed)) from None

    def _count_accepted(self, groups: list[EventGroup], credentials: tuple[str, ...]) -> None:
        for label in credentials:
            self._metrics.auth_success[label].inc()
        for group in groups:
            self._metrics.records_published[group.event_type].inc()
            if group.event_type is EventType.UNROUTED:
                for name in group.fields or ("",):
                    self._metrics.count_unrouted(name)

    # -- answers ----------------------------------------------------------------------------

    def _authenticated(self, result: AuthResult, *, close: bool = False) -> tuple[str, ...]:
        if result.failure is not None:
            raise self._unauthorized(result.failure, close=close)
        return result.credentials

    def _unauthorized(self, failure: AuthFailure, *, close: bool = False) -> _Rejected:
        self._metrics.auth_failures[failure].inc()
        return _Rejected(Outcome.UNAUTHORIZED, failure.value, close)

    def _reject(self, request_id: str, rejected: _Rejected) -> tuple[Outcome, Reply]:
        if rejected.outcome not in _LOGGED_WHEN_PUBLISHING:
            self._refused.info(rejected.outcome, rejected.reason, request_id=request_id)
        return rejected.outcome, self._answers.response(
            rejected.outcome, request_id, close=rejected.close
        )
