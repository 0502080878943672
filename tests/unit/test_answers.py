"""Every answer the relay shapes comes from one table: the same status, body and headers whether
aiohttp's request loop writes it (the webhook handler, a handler that failed: an `Answer`) or
the connection layer writes it to the socket (no request reached a handler: `raw`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp.http import HttpVersion10, HttpVersion11

from relay import answers
from relay.answers import Answer, Answers
from relay.outcomes import STATUS, Outcome

ANSWERS = Answers(retry_after=7)


class Transport:
    def __init__(self, closing: bool = False) -> None:
        self.written = b""
        self.closing = closing

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing


def request(
    *, keep_alive: bool = True, version: Any = HttpVersion11, method: str = "POST"
) -> SimpleNamespace:
    """What `Answer.prepare` reads of aiohttp's request, and a note of `answer_begins`."""
    fake = SimpleNamespace(
        keep_alive=keep_alive,
        version=version,
        method=method,
        transport=Transport(),
        writer=SimpleNamespace(output_size=0),
        began=0,
    )
    fake.answer_begins = lambda: setattr(fake, "began", fake.began + 1)
    return fake


async def written(
    answer: Answer, **kwargs: Any
) -> tuple[SimpleNamespace, str, dict[str, str], bytes]:
    req = request(**kwargs)
    await answer.prepare(req)  # type: ignore[arg-type]
    await answer.write_eof()
    head, _, body = req.transport.written.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name: value for name, _, value in (line.partition(": ") for line in lines)}
    return req, status_line, headers, body


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers, "_date", lambda: b"Mon, 07 Dec 2026 23:59:59 GMT")


@pytest.mark.parametrize("outcome", list(Outcome))
async def test_the_raw_answer_is_the_answer_written_out(outcome: Outcome) -> None:
    req, _, _, _ = await written(ANSWERS.response(outcome, "req-1", close=True))
    assert req.transport.written == ANSWERS.raw(outcome, "req-1")


@pytest.mark.parametrize("outcome", list(Outcome))
async def test_every_answer_names_its_request_and_what_its_status_needs(outcome: Outcome) -> None:
    answer = ANSWERS.response(outcome, "req-2")
    req, status_line, headers, body = await written(answer)
    assert status_line.startswith(f"HTTP/1.1 {STATUS[outcome]} ")
    assert answer.status == STATUS[outcome]
    assert body == orjson.dumps({"status": outcome.value})
    assert headers["X-Request-Id"] == "req-2"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Date"] == "Mon, 07 Dec 2026 23:59:59 GMT"
    assert headers.get("Retry-After") == ("7" if STATUS[outcome] == 503 else None)
    assert headers.get("Allow") == ("GET, POST" if STATUS[outcome] == 405 else None)
    assert "Server" not in headers
    assert "Connection" not in headers  # HTTP/1.1 keeps the connection by default
    assert answer.keep_alive
    # What the connection layer and aiohttp learn of it: it began, this much was written.
    assert req.began == 1
    assert req.writer.output_size == len(req.transport.written)
    assert answer.body_length == len(body)


async def test_an_answer_that_closes_says_so_and_is_not_kept_alive() -> None:
    answer = ANSWERS.response(Outcome.UNAUTHORIZED, "req-3", close=True)
    _, _, headers, _ = await written(answer)
    assert headers["Connection"] == "close"
    assert not answer.keep_alive
    forced = ANSWERS.response(Outcome.ACCEPTED, "req-4")
    forced.force_close()
    _, _, headers, _ = await written(forced)
    assert headers["Connection"] == "close"


async def test_the_connection_stays_as_the_request_asks() -> None:
    # A request that asked to close (HTTP/1.1 `Connection: close`) gets its answer and the close.
    answer = ANSWERS.response(Outcome.ACCEPTED, "req-5")
    _, _, headers, _ = await written(answer, keep_alive=False)
    assert headers["Connection"] == "close"
    assert not answer.keep_alive
    # HTTP/1.0 closes unless asked to keep the connection, and then says so.
    kept = ANSWERS.response(Outcome.ACCEPTED, "req-6")
    _, status_line, headers, _ = await written(kept, version=HttpVersion10)
    assert status_line == "HTTP/1.0 200 OK"
    assert headers["Connection"] == "keep-alive"
    closed = ANSWERS.response(Outcome.ACCEPTED, "req-7")
    _, _, headers, _ = await written(closed, version=HttpVersion10, keep_alive=False)
    assert "Connection" not in headers
    assert not closed.keep_alive


async def test_a_head_request_gets_the_headers_only() -> None:
    answer = ANSWERS.response(Outcome.METHOD_NOT_ALLOWED, "req-8")
    _, _, headers, body = await written(answer, method="HEAD")
    assert body == b""
    assert headers["Content-Length"] == str(len(orjson.dumps({"status": "method_not_allowed"})))


async def test_a_connection_closed_before_its_answer_is_a_connection_error() -> None:
    # aiohttp's request loop takes a ConnectionError from a response as the client gone.
    req = request()
    req.transport = Transport(closing=True)
    with pytest.raises(ConnectionResetError):
        await ANSWERS.response(Outcome.ACCEPTED, "req-9").prepare(req)  # type: ignore[arg-type]
    assert req.writer.output_size == 0


def test_a_head_too_large_is_bad_http_with_its_own_status() -> None:
    raw = ANSWERS.raw(Outcome.BAD_HTTP, "req-10", status=431)
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert raw.endswith(b'{"status":"bad_http"}')


def test_the_challenge_is_plain_text_with_the_request_id() -> None:
    response = ANSWERS.challenge("1158201444", "req-11")
    assert response.text == "1158201444"
    assert response.content_type == "text/plain"
    assert response.headers["X-Request-Id"] == "req-11"
