"""The connection layer's view of one connection, driven directly: which states count as busy
(never evicted, never timed out). A request is busy from the moment its head is parsed, through
the loop iterations in which aiohttp takes it off its queue and starts its task, until it is
answered; an idle keep-alive connection is not."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from devsupport.ports import LOOPBACK
from relay import config
from relay.edge import EdgeLimits, EdgeProtocol, EdgeServer
from relay.metrics import Metrics
from relay.outcomes import ConnectionEnd

REQUEST = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


class Transport(asyncio.Transport):
    """What the protocol writes, kept; nothing is sent anywhere."""

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
        return (LOOPBACK, 40000) if name == "peername" else default


async def test_a_request_is_busy_from_its_parsed_head_until_it_is_answered() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def handler(request: BaseRequest) -> web.StreamResponse:
        entered.set()
        await release.wait()
        return web.Response(text="ok")

    server = EdgeServer(handler, EdgeLimits.of(config.Settings().server))
    protocol: EdgeProtocol = server()
    transport = Transport()
    protocol.connection_made(transport)
    try:
        assert not protocol.busy()  # connected, nothing sent: idle

        protocol.data_received(REQUEST)
        assert protocol.busy(), "parsed and queued, aiohttp's request loop not yet run"
        # Each step aiohttp takes before the handler runs: off the queue, then the task starts.
        for _ in range(5):
            if entered.is_set():
                break
            await asyncio.sleep(0)
            assert protocol.busy(), "between aiohttp's queue and the handler"
        assert entered.is_set()
        assert protocol.busy()

        release.set()
        async with asyncio.timeout(5):
            while b"\r\n\r\nok" not in transport.written:
                await asyncio.sleep(0)
            while protocol.busy():
                await asyncio.sleep(0)
        assert not protocol.taken
    finally:
        protocol.connection_lost(None)
        await server.shutdown(0.1)


async def test_a_client_that_stops_reading_is_cut_at_the_head_timeout_and_is_not_busy() -> None:
    async def handler(request: BaseRequest) -> web.StreamResponse:
        return web.Response(text="ok")

    settings = config.parse(None, {"RELAY_SERVER__HEADER_TIMEOUT_SECONDS": "0.1"})
    metrics = Metrics("test")
    server = EdgeServer(handler, EdgeLimits.of(settings.server), metrics)
    protocol: EdgeProtocol = server()
    transport = Transport()
    protocol.connection_made(transport)
    try:
        protocol.data_received(REQUEST)
        assert protocol.busy()
        # The transport's buffer went over its high-water mark: the client reads nothing.
        protocol.pause_writing()
        assert not protocol.busy(), "a connection whose answers go unread may be evicted"
        await asyncio.sleep(0.3)
        assert transport.aborted, "cut, not closed: close() would wait for a flush"
        assert metrics.connections_closed[ConnectionEnd.WRITE_TIMEOUT].value == 1
    finally:
        protocol.connection_lost(None)
        await server.shutdown(0.1)


async def test_a_client_that_reads_again_in_time_keeps_its_connection() -> None:
    async def handler(request: BaseRequest) -> web.StreamResponse:
        return web.Response(text="ok")

    settings = config.parse(None, {"RELAY_SERVER__HEADER_TIMEOUT_SECONDS": "0.2"})
    metrics = Metrics("test")
    server = EdgeServer(handler, EdgeLimits.of(settings.server), metrics)
    protocol: EdgeProtocol = server()
    transport = Transport()
    protocol.connection_made(transport)
    try:
        protocol.data_received(REQUEST)
        async with asyncio.timeout(5):
            while b"\r\n\r\nok" not in transport.written:
                await asyncio.sleep(0)
        protocol.pause_writing()
        await asyncio.sleep(0.05)
        protocol.resume_writing()
        await asyncio.sleep(0.3)
        assert not transport.closed
        assert metrics.connections_closed[ConnectionEnd.WRITE_TIMEOUT].value == 0
    finally:
        protocol.connection_lost(None)
        await server.shutdown(0.1)
