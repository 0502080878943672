"""devsupport's own promises, with real sockets, processes and the session's broker: distinct
free ports, loopback-only GETs, a relay process's environment, readiness and stop, topics made,
described and deleted. A stand-in server plays the relay's admin port (the real relay runs in
test_cli, test_shutdown and the rest); scripts/local-kafka is test_local_kafka's. A few seconds.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from devsupport import topics
from devsupport.ports import LOOPBACK, free_ports
from devsupport.relay_process import RelayProcess, RelayStartError, http_get

# Answers /readyz 200 on RELAY_ADMIN__PORT, like the relay's admin port, and exits 0 on SIGTERM.
STAND_IN = """
import http.server, os, signal, sys
class Admin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
address = (os.environ["RELAY_ADMIN__HOST"], int(os.environ["RELAY_ADMIN__PORT"]))
server = http.server.HTTPServer(address, Admin)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("listening on", os.environ["RELAY_SERVER__HOST"], flush=True)
server.serve_forever()
"""


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, port))


@pytest.mark.parametrize("url", ["http://example.com/", "file:///etc/passwd", "http://[::1]:1/"])
def test_http_get_is_for_loopback_servers_only(url: str) -> None:
    with pytest.raises(ValueError, match="not a loopback http URL"):
        http_get(url)


def test_the_callers_environment_wins_over_the_listening_addresses(tmp_path: Path) -> None:
    relay = RelayProcess(
        {"RELAY_SERVER__PORT": "1234", "EXTRA": "x"},
        tmp_path / "relay.log",
        config=tmp_path / "relay.yaml",
        base_env={"INHERITED": "y", "RELAY_ADMIN__PORT": "1"},
    )
    assert relay.env["RELAY_SERVER__PORT"] == "1234"
    assert relay.env["RELAY_ADMIN__PORT"] == str(relay.admin_port)
    assert relay.env["RELAY_SERVER__HOST"] == relay.env["RELAY_ADMIN__HOST"] == LOOPBACK
    assert (relay.env["EXTRA"], relay.env["INHERITED"]) == ("x", "y")
    assert relay.args == [
        sys.executable,
        "-m",
        "relay",
        "serve",
        "--config",
        str(tmp_path / "relay.yaml"),
    ]
    assert relay.port != relay.admin_port


def test_start_waits_for_readiness_and_stop_sends_sigterm(tmp_path: Path) -> None:
    relay = RelayProcess({}, tmp_path / "relay.log", command=[sys.executable, "-c", STAND_IN])
    relay.start(within=20)
    try:
        assert relay.admin_get("/readyz") == (200, b"")
        stopped = relay.stop(within=10)
    finally:
        relay.kill()
    assert stopped is not None
    assert (stopped.exit_code, stopped.killed) == (0, False)
    assert stopped.seconds is not None
    assert f"listening on {LOOPBACK}" in relay.log()


def test_a_relay_that_exits_at_startup_says_so_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('bad config: kafka.lingr_ms'); raise SystemExit(2)"]
    relay = RelayProcess({}, tmp_path / "relay.log", command=command)
    with pytest.raises(RelayStartError, match="exited with code 2") as raised:
        relay.start(within=20)
    assert "bad config: kafka.lingr_ms" in str(raised.value)


# Listens on nothing and ignores SIGTERM: only a kill ends it.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""


def test_a_relay_that_never_gets_ready_is_killed(tmp_path: Path) -> None:
    relay = RelayProcess({}, tmp_path / "relay.log", command=[sys.executable, "-c", STUBBORN])
    with pytest.raises(RelayStartError, match="did not answer /readyz with 200 within 1"):
        relay.start(within=1)
    assert relay.process is not None
    assert relay.process.returncode == -signal.SIGKILL


def test_stop_kills_a_relay_that_outlives_its_bound(tmp_path: Path) -> None:
    relay = RelayProcess({}, tmp_path / "relay.log", command=[sys.executable, "-c", STUBBORN])
    relay.launch()
    try:
        deadline = time.monotonic() + 20
        while "ignoring SIGTERM" not in relay.log() and time.monotonic() < deadline:
            time.sleep(0.02)  # a SIGTERM before the handler is set would end it
        stopped = relay.stop(within=0.5)
    finally:
        relay.kill()
    assert stopped is not None
    assert (stopped.exit_code, stopped.killed) == (-signal.SIGKILL, True)


async def test_topics_are_made_as_asked_read_back_and_deleted(kafka_bootstrap: str) -> None:
    prefix = f"devsupport.{uuid.uuid4().hex[:10]}."
    names = [f"{prefix}a", f"{prefix}b"]
    await topics.create(kafka_bootstrap, names, partitions=2, replication=1)
    try:
        assert await topics.partitions(kafka_bootstrap, names) == {n: [0, 1] for n in names}
        described = await topics.describe(kafka_bootstrap, names)
        assert sorted((p["topic"], p["partition"]) for p in described) == [
            (n, p) for n in names for p in (0, 1)
        ]
        assert all(len(p["replicas"]) == 1 for p in described)
        await topics.delete(kafka_bootstrap, names[:1])
        await gone(kafka_bootstrap, names[:1])
        with pytest.raises(LookupError, match="cannot be read back"):
            await topics.partitions(kafka_bootstrap, names)
    finally:
        await topics.delete_prefixed(kafka_bootstrap, prefix)
    await gone(kafka_bootstrap, names)


async def gone(bootstrap: str, names: list[str]) -> None:
    """Until no broker describes the topics any more (a cluster's brokers learn it in turn)."""
    async with asyncio.timeout(20):
        while await topics.describe(bootstrap, names):
            await asyncio.sleep(0.2)
