"""The connection layer's view of one connection, driven directly: which states count as busy
(never evicted, never timed out). A request is busy from the moment its head is parsed, through
the loop iterations in which aiohttp takes it off its queue and starts its task, until it is
answered; an idle keep-alive connection is not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_request import BaseRequest

from relay import config
from relay.edge import EdgeLimits, EdgeProtocol, EdgeServer
from relay.edge_check import MemoryTransport
from relay.metrics import Metrics
from relay.outcomes import ConnectionEnd

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]
REQUEST = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Connection:
    protocol: EdgeProtocol
    transport: MemoryTransport
    metrics: Metrics

    async def answered(self) -> None:
        async with asyncio.timeout(5):
            while b"\r\n\r\nok" not in self.transport.written:
                await asyncio.sleep(0)


async def answer_ok(request: BaseRequest) -> web.StreamResponse:
    return web.Response(text="ok")


@contextlib.asynccontextmanager
async def connected(
    handler: Handler = answer_ok, header_timeout: float = 10.0
) -> AsyncIterator[Connection]:
    """One connection of a real EdgeServer over a transport that sends nothing anywhere."""
    settings = config.parse(None, {"RELAY_SERVER__HEADER_TIMEOUT_SECONDS": str(header_timeout)})
    metrics = Metrics("test")
    server = EdgeServer(handler, EdgeLimits.of(settings.server), metrics)
    protocol: EdgeProtocol = server()
    transport = MemoryTransport()
    protocol.connection_made(transport)
    try:
        yield Connection(protocol, transport, metrics)
    finally:
        protocol.connection_lost(None)
        await server.shutdown(0.1)


async def test_a_request_is_busy_from_its_parsed_head_until_it_is_answered() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def handler(request: BaseRequest) -> web.StreamResponse:
        entered.set()
        await release.wait()
        return web.Response(text="ok")

    async with connected(handler) as c:
        assert not c.protocol.busy()  # connected, nothing sent: idle

        c.protocol.data_received(REQUEST)
        assert c.protocol.busy(), "parsed and queued, aiohttp's request loop not yet run"
        # Each step aiohttp takes before the handler runs: off the queue, then the task starts.
        for _ in range(5):
            if entered.is_set():
                break
            await asyncio.sleep(0)
            assert c.protocol.busy(), "between aiohttp's queue and the handler"
        assert entered.is_set()
        assert c.protocol.busy()

        release.set()
        await c.answered()
        async with asyncio.timeout(5):
            while c.protocol.busy():
                await asyncio.sleep(0)
        assert not c.protocol.taken


async def test_a_client_that_stops_reading_is_cut_at_the_head_timeout_and_is_not_busy() -> None:
    async with connected(header_timeout=0.1) as c:
        c.protocol.data_received(REQUEST)
        assert c.protocol.busy()
        # The transport's buffer went over its high-water mark: the client reads nothing.
        c.protocol.pause_writing()
        assert not c.protocol.busy(), "a connection whose answers go unread may be evicted"
        await asyncio.sleep(0.3)
        assert c.transport.aborted, "cut, not closed: close() would wait for a flush"
        assert c.metrics.connections_closed[ConnectionEnd.WRITE_TIMEOUT].value == 1


async def test_a_client_that_reads_again_in_time_keeps_its_connection() -> None:
    async with connected(header_timeout=0.2) as c:
        c.protocol.data_received(REQUEST)
        await c.answered()
        c.protocol.pause_writing()
        await asyncio.sleep(0.05)
        c.protocol.resume_writing()
        await asyncio.sleep(0.3)
        assert not c.transport.closed
        assert c.metrics.connections_closed[ConnectionEnd.WRITE_TIMEOUT].value == 0
