"""The hostile-input suite: a real relay process, attacked over raw sockets.

Each module starts the relays it needs as processes (`whatsapp-relay serve`, as users run it) with
short bounds so that timeouts show within a second or two, and reads what they answered, what
they counted, what they logged and how much memory they hold.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from devsupport import samples
from devsupport.ports import LOOPBACK
from devsupport.relay_process import RelayProcess
from relay import config
from relay.topics import create_topics
from tests.conftest import TOKEN, delete_topics, topic_size

APP_SECRET = "hostile-app-secret-0123456789"
BODY = samples.body(samples.envelope(samples.status_change()))

# Short bounds, so that every timeout in the suite shows within a couple of seconds; and every
# refusal logged, so that a test can find its request's line (test_floods keeps the default
# rate limit, and checks it).
SHORT_BOUNDS = {
    "RELAY_SERVER__HEADER_TIMEOUT_SECONDS": "1",
    "RELAY_SERVER__KEEPALIVE_TIMEOUT_SECONDS": "2",
    "RELAY_SERVER__BODY_READ_TIMEOUT_SECONDS": "3",
    "RELAY_LOG__RATE_LIMIT_SECONDS": "0",
}


@dataclass
class Target:
    """A relay process under attack."""

    process: RelayProcess
    settings: config.Settings

    @property
    def port(self) -> int:
        return self.process.port

    def rss_mib(self) -> float:
        assert self.process.process is not None
        status = Path(f"/proc/{self.process.process.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kib / 1024

    def metric(self, name: str, **labels: str) -> float:
        return self.process.metric(name, **labels)

    def outcome(self, outcome: str) -> float:
        return self.metric("whatsapp_relay_requests_total", outcome=outcome)

    async def until(self, name: str, at_least: float, within: float = 10.0) -> None:
        """Wait until the metric `name` reaches `at_least`: what the relay has seen, not a
        sleep that a loaded machine can outrun."""
        deadline = time.monotonic() + within
        while (value := self.metric(name)) < at_least:
            assert time.monotonic() < deadline, f"{name} is {value} after {within}s"
            await asyncio.sleep(0.02)

    def log(self) -> str:
        return self.process.log()

    async def published(self) -> int:
        bootstrap = self.settings.kafka.bootstrap_servers
        topics = self.settings.topics.names().values()
        return sum([await topic_size(bootstrap, name) for name in topics])


RelayStarter = Callable[..., Target]


@pytest.fixture(scope="module")
def start_relay(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayStarter]:
    """Start relay processes (bearer mode unless told otherwise); all stop at module end."""
    started: list[Target] = []
    prefix = f"hostile.{uuid.uuid4().hex[:10]}."

    def start(**env: str) -> Target:
        name = f"{prefix}{len(started)}"
        full_env = {
            "RELAY_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "RELAY_AUTH__BEARER_TOKENS": orjson.dumps([TOKEN]).decode(),
            **{f"RELAY_TOPICS__{t.value.upper()}": f"{name}.{t.value}" for t in config.EventType},
            **env,
        }
        settings = config.parse(None, full_env)
        _in_thread(create_topics(settings))
        log_path = tmp_path_factory.mktemp("relay") / "relay.log"
        target = Target(RelayProcess(full_env, log_path).start(), settings)
        started.append(target)
        return target

    yield start
    for target in started:
        target.process.terminate()
        target.process.wait(within=20)
    _in_thread(delete_topics(kafka_bootstrap, prefix=prefix))


def _in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to the end from sync code, whether or not a test's loop is running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=120)


@pytest.fixture(scope="module")
def bearer(start_relay: RelayStarter) -> Target:
    return start_relay(**SHORT_BOUNDS)


@pytest.fixture(scope="module")
def signature_only(start_relay: RelayStarter) -> Target:
    return start_relay(
        RELAY_AUTH__BEARER_TOKENS="[]",
        RELAY_AUTH__APP_SECRETS=orjson.dumps([APP_SECRET]).decode(),
        **SHORT_BOUNDS,
    )


# -- raw sockets ----------------------------------------------------------------------------


def head(*lines: bytes, token: bytes | None = TOKEN.encode(), length: int | None = None) -> bytes:
    """A POST head to the webhook, with the given extra header lines."""
    parts = [b"POST /webhook HTTP/1.1", b"Host: relay", b"Content-Type: application/json"]
    if token is not None:
        parts.append(b"Authorization: Bearer " + token)
    if length is not None:
        parts.append(b"Content-Length: %d" % length)
    return b"\r\n".join([*parts, *lines]) + b"\r\n\r\n"


@dataclass
class Exchange:
    answer: bytes
    seconds: float
    closed: bool  # the relay closed the connection (EOF or reset) within the read time

    @property
    def status(self) -> int:
        return int(self.answer.split(b" ", 2)[1]) if self.answer else 0

    @property
    def body(self) -> bytes:
        return self.answer.partition(b"\r\n\r\n")[2]

    def header(self, name: str) -> str | None:
        for line in self.answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None


async def exchange(
    port: int,
    *pieces: bytes,
    pause: float = 0.0,
    read_for: float = 5.0,
) -> Exchange:
    """Send `pieces` (with `pause` seconds between them), then read until the relay closes
    the connection or `read_for` seconds pass since the first byte was sent.

    A plain non-blocking socket, not asyncio streams: a stream raises a reset before handing
    over the answer that arrived ahead of it, and that answer is what the tests look at."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, (LOOPBACK, port))
    started = time.monotonic()
    try:
        for index, piece in enumerate(pieces):
            if index and pause:
                await asyncio.sleep(pause)
            await loop.sock_sendall(sock, piece)
    except OSError:
        pass  # the relay answered and closed while we were still sending; read what it said
    answer = b""
    closed = False
    deadline = started + read_for
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            answer += chunk
    except ConnectionResetError:
        closed = True
    finally:
        sock.close()
    return Exchange(answer, time.monotonic() - started, closed)


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


def small_send_buffer() -> socket.socket:
    """A client socket that cannot park megabytes in its own kernel buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    return sock
