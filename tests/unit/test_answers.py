"""Every answer the relay shapes comes from one table: the same status, body and headers whether
aiohttp writes it (the webhook handler, a handler that failed) or the connection layer writes it
to the socket (no request reached a handler)."""

from __future__ import annotations

import orjson
import pytest

from relay.answers import Answers
from relay.outcomes import STATUS, Outcome

ANSWERS = Answers(retry_after=7)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_raw_answer_is_the_response_written_out(outcome: Outcome) -> None:
    response = ANSWERS.response(outcome, "req-1", close=True)
    head, _, body = ANSWERS.raw(outcome, "req-1").partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name: value for name, _, value in (line.partition(": ") for line in lines)}
    assert status_line.startswith(f"HTTP/1.1 {STATUS[outcome]} ")
    assert response.status == STATUS[outcome]
    assert body == response.body == orjson.dumps({"status": outcome.value})
    assert headers == {
        **response.headers,
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    assert not response.keep_alive


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_answer_names_its_request_and_what_its_status_needs(outcome: Outcome) -> None:
    headers = ANSWERS.response(outcome, "req-2").headers
    assert headers["X-Request-Id"] == "req-2"
    assert headers["Content-Type"] == "application/json"
    assert headers.get("Retry-After") == ("7" if STATUS[outcome] == 503 else None)
    assert headers.get("Allow") == ("GET, POST" if STATUS[outcome] == 405 else None)


def test_a_head_too_large_is_bad_http_with_its_own_status() -> None:
    raw = ANSWERS.raw(Outcome.BAD_HTTP, "req-3", status=431)
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert raw.endswith(b'{"status":"bad_http"}')


def test_the_challenge_is_plain_text_with_the_request_id() -> None:
    response = ANSWERS.challenge("1158201444", "req-4")
    assert response.text == "1158201444"
    assert response.content_type == "text/plain"
    assert response.headers["X-Request-Id"] == "req-4"
