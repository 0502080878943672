"""The public listener: Meta's GET handshake and the authenticated webhook POST.

It runs on aiohttp's low-level server: one handler sees every request, so every answer
(404 and 405 included) carries `X-Request-Id` and is counted, and no router or middleware
chain sits on the hot path. Checks run cheapest first, and nothing unauthenticated is read.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time

import orjson
from aiohttp import web

from relay.auth import Authenticator
from relay.classify import Classifier, EnvelopeError, NotWhatsApp
from relay.config import EventType, Settings
from relay.metrics import AuthFailure, Metrics, Outcome
from relay.publish import Publisher, PublishFailed, Readiness
from relay.records import build_records

log = logging.getLogger("relay.webhook")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_JSON = "application/json"
_STATUS: dict[Outcome, int] = {
    Outcome.ACCEPTED: 200,
    Outcome.VERIFIED: 200,
    Outcome.BAD_REQUEST: 400,
    Outcome.UNAUTHORIZED: 401,
    Outcome.VERIFY_REJECTED: 403,
    Outcome.NOT_FOUND: 404,
    Outcome.NOT_WHATSAPP: 404,
    Outcome.METHOD_NOT_ALLOWED: 405,
    Outcome.REQUEST_TIMEOUT: 408,
    Outcome.PAYLOAD_TOO_LARGE: 413,
    Outcome.UNSUPPORTED_MEDIA_TYPE: 415,
    Outcome.OVERLOADED: 503,
    Outcome.PUBLISH_TIMEOUT: 503,
    Outcome.KAFKA_UNAVAILABLE: 503,
    Outcome.SHUTTING_DOWN: 503,
}
_BODIES = {o: orjson.dumps({"status": o.value}) for o in Outcome}
# Publish failures are logged where they happen, with the Kafka error's detail.
_LOGGED_WHEN_PUBLISHING = frozenset({Outcome.PUBLISH_TIMEOUT, Outcome.KAFKA_UNAVAILABLE})


class _Rejected(Exception):
    """Ends a request early with `outcome`."""

    def __init__(self, outcome: Outcome, reason: str, close: bool = False) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        # Close the connection when the body was left unread: a client that keeps sending an
        # unauthenticated or oversized body must not have it read to keep the connection.
        self.close = close


class WebhookHandler:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        publisher: Publisher,
        readiness: Readiness,
    ) -> None:
        server = settings.server
        self._path = server.path
        self._max_body = server.max_body_bytes
        self._read_timeout = server.body_read_timeout_seconds
        self._max_inflight = server.max_inflight_requests
        self._max_inflight_bytes = server.max_inflight_bytes
        self._retry_after = str(server.retry_after_seconds)
        self._verify_token = (
            settings.auth.verify_token.encode() if settings.auth.verify_token else None
        )
        self._auth = Authenticator(settings.auth.bearer_tokens, settings.auth.app_secrets)
        self._classifier = Classifier(settings.routing.fields)
        self._topics = settings.topics.names()
        self._metrics = metrics
        self._publisher = publisher
        self._readiness = readiness
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

    async def wait_idle(self) -> None:
        """Return once no webhook request is in flight."""
        await self._idle.wait()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = _request_id(request)
        if request.path != self._path:
            outcome = Outcome.NOT_FOUND
            response = self._answer(outcome)
        elif request.method == "POST":
            outcome, response = await self._post(request, request_id)
        elif request.method in ("GET", "HEAD"):
            outcome, response = self._verify(request, request_id)
        else:
            outcome = Outcome.METHOD_NOT_ALLOWED
            response = self._answer(outcome)
            response.headers["Allow"] = "GET, POST"
        response.headers["X-Request-Id"] = request_id
        self._metrics.requests[outcome].inc()
        self._metrics.request_duration[outcome].observe(time.perf_counter() - started)
        return response

    # -- GET: Meta's verification handshake -------------------------------------------------

    def _verify(self, request: web.BaseRequest, request_id: str) -> tuple[Outcome, web.Response]:
        query = request.query
        token = query.get("hub.verify_token")
        challenge = query.get("hub.challenge")
        if (
            self._verify_token is not None
            and query.get("hub.mode") == "subscribe"
            and token is not None
            and challenge is not None
            and _compare(token, self._verify_token)
        ):
            return Outcome.VERIFIED, web.Response(text=challenge, content_type="text/plain")
        log.info(
            "verification handshake refused",
            extra={"request_id": request_id, "outcome": Outcome.VERIFY_REJECTED.value},
        )
        return Outcome.VERIFY_REJECTED, self._answer(Outcome.VERIFY_REJECTED)

    # -- POST: the webhook ------------------------------------------------------------------

    async def _post(
        self, request: web.BaseRequest, request_id: str
    ) -> tuple[Outcome, web.Response]:
        received_at = time.time()
        if self.closing:
            return self._reject(request_id, _Rejected(Outcome.SHUTTING_DOWN, "shutting down", True))
        # A body of unknown length (chunked) may grow to the limit: budget for that.
        length = request.content_length
        reserved = self._max_body if length is None else min(length, self._max_body)
        if self._inflight >= self._max_inflight or (
            self._inflight and self._inflight_bytes + reserved > self._max_inflight_bytes
        ):
            return self._reject(
                request_id, _Rejected(Outcome.OVERLOADED, "in-flight cap reached", True)
            )
        self._inflight += 1
        self._inflight_bytes += reserved
        self._idle.clear()
        try:
            outcome = await self._accept(request, request_id, received_at, length)
            return outcome, self._answer(outcome)
        except _Rejected as rejected:
            return self._reject(request_id, rejected)
        finally:
            self._inflight -= 1
            self._inflight_bytes -= reserved
            if not self._inflight:
                self._idle.set()

    async def _accept(
        self, request: web.BaseRequest, request_id: str, received_at: float, length: int | None
    ) -> Outcome:
        credentials: tuple[str, ...] = ()
        if self._auth.needs_bearer:
            result = self._auth.check_bearer(request.headers.get("Authorization"))
            if result.failure is not None:
                raise self._unauthorized(result.failure, close=True)
            credentials = result.credentials

        if length is not None and length > self._max_body:
            raise _Rejected(Outcome.PAYLOAD_TOO_LARGE, "content-length above limit", True)
        if request.content_type != _JSON:
            raise _Rejected(Outcome.UNSUPPORTED_MEDIA_TYPE, "content type is not JSON", True)

        body = await self._read_body(request, length)
        self._metrics.request_body_bytes.observe(len(body))

        signature = request.headers.get("X-Hub-Signature-256")
        if self._auth.needs_signature:
            result = self._auth.check_signature(signature, body)
            if result.failure is not None:
                raise self._unauthorized(result.failure)
            credentials += result.credentials

        try:
            groups = self._classifier.classify(orjson.loads(body))
        except orjson.JSONDecodeError:
            raise _Rejected(Outcome.BAD_REQUEST, "body is not JSON") from None
        except EnvelopeError as exc:
            raise _Rejected(Outcome.BAD_REQUEST, str(exc)) from None
        except NotWhatsApp as exc:
            raise _Rejected(Outcome.NOT_WHATSAPP, str(exc)) from None
        for label in credentials:
            self._metrics.auth_success[label].inc()

        records = build_records(
            body,
            groups,
            self._topics,
            request_id=request_id,
            received_at=received_at,
            signature=signature,
        )
        try:
            await self._publisher.publish(records)
        except PublishFailed as failed:
            for record in records:
                self._metrics.publish_errors[record.event_type, failed.error].inc()
            log.warning(
                "publish failed",
                extra={"request_id": request_id, "outcome": failed.outcome.value,
                       "reason": str(failed)},
            )  # fmt: skip
            raise _Rejected(failed.outcome, str(failed)) from None
        for group in groups:
            self._metrics.records_published[group.event_type].inc()
            if group.event_type is EventType.UNROUTED:
                for name in group.fields or ("",):
                    self._metrics.count_unrouted(name)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "accepted",
                extra={"request_id": request_id, "records": [g.event_type.value for g in groups]},
            )
        return Outcome.ACCEPTED

    async def _read_body(self, request: web.BaseRequest, length: int | None) -> bytes:
        content = request.content
        if length is not None and content.is_eof():
            # The whole body came with the headers (the usual case for webhooks): nothing to
            # wait for, so no timer to arm and cancel on the hot path.
            return await content.read()
        try:
            async with asyncio.timeout(self._read_timeout):
                if length is not None:
                    # The HTTP parser never delivers more than Content-Length.
                    return await request.content.read()
                return await self._read_chunked(request)
        except TimeoutError:
            raise _Rejected(Outcome.REQUEST_TIMEOUT, "body read timed out", True) from None

    async def _read_chunked(self, request: web.BaseRequest) -> bytes:
        chunks = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self._max_body:
                raise _Rejected(Outcome.PAYLOAD_TOO_LARGE, "body above limit", True)
            chunks.append(chunk)
        return b"".join(chunks)

    # -- answers ----------------------------------------------------------------------------

    def _unauthorized(self, failure: AuthFailure, *, close: bool = False) -> _Rejected:
        self._metrics.auth_failures[failure].inc()
        return _Rejected(Outcome.UNAUTHORIZED, failure.value, close)

    def _answer(self, outcome: Outcome) -> web.Response:
        status = _STATUS[outcome]
        response = web.Response(status=status, body=_BODIES[outcome], content_type=_JSON)
        if status == 503:
            response.headers["Retry-After"] = self._retry_after
        return response

    def _reject(self, request_id: str, rejected: _Rejected) -> tuple[Outcome, web.Response]:
        if rejected.outcome not in _LOGGED_WHEN_PUBLISHING:
            log.info(
                "request rejected",
                extra={"request_id": request_id, "outcome": rejected.outcome.value,
                       "reason": rejected.reason},
            )  # fmt: skip
        response = self._answer(rejected.outcome)
        if rejected.close:
            response.force_close()
        return rejected.outcome, response


def _request_id(request: web.BaseRequest) -> str:
    given = request.headers.get("X-Request-Id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


def _compare(given: str, expected: bytes) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)
