"""Every answer of the HTTP contract, without a broker: the webhook handler behind the real
connection layer on a loopback port, publishing into a small fake. The same contract is tested
end to end against a real broker in tests/integration; this matrix is the quick, complete one."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from devsupport import samples
from devsupport.ports import LOOPBACK
from relay import config
from relay.auth import Authenticator
from relay.edge import EdgeLimits, EdgeServer
from relay.metrics import Metrics
from relay.outcomes import STATUS, Outcome, PublishError
from relay.publish import PublishFailed
from relay.records import Record
from relay.webhook import WebhookHandler

TOKEN = "unit-token-0123456789"
SECRET = "unit-app-secret-0123456789"
VERIFY = "unit-verify-token"
BODY = samples.body(samples.envelope(samples.status_change()))


@dataclass
class FakePublisher:
    """Keeps what it is given, or fails as told."""

    failure: BaseException | None = None
    published: list[Record] = field(default_factory=list)

    async def publish(self, records: list[Record]) -> None:
        if self.failure is not None:
            raise self.failure
        self.published.extend(records)


@dataclass
class Relay:
    port: int
    handler: WebhookHandler
    metrics: Metrics
    publisher: FakePublisher

    def count(self, outcome: Outcome) -> float:
        return self.metrics.requests[outcome].value


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.ServerRunner] = []

    async def start_relay(publisher: FakePublisher | None = None, **env: str) -> Relay:
        settings = config.parse(
            None,
            {
                "RELAY_AUTH__BEARER_TOKENS": f'["{TOKEN}"]',
                "RELAY_AUTH__VERIFY_TOKEN": VERIFY,
                "RELAY_SERVER__BODY_READ_TIMEOUT_SECONDS": "0.5",
                **env,
            },
        )
        authenticator = Authenticator.of(settings.auth)
        metrics = Metrics("test", credentials=authenticator.labels)
        fake = publisher or FakePublisher()
        handler = WebhookHandler(settings, metrics, fake, authenticator)
        runner = web.ServerRunner(
            EdgeServer(handler, EdgeLimits.of(settings.server), metrics), handle_signals=False
        )
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        runners.append(runner)
        return Relay(site._server.sockets[0].getsockname()[1], handler, metrics, fake)  # type: ignore[union-attr]

    yield start_relay
    for runner in runners:
        await runner.cleanup()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def send(port: int, raw: bytes, *, then: bytes = b"", after: float = 0.0) -> Answer:
    """Send raw bytes (and `then`, `after` seconds later) and parse the one answer."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(raw)
        if then:
            await asyncio.sleep(after)
            writer.write(then)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *lines = head.decode().split("\r\n")
        headers = {
            k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
        }
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
        return Answer(int(status_line.split()[1]), headers, body)
    finally:
        writer.close()


def post(
    *lines: str, body: bytes = BODY, token: str | None = TOKEN, length: int | None = None
) -> bytes:
    head = ["POST /webhook HTTP/1.1", "Host: relay"]
    if not any(line.lower().startswith("content-type") for line in lines):
        head.append("Content-Type: application/json")
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join([*head, *lines]) + "\r\n\r\n").encode() + body


