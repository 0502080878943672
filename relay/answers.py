"""Every answer the relay shapes, made in one place: the status of its outcome, the body
`{"status": "<outcome>"}`, `X-Request-Id`, and what the outcome needs besides (`Retry-After` on a
503, `Allow` on the 405).

Three writers use it, so their answers cannot drift apart: the webhook handler, the connection
layer's answer to a handler that failed (`EdgeProtocol.handle_error`), both as aiohttp responses,
and the connection layer's answers where no request reached a handler (malformed HTTP, a head
too large or too slow, the connection cap), written straight to the socket (`raw`). The one
answer that carries something else is the handshake's challenge (`challenge`).
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from relay.outcomes import BODIES, STATUS, Outcome

_JSON = "application/json"
# The webhook path's methods: the 405's `Allow`.
ALLOWED_METHODS = "GET, POST"


class Answers:
    def __init__(self, retry_after: int) -> None:
        self._headers = {o: _headers(o, retry_after) for o in Outcome}

    def response(self, outcome: Outcome, request_id: str, *, close: bool = False) -> web.Response:
        """The answer for `outcome`; `close` ends the connection after it."""
        # Headers from a template per outcome: aiohttp copies them, and parses no content type.
        response = web.Response(
            status=STATUS[outcome], body=BODIES[outcome], headers=self._headers[outcome]
        )
        response.headers["X-Request-Id"] = request_id
        if close:
            response.force_close()
        return response

    def challenge(self, challenge: str, request_id: str) -> web.Response:
        """The verification handshake's answer: Meta's challenge back, as plain text."""
        response = web.Response(text=challenge, content_type="text/plain")
        response.headers["X-Request-Id"] = request_id
        return response

    def raw(self, outcome: Outcome, request_id: str, *, status: int | None = None) -> bytes:
        """The same answer as bytes for the socket, closing the connection; `status` replaces
        the outcome's (431 for a `bad_http` head that is too large)."""
        code = STATUS[outcome] if status is None else status
        body = BODIES[outcome]
        lines = [
            f"HTTP/1.1 {code} {HTTPStatus(code).phrase}",
            *(f"{name}: {value}" for name, value in self._headers[outcome].items()),
            f"Content-Length: {len(body)}",
            "Connection: close",
            f"X-Request-Id: {request_id}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _headers(outcome: Outcome, retry_after: int) -> dict[str, str]:
    headers = {"Content-Type": _JSON}
    if STATUS[outcome] == 503:
        headers["Retry-After"] = str(retry_after)
    if outcome is Outcome.METHOD_NOT_ALLOWED:
        headers["Allow"] = ALLOWED_METHODS
    return headers
