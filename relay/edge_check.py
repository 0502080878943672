"""The start-up check that aiohttp still behaves as the connection layer (relay/edge.py) assumes.

The edge subclasses aiohttp's protocol, request and server and relies on how they behave, not
only on their names: that the request factory and the prepare hook are called, and when; that a
parse error is queued as a message; when a request counts as in progress; that cancelling the
request loop stops it; that a handler's failure reaches `handle_error`. A release can keep every
name and change any of that (aiohttp 3.14 added a re-parse through `data_received(b"")`; on
Python 3.12+ it starts handlers eagerly). So at every start, before anything listens, one
`EdgeServer` is driven over in-memory transports, through:

- a request and a second one pipelined behind it in the same read: both reach the handler in
  order, the connection is busy (never evicted, never timed out) from the parsed head until the
  first answer is written, the request loop writes the relay's own answers (relay.answers.Answer:
  `prepare`, `write_eof`, `keep_alive`) whole and keeps the connection, each answer carries its
  own `X-Request-Id` and no `Server` header;
- the second request failing in its handler after `100 Continue`: its 500 still follows;
- aiohttp's own response (the handshake's challenge, the admin listener's pages): the prepare
  hook runs before its head is written (no `Server` header, the request no longer taken);
- a head that does not arrive in time: 408, and nothing sent after it reaches the handler;
- malformed HTTP: the edge's 400 `bad_http`, with the id it logs;
- a malformed chunk in the body being read: the handler reads a `RequestPayloadError`.

Besides, the names the edge adds to aiohttp's classes must not be aiohttp's own (a slot or a
method aiohttp adds later would be silently shared), the names it overrides must still be
aiohttp's (or the override is never called), and the internals it reads must exist. It takes a
few milliseconds and touches nothing at import. Any difference refuses start-up with a
`StartupError` naming what changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest

from relay.answers import Reply
from relay.edge import EdgeLimits, EdgeProtocol, EdgeRequest, EdgeServer
from relay.outcomes import Outcome
from relay.startup import StartupError

# pyproject.toml's range for aiohttp, named in the refusal (tests/unit/test_edge_check.py
# keeps the two equal).
SUPPORTED_AIOHTTP = ">=3.14.3,<3.15"

# What the edge overrides on purpose; everything else it defines must be new to aiohttp.
OVERRIDES: dict[type, frozenset[str]] = {
    EdgeProtocol: frozenset(
        {
            "connection_made",
            "connection_lost",
            "data_received",
            "pause_writing",
            "resume_writing",
            "handle_error",
            "log_exception",
        }
    ),
    EdgeRequest: frozenset({"_prepare_hook"}),
    EdgeServer: frozenset({"__call__", "shutdown"}),
}
# aiohttp's internals the edge reads or calls by name.
READS = (
    "_keepalive",
    "_messages",
    "_request_in_progress",
    "_task_handler",
    "close",
    "force_close",
    "keep_alive",
    "writing_paused",
)
# What Python itself gives every subclass of an abstract class (aiohttp's request is a mapping).
_PYTHONS_OWN = frozenset({"_abc_impl"})
_LIMITS = EdgeLimits(
    max_connections=8, header_timeout=1.0, max_header_bytes=8192, keepalive_timeout=60.0,
    retry_after=1,
)  # fmt: skip
# Each scenario must be over within this (it takes a few loop iterations).
_SCENARIO_SECONDS = 2.0


async def self_check() -> None:
    """Raise `StartupError` if the installed aiohttp does not behave as relay/edge.py relies
    on; return quietly (and quickly) if it does."""
    problems = names_problems()
    if not problems:
        problems = await behaviour_problems()
    if problems:
        raise StartupError(
            f"aiohttp {aiohttp.__version__} does not behave as the relay's connection layer "
            f"(relay/edge.py) relies on: {'; '.join(problems)}. Install "
            f"aiohttp{SUPPORTED_AIOHTTP}, the versions pyproject.toml allows"
        )


def names_problems() -> list[str]:
    problems = []
    for ours, overrides in OVERRIDES.items():
        theirs = ours.__mro__[1]
        their_names = _names_of(theirs)
        own = {name for name in vars(ours) if not _dunder(name) or name in overrides}
        own -= _PYTHONS_OWN
        for name in sorted((own & their_names) - overrides):
            problems.append(
                f"aiohttp's {theirs.__name__} now has {name}, which {ours.__name__} adds"
            )
        for name in sorted(overrides - their_names):
            problems.append(
                f"aiohttp's {theirs.__name__} has no {name} any more, which {ours.__name__} "
                "overrides"
            )
    handler_names = _names_of(web_protocol.RequestHandler)
    problems.extend(
        f"aiohttp's RequestHandler has no {name} any more, which the edge reads"
        for name in READS
        if name not in handler_names
    )
    if not hasattr(web_protocol, "ERROR"):
        problems.append("aiohttp's web_protocol has no ERROR any more, which the edge compares")
    return problems


def _names_of(cls: type) -> set[str]:
    """Every name an instance of `cls` has: methods and attributes of the class and its bases,
    slots, and what aiohttp lists as a request's attributes (its `ATTRS`)."""
    names = set(dir(cls))
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    names.update(getattr(cls, "ATTRS", ()))
    if cls is web.Server:
        names.update(_server_attributes())
    return names


