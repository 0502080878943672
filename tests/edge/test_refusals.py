"""Every answer of the HTTP contract, without a broker: the webhook handler behind the real
connection layer on a loopback port, publishing into a small fake. The same contract is tested
end to end against a real broker in tests/integration; this matrix is the quick, complete one."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from devsupport import samples
from devsupport.ports import LOOPBACK
from relay import config
from relay.outcomes import STATUS, Outcome, PublishError
from relay.publish import PublishFailed
from tests.raw_http import exchange, expect_continue, raw_request, signature, signed
from tests.relays import APP_SECRET, TOKEN, VERIFY_TOKEN, FakePublisher, RelayUnderTest

BODY = samples.body(samples.envelope(samples.status_change()))
# A webhook POST: the builder's, with a status webhook as its body.
post = functools.partial(raw_request, body=BODY)
SIGNATURE_ONLY = {"RELAY_AUTH__BEARER_TOKENS": "[]", "RELAY_AUTH__APP_SECRETS": f'["{APP_SECRET}"]'}
Start = Callable[..., Any]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start relays without a broker (RelayUnderTest.without_broker) from environment-style
    settings; all stop at the end."""
    started: list[RelayUnderTest] = []

    async def start_without_broker(
        publisher: FakePublisher | None = None, **env: str
    ) -> RelayUnderTest:
        settings = config.parse(
            None,
            {
                "RELAY_AUTH__BEARER_TOKENS": f'["{TOKEN}"]',
                "RELAY_AUTH__VERIFY_TOKEN": VERIFY_TOKEN,
                "RELAY_SERVER__BODY_READ_TIMEOUT_SECONDS": "0.5",
                **env,
            },
        )
        relay = await RelayUnderTest.without_broker(settings, publisher or FakePublisher())
        started.append(relay)
        return relay

    yield start_without_broker
    for relay in started:
        await relay.stop()


def handshake(token: str) -> bytes:
    query = f"hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"
    return raw_request(method="GET", path=f"/webhook?{query}", token=None, length=None)


async def send(port: int, raw: bytes) -> Any:
    return await exchange(port, raw, answers=1)


NOT_WHATSAPP = orjson.dumps({"object": "page", "entry": []})
TOO_LONG_ID = samples.body(samples.envelope(samples.status_change(), waba_id="9" * 300))

# (case, outcome, raw request, relay settings, publisher failure)
CASES: list[tuple[str, Outcome, bytes, dict[str, str], BaseException | None]] = [
    ("accepted", Outcome.ACCEPTED, post(), {}, None),
    ("handshake", Outcome.VERIFIED, handshake(VERIFY_TOKEN), {}, None),
    ("handshake, wrong token", Outcome.VERIFY_REJECTED, handshake("no"), {}, None),
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
     SIGNATURE_ONLY, None),
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
    publisher = FakePublisher(failure)
    relay: RelayUnderTest = await start(publisher, **env)
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
    assert relay.outcome(outcome) == 1
    assert len(publisher.published) == (1 if outcome is Outcome.ACCEPTED else 0)


async def test_overloaded_and_shutting_down(start: Callable[..., Any]) -> None:
    relay: RelayUnderTest = await start(RELAY_SERVER__MAX_INFLIGHT_REQUESTS="1")
    handler = relay.handler
    assert handler is not None
    reader, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    writer.write(post(length=len(BODY) + 10))  # holds the only slot while its body stalls
    async with asyncio.timeout(5):
        while handler.inflight < 1:
            await asyncio.sleep(0.01)
    overloaded = await send(relay.port, post())
    assert overloaded.status == 503
    assert overloaded.headers["retry-after"] == "5"
    assert relay.outcome(Outcome.OVERLOADED) == 1
    writer.close()
    async with asyncio.timeout(5):  # the stalled request times out and frees its slot
        while handler.inflight:
            await asyncio.sleep(0.01)
    handler.closing = True
    shutting_down = await send(relay.port, post())
    assert shutting_down.status == 503
    assert shutting_down.headers["retry-after"] == "5"
    assert relay.outcome(Outcome.SHUTTING_DOWN) == 1
    del reader


async def test_a_head_above_max_header_bytes_is_431(start: Callable[..., Any]) -> None:
    # The matrix above expects STATUS[outcome] (400 for bad_http); this one bad_http is a 431
    # (docs/design.md §3).
    publisher = FakePublisher()
    relay: RelayUnderTest = await start(publisher, RELAY_SERVER__MAX_HEADER_BYTES="4096")
    answer = await send(relay.port, post("X-Pad: " + "a" * 5000))
    assert answer.status == 431
    assert answer.headers["x-request-id"]
    assert "server" not in answer.headers
    assert orjson.loads(answer.body) == {"status": "bad_http"}
    assert relay.outcome(Outcome.BAD_HTTP) == 1
    assert publisher.published == []


async def test_a_client_leaving_mid_body_is_counted(start: Callable[..., Any]) -> None:
    relay: RelayUnderTest = await start()
    _, writer = await asyncio.open_connection(LOOPBACK, relay.port)
    writer.write(post(length=len(BODY) + 10))
    await asyncio.sleep(0.05)
    writer.close()
    async with asyncio.timeout(2):
        while relay.outcome(Outcome.CLIENT_DISCONNECTED) == 0:
            await asyncio.sleep(0.01)


async def test_a_signed_request_and_the_record_it_makes(start: Callable[..., Any]) -> None:
    publisher = FakePublisher()
    relay: RelayUnderTest = await start(publisher, **SIGNATURE_ONLY)
    answer = await send(relay.port, post(signed(BODY), token=None))
    assert answer.status == 200
    [record] = publisher.published
    assert record.value == BODY
    assert dict(record.headers)["x-hub-signature-256"] == signature(BODY).encode()


async def test_expect_continue_comes_before_the_body(start: Callable[..., Any]) -> None:
    relay: RelayUnderTest = await start()
    interim, final = await expect_continue(relay.port, body=BODY)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.status == 200


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
    relay: RelayUnderTest = await start(FakePublisher(RuntimeError("boom")))
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
    relay: RelayUnderTest = await start()
    caplog.set_level("INFO", "relay.edge")
    answer = await send(relay.port, b"POST /webhook HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n")
    assert answer.status == 400
    [line] = [r for r in caplog.records if r.getMessage() == "malformed HTTP"]
    assert line.request_id == answer.headers["x-request-id"]  # type: ignore[attr-defined]


async def test_a_failure_after_100_continue_still_gets_its_final_answer(
    start: Callable[..., Any],
) -> None:
    relay: RelayUnderTest = await start(FakePublisher(RuntimeError("boom")))
    interim, final = await expect_continue(relay.port, "X-Request-Id: mine-2", body=BODY)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.status == 500
    assert final.header("X-Request-Id") == "mine-2"
    assert orjson.loads(final.body) == {"status": "internal_error"}
    assert final.header("Connection") == "close"
    assert relay.outcome(Outcome.INTERNAL_ERROR) == 1
