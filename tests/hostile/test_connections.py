"""Connection-level abuse: slow heads, idle connections, too many connections, huge heads, and
clients that keep sending after they were refused."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from devsupport.ports import LOOPBACK
from tests.hostile.conftest import BODY, short_bounds
from tests.raw_http import exchange, held_open, raw_request
from tests.relays import Relays, RelayUnderTest

pytestmark = pytest.mark.asyncio

# The sweeper checks deadlines four times a second; allow for that and a loaded machine.
SLACK = 1.0


async def test_a_trickled_head_is_answered_408_at_the_header_timeout(
    bearer: RelayUnderTest,
) -> None:
    before = bearer.outcome("request_timeout")
    pieces = [bytes([b]) for b in raw_request(length=len(BODY))]
    result = await exchange(bearer.port, *pieces, pause=0.2, read_for=6)
    assert result.status == 408
    assert result.closed
    assert 1.0 <= result.seconds <= 1.0 + SLACK
    assert bearer.outcome("request_timeout") == before + 1


async def test_a_silent_connection_is_closed_at_the_header_timeout(bearer: RelayUnderTest) -> None:
    result = await exchange(bearer.port, read_for=6)
    assert result.closed
    assert result.answer == b""
    assert 1.0 <= result.seconds <= 1.0 + SLACK


async def test_an_idle_keepalive_connection_closes_after_the_keepalive_timeout(
    bearer: RelayUnderTest,
) -> None:
    result = await exchange(bearer.port, raw_request(body=BODY), read_for=8)
    assert result.status == 200
    assert result.closed
    # 2 s of keep-alive after the answer: longer than the header timeout, so it is the idle
    # bound that ended it, not the head bound.
    assert 2.0 <= result.seconds <= 2.0 + SLACK


async def test_a_head_above_max_header_bytes_is_431_and_closed(bearer: RelayUnderTest) -> None:
    before = bearer.outcome("bad_http")
    filler = [b"X-Filler-%d: %s" % (i, b"f" * 1000) for i in range(40)]  # 40 KiB > 32 KiB
    raw = raw_request(*filler, length=None)
    result = await exchange(bearer.port, *[raw[i : i + 4096] for i in range(0, len(raw), 4096)])
    assert result.status == 431
    assert result.closed
    assert result.body == b'{"status":"bad_http"}'
    assert bearer.outcome("bad_http") == before + 1


async def test_no_version_banner_on_either_port(bearer: RelayUnderTest) -> None:
    accepted = await exchange(bearer.port, raw_request(body=BODY), read_for=0.5)
    refused = await exchange(bearer.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert accepted.status == 200
    assert refused.status == 400
    for answer in (accepted, refused):
        assert answer.header("Server") is None
    async with aiohttp.ClientSession() as http:
        for path in ("/metrics", "/healthz", "/readyz", "/nope"):
            url = f"{bearer.admin_url}{path}"
            async with http.get(url) as response:
                assert response.status in (200, 404)
                assert "Server" not in response.headers


async def test_an_honest_client_reads_its_401_and_an_attacker_stream_is_cut(
    bearer: RelayUnderTest,
) -> None:
    # Honest: a wrong token with its small body sent at once reads the 401, not a reset.
    wrong = b"wrong-token-0123456789"
    honest = await exchange(bearer.port, raw_request(token=wrong, body=BODY))
    assert honest.status == 401
    assert honest.closed

    # Attacker: announces 50 MB, ignores the 401 and keeps streaming.
    before = bearer.metric("whatsapp_relay_connections_closed_total", reason="drain_limit")
    loop = asyncio.get_running_loop()
    sock = small_send_buffer()
    sock.setblocking(False)
    await loop.sock_connect(sock, (LOOPBACK, bearer.port))
    await loop.sock_sendall(sock, raw_request(token=wrong, length=50_000_000))
    started = time.monotonic()
    sent = 0
    cut = False
    try:
        async with asyncio.timeout(5):
            while True:
                await loop.sock_sendall(sock, b"x" * 16384)
                sent += 16384
    except (ConnectionResetError, BrokenPipeError):
        cut = True
    except TimeoutError:
        pass
    finally:
        sock.close()
    assert cut, "the relay kept reading a refused body"
    assert time.monotonic() - started < 1.0
    # What a kernel buffers on both ends, plus the drain allowance; not the 50 MB.
    assert sent < 16 * 1024 * 1024
    assert bearer.metric("whatsapp_relay_connections_closed_total", reason="drain_limit") >= before


async def test_at_the_connection_cap_idle_and_slow_connections_make_room(
    process_relays: Relays,
) -> None:
    target = process_relays.start_process(
        server={
            "max_connections": 20,
            "header_timeout_seconds": 30,
            "keepalive_timeout_seconds": 30,
        }
    )
    # Twenty connections that started a head and stalled: the cap is full of them.
    async with held_open(target.port, 20, b"POST /webhook HTTP/1.1\r\nHost: x\r\n"):
        await target.until("whatsapp_relay_connections", 20)
        result = await exchange(target.port, raw_request(body=BODY), read_for=0.5)
        assert result.status == 200
    assert target.metric("whatsapp_relay_connections_closed_total", reason="evicted") >= 1
    assert target.metric("whatsapp_relay_connection_limit") == 20


async def test_when_every_connection_is_busy_a_new_one_gets_503(
    process_relays: Relays,
) -> None:
    target = process_relays.start_process(
        server={
            "max_connections": 10,
            "body_read_timeout_seconds": 30,
            "min_body_rate_bytes_per_second": 1,
        }
    )
    # Ten authenticated requests in progress (their bodies trickle): none may be evicted.
    async with held_open(target.port, 10, raw_request(length=1000, body=b"{")):
        await target.until("whatsapp_relay_inflight_requests", 10)
        result = await exchange(target.port, raw_request(body=BODY))
        assert result.status == 503
        assert result.header("Retry-After") == "5"
        assert result.closed
    assert target.metric("whatsapp_relay_connections_closed_total", reason="refused") == 1


async def test_a_thousand_idle_connections_do_not_keep_a_request_out(
    process_relays: Relays,
) -> None:
    target = process_relays.start_process(**short_bounds(max_connections=500))
    async with held_open(target.port, 1000):
        result = await exchange(target.port, raw_request(body=BODY), read_for=0.5)
        assert result.status == 200
        assert target.metric("whatsapp_relay_connections") <= 500
    # ...and the silent ones are gone after the header timeout.
    await asyncio.sleep(1.0 + SLACK)
    assert target.metric("whatsapp_relay_connections") <= 1


async def test_clients_that_never_read_their_answers_cannot_hold_the_cap(
    process_relays: Relays,
) -> None:
    # The admin port, for its large answers (/metrics): a few hundred pipelined requests fill
    # any socket buffer. Both listeners are the same connection layer.
    target = process_relays.start_process(**short_bounds(max_connections=3))
    port = target.admin_port
    assert port is not None
    loop = asyncio.get_running_loop()
    pipelined = 300
    stalled = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.setblocking(False)
        await loop.sock_connect(sock, (LOOPBACK, port))
        await loop.sock_sendall(sock, b"GET /metrics HTTP/1.1\r\nHost: relay\r\n\r\n" * pipelined)
        stalled.append(sock)
    try:
        # Each request stays "in progress" while its answer cannot be written: unbounded, the
        # three would hold the cap for ever and every new connection would get 503.
        deadline = time.monotonic() + 1.0 + 2 * SLACK
        while (status := await admin_status(port)) != 200:
            assert time.monotonic() < deadline, f"the cap stayed full ({status})"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0 + SLACK)  # the head timeout, for those not evicted
        for sock in stalled:
            answers, ended = await read_to_end(sock, within=5.0)
            assert ended, "a client that never read kept its connection"
            assert answers < pipelined, "every answer was written: the client was never cut"
    finally:
        for sock in stalled:
            sock.close()


async def admin_status(port: int) -> int | None:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{LOOPBACK}:{port}/healthz") as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return None


async def read_to_end(sock: socket.socket, within: float) -> tuple[int, bool]:
    """How many answers arrive before the connection ends, and whether it ended in time."""
    loop = asyncio.get_running_loop()
    received = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await loop.sock_recv(sock, 65536):
                received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return received.count(b"HTTP/1.1 "), False
    return received.count(b"HTTP/1.1 "), True


def small_send_buffer() -> socket.socket:
    """A client socket that cannot park megabytes in its own kernel buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    return sock