def sign(body: bytes) -> str:
    return (
        "X-Hub-Signature-256: sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    )


NOT_WHATSAPP = orjson.dumps({"object": "page", "entry": []})
TOO_LONG_ID = samples.body(samples.envelope(samples.status_change(), waba_id="9" * 300))

# (case, outcome, raw request, relay settings, publisher failure)
CASES: list[tuple[str, Outcome, bytes, dict[str, str], BaseException | None]] = [
    ("accepted", Outcome.ACCEPTED, post(), {}, None),
    ("handshake", Outcome.VERIFIED,
     f"GET /webhook?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=42 HTTP/1.1\r\n"
     "Host: relay\r\n\r\n".encode(), {}, None),
    ("handshake, wrong token", Outcome.VERIFY_REJECTED,
     b"GET /webhook?hub.mode=subscribe&hub.verify_token=no&hub.challenge=42 HTTP/1.1\r\n"
     b"Host: relay\r\n\r\n",
     {}, None),
    ("not JSON", Outcome.BAD_REQUEST, post(body=b"{nope"), {}, None),
    ("no entry list", Outcome.BAD_REQUEST,
     post(body=b'{"object": "whatsapp_business_account"}'), {}, None),
    ("an id past the record bounds", Outcome.BAD_REQUEST, post(body=TOO_LONG_ID), {}, None),
    ("no Host header", Outcome.BAD_HTTP, b"POST /webhook HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
     {}, None),
    ("malformed header", Outcome.BAD_HTTP,
     b"POST /webhook HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n", {}, None),
    ("transfer coding", Outcome.BAD_HTTP, post("Transfer-Encoding: gzip, chunked"), {}, None),
    ("transfer coding on a second line", Outcome.BAD_HTTP,
     post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), {}, None),
    ("no token", Outcome.UNAUTHORIZED, post(token=None), {}, None),
    ("wrong token", Outcome.UNAUTHORIZED, post(token="wrong-token-0123456789"), {}, None),
    ("two tokens", Outcome.UNAUTHORIZED, post(f"Authorization: Bearer {TOKEN}"), {}, None),
    ("wrong signature", Outcome.UNAUTHORIZED,
     post("X-Hub-Signature-256: sha256=" + "0" * 64, token=None),
     {"RELAY_AUTH__BEARER_TOKENS": "[]", "RELAY_AUTH__APP_SECRETS": f'["{SECRET}"]'}, None),
    ("other path", Outcome.NOT_FOUND,
     b"POST /elsewhere HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n", {}, None),
    ("other object", Outcome.NOT_WHATSAPP, post(body=NOT_WHATSAPP), {}, None),
    ("other method", Outcome.METHOD_NOT_ALLOWED,
     b"PUT /webhook HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n", {}, None),
    ("stalled body", Outcome.REQUEST_TIMEOUT, post(length=len(BODY) + 10), {}, None),
    ("too large", Outcome.PAYLOAD_TOO_LARGE, post(body=b"", length=5_000_000), {}, None),
    ("not JSON content type", Outcome.UNSUPPORTED_MEDIA_TYPE, post("Content-Type: text/plain"),
     {}, None),
    ("compressed", Outcome.UNSUPPORTED_MEDIA_TYPE, post("Content-Encoding: gzip"), {}, None),
    ("compressed, said on a second line", Outcome.UNSUPPORTED_MEDIA_TYPE,
     post("Content-Encoding: identity", "Content-Encoding: gzip"), {}, None),
    ("unknown expectation", Outcome.EXPECTATION_FAILED, post("Expect: magic"), {}, None),
    ("unknown expectation on a second line", Outcome.EXPECTATION_FAILED,
     post("Expect: 100-continue", "Expect: magic"), {}, None),
    ("a bug", Outcome.INTERNAL_ERROR, post(), {}, RuntimeError("boom")),
    ("publish timeout", Outcome.PUBLISH_TIMEOUT, post(), {},
     PublishFailed(PublishError.TIMEOUT, "no ack")),
    ("kafka down", Outcome.KAFKA_UNAVAILABLE, post(), {},
     PublishFailed(PublishError.UNAVAILABLE, "down")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "raw", "env", "failure"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_every_answer_of_the_contract(
    start: Callable[..., Any],
    outcome: Outcome,
    raw: bytes,
    env: dict[str, str],
    failure: BaseException | None,
) -> None:
    relay: Relay = await start(FakePublisher(failure), **env)
    answer = await send(relay.port, raw)
    assert answer.status == STATUS[outcome]
    assert answer.headers["x-request-id"]
    assert "server" not in answer.headers
    if outcome is Outcome.VERIFIED:
        assert answer.body == b"42"
    else:
        assert orjson.loads(answer.body) == {"status": outcome.value}
    if STATUS[outcome] == 503:
        assert answer.headers["retry-after"] == "5"
    if outcome is Outcome.METHOD_NOT_ALLOWED:
        assert answer.headers["allow"] == "GET, POST"
    assert relay.count(outcome) == 1
    assert len(relay.publisher.published) == (1 if outcome is Outcome.ACCEPTED else 0)


async def test_overloaded_and_shutting_down(start: Callable[..., Any]) -> None:
    relay: Relay = await start(RELAY_SERVER__MAX_INFLIGHT_REQUESTS="1")
    reader, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    writer.write(post(length=len(BODY) + 10))  # holds the only slot while its body stalls
    async with asyncio.timeout(5):
        while relay.handler.inflight < 1:
            await asyncio.sleep(0.01)
    overloaded = await send(relay.port, post())
    assert overloaded.status == 503
    assert overloaded.headers["retry-after"] == "5"
    assert relay.count(Outcome.OVERLOADED) == 1
    writer.close()
    async with asyncio.timeout(5):  # the stalled request times out and frees its slot
        while relay.handler.inflight:
            await asyncio.sleep(0.01)
    relay.handler.closing = True
    shutting_down = await send(relay.port, post())
    assert shutting_down.status == 503
    assert shutting_down.headers["retry-after"] == "5"
    assert relay.count(Outcome.SHUTTING_DOWN) == 1
    del reader


async def test_a_head_above_max_header_bytes_is_431(start: Callable[..., Any]) -> None:
    # The matrix above expects STATUS[outcome] (400 for bad_http); this one bad_http is a 431
    # (docs/design.md §3).
    relay: Relay = await start(RELAY_SERVER__MAX_HEADER_BYTES="4096")
    answer = await send(relay.port, post("X-Pad: " + "a" * 5000))
    assert answer.status == 431
    assert answer.headers["x-request-id"]
    assert "server" not in answer.headers
    assert orjson.loads(answer.body) == {"status": "bad_http"}
    assert relay.count(Outcome.BAD_HTTP) == 1
    assert relay.publisher.published == []


async def test_a_client_leaving_mid_body_is_counted(start: Callable[..., Any]) -> None:
    relay: Relay = await start()
    _, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    writer.write(post(length=len(BODY) + 10))
    await asyncio.sleep(0.05)
    writer.close()
    async with asyncio.timeout(2):
        while relay.count(Outcome.CLIENT_DISCONNECTED) == 0:
            await asyncio.sleep(0.01)


async def test_a_signed_request_and_the_record_it_makes(start: Callable[..., Any]) -> None:
    env = {"RELAY_AUTH__BEARER_TOKENS": "[]", "RELAY_AUTH__APP_SECRETS": f'["{SECRET}"]'}
    relay: Relay = await start(**env)
    answer = await send(relay.port, post(sign(BODY), token=None))
    assert answer.status == 200
    [record] = relay.publisher.published
    assert record.value == BODY
    assert dict(record.headers)["x-hub-signature-256"] == sign(BODY).split(": ")[1].encode()


async def test_expect_continue_comes_before_the_body(start: Callable[..., Any]) -> None:
    relay: Relay = await start()
    reader, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    writer.write(post("Expect: 100-continue", body=b"", length=len(BODY)))
    assert (
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(BODY)
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert final.startswith(b"HTTP/1.1 200 ")
    writer.close()


def test_the_matrix_covers_every_outcome() -> None:
    covered = {case[1] for case in CASES} | {
        Outcome.OVERLOADED,
        Outcome.SHUTTING_DOWN,
        Outcome.CLIENT_DISCONNECTED,
    }
    assert covered == set(Outcome)


async def test_a_handler_that_fails_answers_500_with_the_requests_own_id(
    start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    relay: Relay = await start(FakePublisher(RuntimeError("boom")))
    answer = await send(relay.port, post("X-Request-Id: sender-id-1"))
    assert answer.status == 500
    assert answer.headers["x-request-id"] == "sender-id-1"
    assert orjson.loads(answer.body) == {"status": "internal_error"}
    [failed] = [r for r in caplog.records if r.getMessage() == "request handler failed"]
    assert failed.request_id == "sender-id-1"  # type: ignore[attr-defined]
    assert failed.outcome == "internal_error"  # type: ignore[attr-defined]


async def test_malformed_http_is_logged_with_the_id_of_its_answer(
    start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    relay: Relay = await start()
    caplog.set_level("INFO", "relay.edge")
    answer = await send(relay.port, b"POST /webhook HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n")
    assert answer.status == 400
    [line] = [r for r in caplog.records if r.getMessage() == "malformed HTTP"]
    assert line.request_id == answer.headers["x-request-id"]  # type: ignore[attr-defined]


async def test_a_failure_after_100_continue_still_gets_its_final_answer(
    start: Callable[..., Any],
) -> None:
    relay: Relay = await start(FakePublisher(RuntimeError("boom")))
    reader, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    try:
        writer.write(
            post("Expect: 100-continue", "X-Request-Id: mine-2", body=b"", length=len(BODY))
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(BODY)
        final = await asyncio.wait_for(reader.read(), 2)  # until the relay closes
    finally:
        writer.close()
    head, _, body = final.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")
    assert b"\r\nX-Request-Id: mine-2\r\n" in head + b"\r\n"
    assert orjson.loads(body) == {"status": "internal_error"}
    assert relay.count(Outcome.INTERNAL_ERROR) == 1
