"""The connection layer of both listeners: aiohttp's HTTP/1.1 protocol, bounded for the internet.

aiohttp's defaults suit a server behind a trusted proxy: an hour of keep-alive, no bound on the
time to send a request head, ten seconds of reading whatever a refused client keeps sending,
parser errors logged at ERROR with the offending bytes (tokens included) and quoted back in a
`text/plain` answer, a version banner. Here, for every connection:

- at most `max_connections` are open. At the cap, the oldest connection with no request in
  progress (idle keep-alive, or still sending its head, or not reading its answers) is closed
  to admit the new one; only when every connection is busy with a request is the new one
  answered 503 and closed;
- a request head must arrive within `header_timeout_seconds` of its first byte (of the
  connection's opening, for the first request) and within `max_header_bytes`;
- answers left unread until they fill the transport's buffer must be read again within
  `header_timeout_seconds`, else the connection is cut (a request waiting to write its answer
  is "in progress" and would otherwise hold its connection for ever);
- an idle keep-alive connection closes after `keepalive_timeout_seconds`;
- after an answer that closes the connection, at most `DRAIN_BYTES` more are read, for at most
  `DRAIN_SECONDS`: enough for an honest client to read its answer instead of a reset, too little
  for anyone to keep the relay reading;
- malformed HTTP gets a JSON 400 with `X-Request-Id`, is counted as `bad_http`, and is logged as
  one rate-limited INFO line with the error's class and the peer. Broken framing inside the body
  of the request in hand is that request's 400 `bad_http`, answered by its handler; a body the
  client stops sending ends its request as `client_disconnected`. Neither is an error, and no
  request byte ever reaches a log line or an answer, whoever writes it;
- bodies are never inflated (`auto_decompress=False`; the webhook refuses `Content-Encoding`);
- no `Server` header.

It relies on how aiohttp's protocol behaves, not only on its names: `relay.edge_check` drives it
at every start and refuses to start on an aiohttp that behaves otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

from aiohttp import hdrs, web, web_protocol
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest

from relay import request_ids
from relay.answers import Answers, Reply
from relay.config import ServerConfig
from relay.logs import RateLimitedLog
from relay.metrics import Metrics
from relay.outcomes import ConnectionEnd, Outcome

log = logging.getLogger("relay.edge")

# After an answer that closes the connection: what an honest client may still be sending (the
# rest of a small body) fits; an attacker's stream is cut.
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 0.25
# How often deadlines are checked: a head timeout fires up to this late.
SWEEP_SECONDS = 0.25
# Webhook senders send about ten headers; aiohttp's per-line bounds (8190 bytes) stay.
MAX_HEADERS = 64
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class EdgeLimits(NamedTuple):
    max_connections: int
    header_timeout: float
    max_header_bytes: int
    keepalive_timeout: float
    retry_after: int

    @classmethod
    def of(cls, server: ServerConfig) -> EdgeLimits:
        return cls(
            server.max_connections,
            server.header_timeout_seconds,
            server.max_header_bytes,
            server.keepalive_timeout_seconds,
            server.retry_after_seconds,
        )


class EdgeRequest(BaseRequest):
    """aiohttp's request, with its id: the one on its answer, its log lines and its records,
    whoever writes them (relay.request_ids)."""

    __slots__ = ("request_id",)

    request_id: str

    async def send_continue(self) -> None:
        """`100 Continue`: the client may send its body now. It is an interim answer, not the
        answer: the writer's count of bytes written goes back to zero (as aiohttp's own expect
        handler does), or a handler failing after it would find the answer begun and get no
        500 (`EdgeProtocol.handle_error`)."""
        await self.writer.write(_CONTINUE)
        self.writer.output_size = 0

    def answer_begins(self) -> None:
        """The answer is being written: aiohttp's own flag covers the request from now on."""
        cast(EdgeProtocol, self.protocol).taken = False

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        # Runs for aiohttp's own responses (the handshake's challenge), after aiohttp set its
        # default headers and before they are written; the relay's answers
        # (relay.answers.Answer) write their own.
        response.headers.popall(hdrs.SERVER, None)
        self.answer_begins()


Handler = Callable[[EdgeRequest], Awaitable[Reply]]


