"""HTTP byte by byte, as a hostile client speaks it: the one request builder, the one client
that sends over a plain socket and reads what comes back, and the one signer of bodies (Meta's
`X-Hub-Signature-256`). Every suite that sends raw requests uses these.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from devsupport.ports import LOOPBACK
from tests.relays import APP_SECRET, TOKEN


class _Auto:
    """`Content-Length` from the body, unless the lines give one or say `Transfer-Encoding`."""


AUTO = _Auto()


def raw_request(
    *lines: bytes | str,
    body: bytes = b"",
    token: str | bytes | None = TOKEN,
    length: int | _Auto | None = AUTO,
    method: str = "POST",
    path: str = "/webhook",
) -> bytes:
    """A request to the relay: `Host`, `Content-Type: application/json` unless `lines` give
    one, `Authorization: Bearer <token>` unless `token` is None, `Content-Length` as `length`
    says (by default the body's; None: none), then `lines` as given (any bytes at all), then
    `body`."""
    extra = [line.encode("latin-1") if isinstance(line, str) else line for line in lines]
    given = {line.split(b":", 1)[0].strip().lower() for line in extra}
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: relay"]
    if b"content-type" not in given:
        head.append(b"Content-Type: application/json")
    if token is not None:
        head.append(
            b"Authorization: Bearer " + (token.encode() if isinstance(token, str) else token)
        )
    if isinstance(length, _Auto):
        length = None if given & {b"content-length", b"transfer-encoding"} else len(body)
    if length is not None:
        head.append(b"Content-Length: %d" % length)
    return b"\r\n".join([*head, *extra]) + b"\r\n\r\n" + body


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`, as Meta signs a webhook."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(body: bytes, secret: str = APP_SECRET) -> bytes:
    """The header line carrying the body's signature."""
    return b"X-Hub-Signature-256: " + signature(body, secret).encode()


@dataclass
class Exchange:
    """What came back: the bytes, how long it took, and whether the relay closed."""

    answer: bytes
    seconds: float
    closed: bool  # the relay closed the connection (EOF or reset) within the read time

    @property
    def status(self) -> int:
        return int(self.answer.split(b" ", 2)[1]) if self.answer else 0

    @property
    def headers(self) -> dict[str, str]:
        """The first answer's headers, by lower-case name."""
        lines = self.answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
        parts = (line.partition(b":") for line in lines)
        return {key.strip().lower().decode(): value.strip().decode() for key, _, value in parts}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def body(self) -> bytes:
        return self.answer.partition(b"\r\n\r\n")[2]


def _answers_in(data: bytes) -> int:
    """How many complete answers (final ones, with a `Content-Length` body) `data` holds."""
    count = 0
    while True:
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            return count
        if head.startswith(b"HTTP/1.1 1"):  # an interim answer: no body, not the answer
            data = rest
            continue
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return count
        count += 1
        data = rest[length:]


async def exchange(
    port: int,
    *pieces: bytes,
    pause: float = 0.0,
    read_for: float = 5.0,
    answers: int | None = None,
) -> Exchange:
    """Send `pieces` (with `pause` seconds between them), then read until the relay closes the
    connection, `answers` complete answers have arrived, or `read_for` seconds pass since the
    first byte was sent.

    A plain non-blocking socket, not asyncio streams: a stream raises a reset before handing
    over the answer that arrived ahead of it, and that answer is what the tests look at."""
    loop = asyncio.get_running_loop()
    with await _connected(port) as sock:
        started = time.monotonic()
        try:
            for index, piece in enumerate(pieces):
                if index and pause:
                    await asyncio.sleep(pause)
                await loop.sock_sendall(sock, piece)
        except OSError:
            pass  # the relay answered and closed while we were still sending; read what it said
        answer, closed = await _read(sock, started + read_for, answers)
    return Exchange(answer, time.monotonic() - started, closed)


async def expect_continue(
    port: int, *lines: bytes | str, body: bytes, read_for: float = 5.0
) -> tuple[bytes, Exchange]:
    """A POST with `Expect: 100-continue`, sent as a careful client sends it: the head, then
    the body only once `100 Continue` came. The interim answer (b"" if another came instead),
    and the final one."""
    loop = asyncio.get_running_loop()
    with await _connected(port) as sock:
        started = time.monotonic()
        head = raw_request(*lines, b"Expect: 100-continue", length=len(body))
        await loop.sock_sendall(sock, head)
        interim = b""
        first, closed = await _read(sock, started + read_for, answers=None, interim=True)
        if first.startswith(b"HTTP/1.1 100 "):
            interim, _, first = first.partition(b"\r\n\r\n")
            interim += b"\r\n\r\n"
            await loop.sock_sendall(sock, body)
        if not closed:
            rest, closed = await _read(sock, started + read_for, answers=1, already=first)
            first = rest
    return interim, Exchange(first, time.monotonic() - started, closed)


async def _connected(port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, (LOOPBACK, port))
    return sock


async def _read(
    sock: socket.socket,
    deadline: float,
    answers: int | None,
    *,
    interim: bool = False,
    already: bytes = b"",
) -> tuple[bytes, bool]:
    """What arrives until the relay closes (True), `deadline`, `answers` complete answers, or
    (`interim`) the end of the first head."""
    loop = asyncio.get_running_loop()
    received = already
    try:
        while (left := deadline - time.monotonic()) > 0:
            if answers is not None and _answers_in(received) >= answers:
                break
            if interim and b"\r\n\r\n" in received:
                break
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
            except TimeoutError:
                break
            if not chunk:
                return received, True
            received += chunk
    except ConnectionResetError:
        return received, True
    return received, False


@contextlib.asynccontextmanager
async def held_open(port: int, count: int, first_bytes: bytes = b"") -> AsyncIterator[None]:
    """`count` connections that send `first_bytes` and then nothing, open while the block runs."""
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(count):
            _, writer = await asyncio.open_connection(LOOPBACK, port)
            if first_bytes:
                writer.write(first_bytes)
                await writer.drain()
            writers.append(writer)
        yield
    finally:
        for writer in writers:
            writer.close()
