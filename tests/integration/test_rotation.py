"""Rotating the bearer token under a running relay process, as Kubernetes does it: the Secret's
files are swapped in place (tests/secret_mount.py) while senders keep posting.

The old token works until it is removed, the new one from the moment the relay has read it, no
request gets anything else in between, and every 200 is in Kafka. A refused or unreadable file
keeps the credentials in use; SIGHUP reads the files at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from devsupport import samples
from devsupport.relay_process import RelayProcess, http_status
from devsupport.topics import size as topic_size
from tests.relays import SettingsFactory, run_cli, settings_env
from tests.secret_mount import SecretMount

OLD = "rotation-old-token-0123456789"
NEW = "rotation-new-token-9876543210"
REFUSED = "sh0rt-t0ken"
VERIFY = "rotation-verify-token"
WORKERS_PER_TOKEN = 3
RELOADED = "whatsapp_relay_credentials_reloaded_total"
RELOAD_OK = "whatsapp_relay_credentials_last_reload_successful"
LOADED_AT = "whatsapp_relay_credentials_last_reload_success_timestamp_seconds"


@dataclass
class Sent:
    token: str
    sender: int
    started: float
    answered: float
    status: int


@dataclass
class Load:
    """Every request each sender made: when it was sent, when it was answered, and how.

    Client-side times only bound when the relay handled a request: after it was sent and
    before it was answered. So "answered before the file changed" means the relay handled it
    with the credentials from before, and "sent after the relay reported the reload" means
    with the new ones; in between, either. Each sender waits for its answer before sending
    again, so one sender's requests were handled in the order it sent them."""

    sent: list[Sent] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def answered_before(self, token: str, moment: float) -> set[int]:
        return {s.status for s in self.sent if s.token == token and s.answered < moment}

    def sent_after(self, token: str, moment: float) -> set[int]:
        return {s.status for s in self.sent if s.token == token and s.started > moment}

    def by_sender(self, token: str) -> list[list[int]]:
        senders = sorted({s.sender for s in self.sent if s.token == token})
        return [[s.status for s in self.sent if s.sender == n] for n in senders]


async def senders(url: str, tokens: tuple[str, ...], stop: asyncio.Event, load: Load) -> None:
    counter = iter(range(1_000_000))

    async def sender(http: aiohttp.ClientSession, token: str, number: int) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while not stop.is_set():
            body = samples.body(
                samples.envelope(samples.status_change(recipient=f"r{next(counter)}"))
            )
            started = time.monotonic()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    load.sent.append(
                        Sent(token, number, started, time.monotonic(), response.status)
                    )
            except (aiohttp.ClientError, ConnectionError) as exc:
                load.broken.append(repr(exc))
            await asyncio.sleep(0.005)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        numbers = iter(range(len(tokens) * WORKERS_PER_TOKEN))
        await asyncio.gather(
            *(
                sender(http, token, next(numbers))
                for token in tokens
                for _ in range(WORKERS_PER_TOKEN)
            )
        )


@dataclass
class Rotating:
    relay: RelayProcess
    mount: SecretMount
    topic: str
    bootstrap: str

    def write(self, tokens: list[str], verify: str = VERIFY) -> None:
        self.mount.write(
            {"bearer_tokens": "".join(f"{t}\n" for t in tokens), "verify_token": verify}
        )

    def reloads(self, result: str = "success") -> float:
        return self.relay.metric(RELOADED, result=result)

    async def wait_for(self, result: str, count: float, within: float = 10.0) -> float:
        """Until the relay counted `count` reloads with `result`; when it was seen."""
        deadline = time.monotonic() + within
        while self.reloads(result) < count:
            assert time.monotonic() < deadline, f"no {result} reload within {within}s"
            await asyncio.sleep(0.02)
        return time.monotonic()

    def verify(self, token: str) -> int:
        query = f"hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"
        return http_status(f"{self.relay.url}?{query}")


@pytest.fixture
async def rotating(
    make_settings: SettingsFactory, tmp_path: Path
) -> AsyncIterator[Callable[..., Rotating]]:
    started: list[RelayProcess] = []

    def start(*, watch_interval: float) -> Rotating:
        settings = make_settings()
        mount = SecretMount(tmp_path / f"secrets-{len(started)}")
        mount.write({"bearer_tokens": f"{OLD}\n", "verify_token": VERIFY})
        env = settings_env(settings)
        del env["RELAY_AUTH__BEARER_TOKENS"], env["RELAY_AUTH__VERIFY_TOKEN"]  # from files here
        env.update(
            RELAY_AUTH__BEARER_TOKENS_FILE=str(mount.path("bearer_tokens")),
            RELAY_AUTH__VERIFY_TOKEN_FILE=str(mount.path("verify_token")),
            RELAY_AUTH__WATCH_INTERVAL_SECONDS=str(watch_interval),
        )
        assert run_cli("topics", "create", env=env).returncode == 0
        relay = RelayProcess(env, tmp_path / f"relay-{len(started)}.log")
        started.append(relay)
        relay.start()
        return Rotating(relay, mount, settings.topics.status, settings.kafka.bootstrap_servers)

    yield start
    for relay in started:
        if relay.process is not None and relay.process.poll() is None:
            relay.terminate()
            assert relay.wait(within=20) == 0, relay.log()
        log = relay.log()
        for secret in (OLD, NEW, REFUSED, VERIFY):
            assert secret not in log, "a credential reached the log"