def _server_attributes() -> set[str]:
    # aiohttp's Server is not slotted: what its instances hold shows only on one.
    try:
        return set(vars(web.Server(_never_called)))
    except RuntimeError:  # no running loop: names_problems() called outside one
        return set()


async def _never_called(request: BaseRequest) -> web.StreamResponse:
    raise AssertionError("the probe server never serves")


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


# -- driving one server ------------------------------------------------------------------------


class MemoryTransport(asyncio.Transport):
    """A transport that keeps what is written to it and sends nothing anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = self.aborted = False

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class _ProbeServer(EdgeServer):
    """An EdgeServer on a clock of its own, that notes what it would log instead of logging it:
    the check must write no line, least of all an ERROR, and count nothing."""

    __slots__ = ("clock", "logged")

    def __init__(self, handler: Callable[[EdgeRequest], Awaitable[Reply]]) -> None:
        super().__init__(handler, _LIMITS)
        self.clock = 0.0
        self.logged: list[tuple[str, str]] = []

    def now(self) -> float:
        return self.clock

    def bad_http(self, reason: str, peer: str | None, request_id: str) -> None:
        self.logged.append(("bad_http", request_id))

    def failed(self, request_id: str, error: BaseException | None) -> None:
        self.logged.append(("failed", request_id))


class _Probe:
    def __init__(self) -> None:
        self.seen: list[str] = []  # request ids, as the handler saw them
        self.body_errors: list[str] = []
        self.reading = asyncio.Event()
        self.server = _ProbeServer(self._handle)
        self.connections: list[tuple[EdgeProtocol, MemoryTransport]] = []

    async def _handle(self, request: EdgeRequest) -> Reply:
        self.seen.append(request.request_id)
        if request.path == "/fail":
            await request.send_continue()
            raise _Failure
        if request.path == "/text":  # aiohttp's own response, as the handshake's challenge
            return self.server.answers.challenge("probe", request.request_id)
        if request.path == "/body":
            self.reading.set()
            try:
                await request.content.read()
            except RequestPayloadError as exc:
                self.body_errors.append(type(exc).__name__)
            return self.server.answers.response(Outcome.BAD_HTTP, request.request_id, close=True)
        return self.server.answers.response(Outcome.ACCEPTED, request.request_id)

    def connect(self) -> tuple[EdgeProtocol, MemoryTransport]:
        protocol = self.server()
        transport = MemoryTransport()
        protocol.connection_made(transport)
        self.connections.append((protocol, transport))
        return protocol, transport

    async def close(self) -> None:
        for protocol, _ in self.connections:
            protocol.connection_lost(None)
        await self.server.shutdown(0.1)
        for _ in range(3):  # aiohttp's request loops end in an iteration or two
            await asyncio.sleep(0)


class _Failure(Exception):
    """The probe's handler failing on purpose."""


def _request(path: str, request_id: str, *lines: str, body: bytes = b"") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: relay", f"X-Request-Id: {request_id}", *lines]
    if not any(line.startswith("Transfer-Encoding") for line in lines):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _until(condition: Callable[[], bool], check: Callable[[], None] = lambda: None) -> bool:
    """Let the loop run until `condition` holds (False if it does not in time), calling `check`
    at every step."""
    try:
        async with asyncio.timeout(_SCENARIO_SECONDS):
            while not condition():
                check()
                await asyncio.sleep(0)
    except TimeoutError:
        return False
    return True


async def behaviour_problems() -> list[str]:
    probe = _Probe()
    problems: list[str] = []
    try:
        for scenario in (_pipelined, _aiohttps_own, _head_timeout, _parse_error, _broken_body):
            try:
                problems.extend(await scenario(probe))
            except Exception as exc:  # the names it relies on moved: say which, never crash
                problems.append(f"{scenario.__doc__}: {type(exc).__name__}: {exc}")
    finally:
        await probe.close()
    return problems