class EdgeServer(web.Server):
    """aiohttp's low-level server with the bounded protocol below; one per listener.

    `metrics` counts the public listener's connection-level answers; the admin listener passes
    None (its requests are not webhooks).
    """

    # Declared, so that the start-up check can tell them from aiohttp's own (relay.edge_check).
    __slots__ = (
        "_bad_http_log",
        "_event_loop",
        "_metrics",
        "_options",
        "_sweeper",
        "answers",
        "limits",
        "open",
    )

    def __init__(
        self,
        handler: Handler,
        limits: EdgeLimits,
        metrics: Metrics | None = None,
        *,
        access_log: logging.Logger | None = None,
        log_interval: float = 1.0,
    ) -> None:
        # aiohttp types its handler for any request and any response: this server makes only
        # EdgeRequests, and its handlers answer with the relay's own Answers, which aiohttp's
        # request loop writes as it writes its responses (relay.edge_check checks it does).
        super().__init__(cast(Any, handler), request_factory=self._request)
        self.limits = limits
        self.answers = Answers(limits.retry_after)
        self._metrics = metrics
        self._event_loop = asyncio.get_running_loop()
        self._options: dict[str, Any] = {
            "keepalive_timeout": limits.keepalive_timeout,
            "lingering_time": DRAIN_SECONDS,
            "auto_decompress": False,
            "max_headers": MAX_HEADERS,
            "access_log": access_log,
            # aiohttp's default format quotes the request line (a verify token travels in the
            # GET handshake's query), the Referer and the User-Agent: client bytes, all of them.
            "access_log_format": '%a %t "%s" %b %Tf',
        }
        # Insertion order is connection age: eviction takes the oldest idle one.
        self.open: dict[EdgeProtocol, None] = {}
        self._bad_http_log = RateLimitedLog(log, "malformed HTTP", log_interval)
        self._sweeper: asyncio.Task[None] | None = None

    def __call__(self) -> EdgeProtocol:
        if self._sweeper is None:
            self._sweeper = self._event_loop.create_task(self._sweep(), name="edge-sweeper")
        return EdgeProtocol(self, loop=self._event_loop, **self._options)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await super().shutdown(timeout)

    def now(self) -> float:
        return self._event_loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._event_loop.call_later(delay, callback)

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web_protocol.RequestHandler,
        writer: Any,
        task: asyncio.Task[None],
    ) -> BaseRequest:
        if message is web_protocol.ERROR:
            # aiohttp's placeholder for a request it could not parse says HTTP/1.0; the answer
            # should speak the version the server does.
            message = message._replace(version=HttpVersion11)
        # Taken off the queue; aiohttp marks the request in progress only once its task runs.
        cast(EdgeProtocol, protocol).taken = True
        request = EdgeRequest(message, payload, protocol, writer, task, self._event_loop)
        request.request_id = request_ids.of(message.headers)
        return request

    # -- admission --------------------------------------------------------------------------

    def admit(self, protocol: EdgeProtocol) -> bool:
        if len(self.open) >= self.limits.max_connections:
            victim = next((c for c in self.open if not c.busy()), None)
            if victim is None:
                self.closed(ConnectionEnd.REFUSED)
                return False
            self.closed(ConnectionEnd.EVICTED)
            victim.cut()
            self.open.pop(victim, None)
        self.open[protocol] = None
        return True

    def forget(self, protocol: EdgeProtocol) -> None:
        self.open.pop(protocol, None)

    # -- counting and logging ---------------------------------------------------------------

    def closed(self, reason: ConnectionEnd) -> None:
        if self._metrics is not None:
            self._metrics.connections_closed[reason].inc()

    def answered(self, outcome: Outcome) -> None:
        if self._metrics is not None:
            self._metrics.requests[outcome].inc()

    def bad_http(self, reason: str, peer: str | None, request_id: str) -> None:
        self.answered(Outcome.BAD_HTTP)
        self._bad_http_log.info(Outcome.BAD_HTTP, reason, request_id=request_id, peer=peer)

    def failed(self, request_id: str, error: BaseException | None) -> None:
        """A handler raised: a bug, answered 500."""
        self.answered(Outcome.INTERNAL_ERROR)
        log.error(
            "request handler failed",
            extra={
                "request_id": request_id,
                "outcome": Outcome.INTERNAL_ERROR.value,
                "error": type(error).__name__,
                "stack": _stack(error),
            },
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep()

    def sweep(self) -> None:
        """Time out the heads that have taken longer than the header timeout."""
        expired = self.now() - self.limits.header_timeout
        # A head that began while an earlier request is still being answered (pipelining)
        # waits for that answer; its timeout applies once the connection is free.
        late = [p for p in self.open if p.head_since is not None and p.head_since <= expired]
        for protocol in late:
            if not protocol.busy() and protocol.head_since is not None:
                protocol.head_timed_out()


class EdgeProtocol(web_protocol.RequestHandler):
    """One connection. `head_since` is when the request head now arriving began (None between
    requests and while a body arrives)."""

    __slots__ = (
        "_close_handle",
        "_drain_left",
        "_edge",
        "_head_bytes",
        "_payload",
        "_write_stall",
        "head_since",
        "taken",
    )

    def __init__(self, edge: EdgeServer, **options: Any) -> None:
        super().__init__(edge, **options)
        self._edge = edge
        self.head_since: float | None = None
        self.taken = False  # a request left aiohttp's queue and its answer has not begun
        self._head_bytes = 0
        self._payload: StreamReader | None = None
        self._drain_left = DRAIN_BYTES  # what may still be read after a closing answer
        self._close_handle: asyncio.TimerHandle | None = None
        self._write_stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._edge.admit(self):
            self._refuse(Outcome.OVERLOADED)
            return
        self.head_since = self._edge.now()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._edge.forget(self)
        super().connection_lost(exc)
        self._end_body(ConnectionResetError("the client disconnected"))
        # Both point back here: let reference counting free everything.
        self._payload = None
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def pause_writing(self) -> None:
        # The transport holds more than its high-water mark of answers the client has not
        # read: a webhook sender never lets that happen, a client pipelining requests it never
        # reads does, and its request stays "in progress" while the answer waits, for ever. It
        # gets the head timeout to read again.
        super().pause_writing()
        self._write_stall = self._edge.call_later(
            self._edge.limits.header_timeout, self._reader_stalled
        )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def _reader_stalled(self) -> None:
        self._write_stall = None
        self._edge.closed(ConnectionEnd.WRITE_TIMEOUT)
        self.cut()

    def cut(self) -> None:
        """Close now. A transport still holding answers for a client that does not read would
        wait on close() for a flush that never comes: it is aborted instead."""
        transport = self.transport
        self.force_close()
        if transport is not None and self.writing_paused:
            transport.abort()
        self._end_body(ConnectionResetError("the connection was closed"))

    def _end_body(self, error: BaseException) -> None:
        """The rest of the body in hand will never come: it is malformed, or the connection
        is gone. A handler reading it (or about to) learns why from `error`, and never takes
        what came so far for the whole body. aiohttp's read of the rest of a body that was
        answered without it ("lingering") just stops: woken by the error, or finding the
        connection gone, it would raise into its request loop, which logs that at ERROR."""
        body = self._payload
        if body is None or body.is_eof():
            return
        if not (self.handling() or self._messages):
            body.feed_eof()  # answered: only aiohttp's lingering read can be waiting on it
        if body.exception() is None:
            body.set_exception(error)
        body.feed_eof()

    def data_received(self, data: bytes) -> None:
        if not self._keepalive:
            # An answer that closes the connection went out: read (to spare an honest client
            # a reset) but never parse, and only so much.
            self._drain_left -= len(data)
            if self._drain_left < 0:
                self._edge.closed(ConnectionEnd.DRAIN_LIMIT)
                self.cut()
            return
        if (
            data  # aiohttp calls with b"" to re-parse what it buffered
            and self.head_since is None
            and (self._payload is None or self._payload.is_eof())
        ):
            self.head_since = self._edge.now()  # the first bytes of the next request's head
        messages = self._messages
        queued = len(messages)
        super().data_received(data)
        if len(messages) == queued:
            if self.head_since is not None:
                self._head_bytes += len(data)
                if self._head_bytes > self._edge.limits.max_header_bytes:
                    self._head_too_large()
            return
        message, payload = messages[-1]
        error = getattr(message, "exc", None)  # aiohttp queues a parse error as a message
        if error is not None:
            # Answered here rather than by aiohttp's error handler, which would log the bytes,
            # quote them back and close at once (a client still sending would get a reset
            # instead of its 400). Its traceback's frames hold the bytes received, and one of
            # them holds the error: a cycle only the cyclic collector would free.
            error.__traceback__ = None
            messages.pop()
            body = self._payload
            if body is not None and not body.is_eof():
                # In the body of the request in hand: its handler answers it (400 bad_http,
                # closing), as it answers every other refusal of that request. aiohttp's C
                # parser raises here without telling the body.
                self._end_body(RequestPayloadError(f"malformed body: {type(error).__name__}"))
                self.keep_alive(False)  # what still arrives is drained, never parsed
                self.close()  # and no other request follows on this connection
                return
            self._refuse(Outcome.BAD_HTTP, reason=type(error).__name__)
            return
        if len(messages) == queued + 1:
            # This chunk ended the head; what it held beyond the head went to the body.
            head = self._head_bytes + len(data) - payload.total_bytes
            if head > self._edge.limits.max_header_bytes:
                self._head_too_large()
                return
        self.head_since = None
        self._head_bytes = 0
        self._payload = payload

    def _head_too_large(self) -> None:
        self._refuse(Outcome.BAD_HTTP, 431, "request head too large")

    def busy(self) -> bool:
        """A parsed request waits to be handled, is being handled or answered, and the client
        reads its answers: such a connection is never evicted or timed out."""
        return (self.handling() or bool(self._messages)) and not self.writing_paused

    def handling(self) -> bool:
        """A request left aiohttp's queue and its answer is not finished. aiohttp's own flag
        covers handling and answering; before that, a request taken off the queue waits a
        loop iteration for its task to start."""
        return self._request_in_progress or self.taken

    def head_timed_out(self) -> None:
        self._edge.closed(ConnectionEnd.HEADER_TIMEOUT)
        if self._head_bytes:
            # A client that started a request learns why it ended; a connection that never
            # said anything is just closed.
            self._refuse(Outcome.REQUEST_TIMEOUT)
        else:
            self.head_since = None
            self.cut()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a handler that raised (500; 504 for a TimeoutError, which is a
        bug like any other here), or to a request it could not parse that `data_received` did
        not see (400). `message` quotes request bytes: never used."""
        request_id = cast(EdgeRequest, request).request_id
        if status == 400:
            reason = type(exc).__name__ if exc is not None else "bad request"
            self._edge.bad_http(reason, request.remote, request_id)
            outcome = Outcome.BAD_HTTP
        else:
            self._edge.failed(request_id, exc)
            outcome = Outcome.INTERNAL_ERROR
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun; the connection is closed instead")
        # aiohttp's request loop writes it like its own responses (relay.edge_check).
        return cast(
            web.StreamResponse, self._edge.answers.response(outcome, request_id, close=True)
        )

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own error lines format the exception, whose message may quote request bytes:
        # keep the class and where it came from, never the message.
        exc = kw.get("exc_info")
        error = type(exc).__name__ if isinstance(exc, BaseException) else "unknown"
        stack = _stack(exc) if isinstance(exc, BaseException) else ""
        log.error("connection error", extra={"error": error, "stack": stack})

    def _refuse(self, outcome: Outcome, status: int | None = None, reason: str = "") -> None:
        """Answer where no request reached the handler (counted, and for malformed HTTP logged
        with `reason`), then drain briefly and close."""
        request_id = request_ids.new()
        if outcome is Outcome.BAD_HTTP:
            self._edge.bad_http(reason, self._peer(), request_id)
        else:
            self._edge.answered(outcome)
        self.head_since = None
        transport = self.transport
        if transport is None or self.handling():
            # An answer is being written for an earlier (pipelined) request: no room for ours.
            self.cut()
            return
        transport.write(self._edge.answers.raw(outcome, request_id, status=status))
        # Nothing more is handled here: a head parsed in the same read (queued, not yet taken:
        # `handling()` was false) must not reach the handler, and aiohttp's request loop
        # (woken for it, or waiting) is stopped.
        self._messages.clear()
        if self._task_handler is not None:
            self._task_handler.cancel()
        self.close()
        self.keep_alive(False)  # from now on, what arrives is drained, never parsed
        self._close_handle = self._edge.call_later(DRAIN_SECONDS, self.cut)

    def _peer(self) -> str | None:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return str(peer[0]) if peer else None


def _stack(exc: BaseException | None) -> str:
    if exc is None or exc.__traceback__ is None:
        return ""
    return "".join(traceback.format_tb(exc.__traceback__))