async def test_rotation_under_load_never_fails_a_request(
    rotating: Callable[..., Rotating],
) -> None:
    r = rotating(watch_interval=0.2)
    loaded_at = r.relay.metric(LOADED_AT)
    stop = asyncio.Event()
    load = Load()
    stream = asyncio.create_task(senders(r.relay.url, (OLD, NEW), stop, load))
    await asyncio.sleep(1.0)

    added = time.monotonic()
    r.write([OLD, NEW])
    added_seen = await r.wait_for("success", 1)
    await asyncio.sleep(1.0)  # both tokens in use, as while senders switch over
    removed = time.monotonic()
    r.write([NEW])
    removed_seen = await r.wait_for("success", 2)
    await asyncio.sleep(1.0)
    stop.set()
    await stream

    assert load.broken == []
    assert {s.status for s in load.sent} <= {200, 401}
    # The old token: accepted until it was removed, refused once the relay had read that.
    assert load.answered_before(OLD, removed) == {200}
    assert load.sent_after(OLD, removed_seen) == {401}
    # The new one: refused before it was added, accepted once the relay had read it.
    assert load.answered_before(NEW, added) == {401}
    assert load.sent_after(NEW, added_seen) == {200}
    # Each sender saw its token switch once and never back: the relay swapped one set of
    # credentials for the other.
    for token, before, after in ((OLD, 200, 401), (NEW, 401, 200)):
        for statuses in load.by_sender(token):
            switch = statuses.index(after)
            assert set(statuses[:switch]) <= {before}
            assert set(statuses[switch:]) == {after}, f"{token} flipped back"
    assert added_seen - added < 5
    assert removed_seen - removed < 5

    accepted = sum(1 for s in load.sent if s.status == 200)
    assert accepted > 100
    assert await topic_size(r.bootstrap, r.topic) == accepted
    # bearer:N is the N-th line of the file: NEW was line 1 while both were there, then line 0.
    used = r.relay.metric("whatsapp_relay_auth_success_total", credential="bearer:0")
    used += r.relay.metric("whatsapp_relay_auth_success_total", credential="bearer:1")
    assert used == accepted
    assert r.relay.metric("whatsapp_relay_auth_success_total", credential="bearer:1") > 0
    assert r.relay.metric(RELOAD_OK) == 1
    assert r.relay.metric(LOADED_AT) > loaded_at
    assert r.reloads("invalid") == r.reloads("unreadable") == 0


async def test_a_bad_file_keeps_the_credentials_in_use(rotating: Callable[..., Rotating]) -> None:
    r = rotating(watch_interval=0.2)
    stop = asyncio.Event()
    load = Load()
    stream = asyncio.create_task(senders(r.relay.url, (OLD,), stop, load))

    r.write([OLD, REFUSED])  # too short: the whole file is refused
    await r.wait_for("invalid", 1)
    assert r.relay.metric(RELOAD_OK) == 0
    assert r.relay.metric("whatsapp_relay_credentials_reloaded_total", result="success") == 0

    r.mount.write({"verify_token": VERIFY})  # bearer_tokens vanished: its link dangles
    await r.wait_for("unreadable", 1)
    assert r.relay.metric(RELOAD_OK) == 0

    r.write([OLD, NEW])
    await r.wait_for("success", 1)
    assert r.relay.metric(RELOAD_OK) == 1
    stop.set()
    await stream
    assert load.broken == []
    assert {s.status for s in load.sent} == {200}, "the old token kept working throughout"
    log = r.relay.log()
    assert "credential files refused" in log
    assert "shorter than 16 characters" in log
    assert "cannot read" in log


async def test_sighup_reads_the_files_at_once(rotating: Callable[..., Rotating]) -> None:
    r = rotating(watch_interval=0)  # no polling: only SIGHUP reloads
    r.write([NEW], verify="rotation-verify-token-2")
    await asyncio.sleep(0.5)
    assert r.reloads() == 0
    assert r.verify(VERIFY) == 200

    r.relay.signal(signal.SIGHUP)
    await r.wait_for("success", 1)
    assert r.verify(VERIFY) == 403
    assert r.verify("rotation-verify-token-2") == 200
    stop = asyncio.Event()
    load = Load()
    stream = asyncio.create_task(senders(r.relay.url, (OLD, NEW), stop, load))
    await asyncio.sleep(0.3)
    stop.set()
    await stream
    assert load.sent_after(OLD, 0) == {401}
    assert load.sent_after(NEW, 0) == {200}
    # SIGHUP reads again even when nothing changed.
    r.relay.signal(signal.SIGHUP)
    await r.wait_for("success", 2)
    assert r.relay.process is not None
    assert r.relay.process.poll() is None
