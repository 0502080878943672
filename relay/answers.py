"""Every answer the relay shapes, made in one place: the status of its outcome, the body
`{"status": "<outcome>"}`, `X-Request-Id`, and what the outcome needs besides (`Retry-After` on a
503, `Allow` on the 405).

Three writers use it, so their answers cannot drift apart: the webhook handler, the connection
layer's answer to a handler that failed (`EdgeProtocol.handle_error`), both as an `Answer` that
aiohttp's request loop writes, and the connection layer's answers where no request reached a
handler (malformed HTTP, a head too large or too slow, the connection cap), written straight to
the socket (`raw`). The one answer that carries something else is the handshake's challenge
(`challenge`, an aiohttp response).
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.web_request import BaseRequest

from relay.outcomes import BODIES, STATUS, Outcome

_JSON = "application/json"
# The webhook path's methods: the 405's `Allow`.
ALLOWED_METHODS = "GET, POST"


class _Date:
    """The `Date` header's value (RFC 9110 §6.6.1: an origin server with a clock sends it),
    formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


_date = _Date()


class Answer:
    """One of the relay's answers, written whole in one write of pre-built bytes.

    aiohttp's own response takes a dozen steps to write the same few lines (copy the headers,
    add `Date` and `Server`, work out the length and the connection, serialise, write), about a
    twentieth of what the relay spends on a webhook. To aiohttp's request loop this is a
    response all the same: it calls `prepare()`, then `write_eof()`, and reads `keep_alive`
    after; `relay/edge_check.py` drives that loop at every start and refuses an aiohttp that
    does otherwise. `status` and `body_length` are what the access log reads.
    """

    __slots__ = ("_body", "_close", "_fixed", "_request_id", "body_length", "keep_alive", "status")

    def __init__(
        self, status: int, fixed: bytes, body: bytes, request_id: str, close: bool
    ) -> None:
        self.status = status
        self._fixed = fixed  # the header lines the outcome always has
        self._body = body
        self._request_id = request_id
        self._close = close
        self.keep_alive = not close
        self.body_length = 0

    def force_close(self) -> None:
        self._close = True
        self.keep_alive = False

    async def prepare(self, request: BaseRequest) -> None:
        # The connection stays open as the request asks (HTTP/1.0 only with keep-alive), as
        # aiohttp's own responses decide it.
        keep_alive = not self._close and request.keep_alive
        version = request.version
        if version == HttpVersion11:
            connection = b"" if keep_alive else _CLOSE
            status_line = _STATUS_LINES[self.status]
        else:
            connection = b"Connection: keep-alive\r\n" if keep_alive else b""
            status_line = _status_line(version.major, version.minor, self.status)
        body = b"" if request.method == "HEAD" else self._body
        data = _written(status_line, self._fixed, self._request_id, connection, body)
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection closed before its answer")
        request.writer.output_size += len(data)  # what tells a failure after it that it began
        # The connection layer notes that the answer began (relay.edge.EdgeRequest).
        begins = getattr(request, "answer_begins", None)
        if begins is not None:
            begins()
        transport.write(data)
        self.keep_alive = keep_alive
        self.body_length = len(body)

    async def write_eof(self) -> None:
        """Written whole by prepare()."""


# What a handler of the relay returns: one of its answers, or aiohttp's response (the
# handshake's challenge, the admin listener's pages).
Reply = web.StreamResponse | Answer


class Answers:
    def __init__(self, retry_after: int) -> None:
        self._headers = {o: _headers(o, retry_after) for o in Outcome}
        self._fixed = {
            o: "".join(
                f"{name}: {value}\r\n"
                for name, value in (*headers.items(), ("Content-Length", len(BODIES[o])))
            ).encode()
            for o, headers in self._headers.items()
        }

    def response(self, outcome: Outcome, request_id: str, *, close: bool = False) -> Answer:
        """The answer for `outcome`; `close` ends the connection after it."""
        return Answer(STATUS[outcome], self._fixed[outcome], BODIES[outcome], request_id, close)

    def challenge(self, challenge: str, request_id: str) -> web.Response:
        """The verification handshake's answer: Meta's challenge back, as plain text."""
        response = web.Response(text=challenge, content_type="text/plain")
        response.headers["X-Request-Id"] = request_id
        return response

    def raw(self, outcome: Outcome, request_id: str, *, status: int | None = None) -> bytes:
        """The same answer as bytes for the socket, closing the connection; `status` replaces
        the outcome's (431 for a `bad_http` head that is too large)."""
        code = STATUS[outcome] if status is None else status
        return _written(
            _status_line(1, 1, code), self._fixed[outcome], request_id, _CLOSE, BODIES[outcome]
        )


def _headers(outcome: Outcome, retry_after: int) -> dict[str, str]:
    headers = {"Content-Type": _JSON}
    if STATUS[outcome] == 503:
        headers["Retry-After"] = str(retry_after)
    if outcome is Outcome.METHOD_NOT_ALLOWED:
        headers["Allow"] = ALLOWED_METHODS
    return headers


def _status_line(major: int, minor: int, status: int) -> bytes:
    return f"HTTP/{major}.{minor} {status} {HTTPStatus(status).phrase}\r\n".encode()


_STATUS_LINES = {status: _status_line(1, 1, status) for status in set(STATUS.values())}

_CLOSE = b"Connection: close\r\n"


def _written(
    status_line: bytes, fixed: bytes, request_id: str, connection: bytes, body: bytes
) -> bytes:
    """An answer as it goes on the wire."""
    return b"".join(
        (
            status_line,
            fixed,
            b"Date: ",
            _date(),
            b"\r\nX-Request-Id: ",
            request_id.encode(),
            b"\r\n",
            connection,
            b"\r\n",
            body,
        )
    )