async def _pipelined(probe: _Probe) -> list[str]:
    """a request and a pipelined second one"""
    problems: list[str] = []
    protocol, transport = probe.connect()
    protocol.data_received(
        _request("/ok", "check-1", body=b"{}")
        + _request("/fail", "check-2", "Expect: 100-continue", body=b"{}")
    )

    idle_before_its_answer: list[bool] = []

    def busy_until_answered() -> None:
        if b"check-1" not in transport.written and not protocol.busy():
            idle_before_its_answer.append(True)

    answered = await _until(lambda: b"internal_error" in transport.written, busy_until_answered)
    if idle_before_its_answer:
        problems.append("a parsed request was not busy before its answer (it could be evicted)")
    if not answered:
        return [*problems, f"two pipelined requests were not both answered ({probe.seen} seen)"]
    written = bytes(transport.written)
    if probe.seen != ["check-1", "check-2"]:
        problems.append(f"pipelined requests reached the handler as {probe.seen}")
    first = written.partition(b"\r\n\r\n")[0] + b"\r\n"  # its head, every line ended
    if not first.startswith(b"HTTP/1.1 200 OK\r\n") or b"X-Request-Id: check-1\r\n" not in first:
        problems.append("the first answer is not the first request's")
    elif b"\r\nDate: " not in first or b"\r\nContent-Length: 21\r\n" not in first:
        problems.append("the first answer was not written whole by the request loop")
    final = written.partition(b"HTTP/1.1 100 Continue\r\n\r\n")[2]
    if not final.startswith(b"HTTP/1.1 500 ") or b"X-Request-Id: check-2\r\n" not in final:
        problems.append("a handler failing after 100 Continue did not get its 500 with its id")
    if probe.server.logged != [("failed", "check-2")]:
        problems.append(f"a failing handler was reported as {probe.server.logged}")
    probe.server.logged.clear()
    return problems


async def _aiohttps_own(probe: _Probe) -> list[str]:
    """aiohttp's own response"""
    protocol, transport = probe.connect()
    protocol.data_received(_request("/text", "check-5"))
    if not await _until(lambda: transport.written.endswith(b"probe")):
        return ["aiohttp's own response (the handshake's challenge) was not written"]
    head = bytes(transport.written).partition(b"\r\n\r\n")[0] + b"\r\n"
    if b"\r\nServer:" in head:
        return ["a Server header was sent: the prepare hook was not called before it"]
    if b"X-Request-Id: check-5\r\n" not in head:
        return ["aiohttp's own response lost its X-Request-Id"]
    if protocol.taken:
        return ["the connection still counts a request as taken once its answer began"]
    return []


async def _head_timeout(probe: _Probe) -> list[str]:
    """a head timeout"""
    protocol, transport = probe.connect()
    protocol.data_received(b"POST /ok HTTP/1.1\r\nHost: relay\r\n")
    probe.server.clock += _LIMITS.header_timeout + 1
    probe.server.sweep()
    if not transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n"):
        return ["a head that took too long was not answered 408"]
    written = len(transport.written)
    seen = len(probe.seen)
    protocol.data_received(_request("/ok", "check-3", body=b"{}"))  # after the 408: drained
    for _ in range(10):
        await asyncio.sleep(0)
    if len(probe.seen) != seen or len(transport.written) != written:
        return ["a request sent after a 408 was still handled: aiohttp's request loop went on"]
    return []


async def _parse_error(probe: _Probe) -> list[str]:
    """a parse error"""
    protocol, transport = probe.connect()
    protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    if not await _until(lambda: b"\r\n\r\n" in transport.written):
        return ["malformed HTTP was not answered"]
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    logged = probe.server.logged
    if not head.startswith(b"HTTP/1.1 400 ") or body != b'{"status":"bad_http"}':
        return ["malformed HTTP was not answered by the edge (400 bad_http)"]
    if len(logged) != 1 or f"X-Request-Id: {logged[0][1]}".encode() not in head:
        return [f"malformed HTTP was logged as {logged}, not once with its answer's id"]
    logged.clear()
    return []


async def _broken_body(probe: _Probe) -> list[str]:
    """a malformed chunk in a body"""
    protocol, transport = probe.connect()
    probe.reading.clear()
    protocol.data_received(
        _request("/body", "check-4", "Transfer-Encoding: chunked") + b"5\r\n{}{}{\r\n"
    )
    if not await _until(probe.reading.is_set):
        return ["a chunked request did not reach its handler"]
    protocol.data_received(b"zz\r\n")
    if not await _until(lambda: b"X-Request-Id: check-4" in transport.written):
        return ["a malformed chunk in a body being read never reached its handler"]
    if probe.body_errors != ["RequestPayloadError"]:
        return [f"a malformed chunk reached the handler as {probe.body_errors}"]
    return []
