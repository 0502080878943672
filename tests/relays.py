"""The relay a test talks to, and how a test starts it.

`RelayUnderTest` is the one type for it, however it runs:

- in a process of its own (`whatsapp-relay serve`, as users run it), from the same settings
  turned into its environment: the hostile-input and specification suites, and any test about
  the process (signals, logs, memory);
- in this process, on the test's event loop: the whole `Service` against a real broker, or,
  for the broker-free matrix of tests/edge, the webhook handler behind the real connection layer
  publishing into a `FakePublisher`.

Whichever it is, a test reaches it the same way: its ports and URLs, its counters (`metric`,
`outcome`), what it published, its log (a process's). The credentials every relay under test
accepts are here too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.errors import KafkaError
from prometheus_client import generate_latest

from devsupport import topics
from devsupport.ports import LOOPBACK
from devsupport.relay_process import RELAY, RelayProcess, sample
from relay import config
from relay.auth import Authenticator
from relay.edge import EdgeLimits, EdgeServer
from relay.metrics import Metrics
from relay.outcomes import Outcome
from relay.records import Record
from relay.service import Service
from relay.topics import create_topics
from relay.webhook import WebhookHandler

TOKEN = "test-token-0123456789"
SECOND_TOKEN = "test-token-rotated-abcdef"
APP_SECRET = "test-app-secret-fedcba9876"
VERIFY_TOKEN = "test-verify-token"

SettingsFactory = Callable[..., config.Settings]


def relay_settings(
    bootstrap: str, topic_prefix: str, **overrides: dict[str, Any]
) -> config.Settings:
    """Settings for a relay under test: loopback, ephemeral ports, both bearer tokens and the
    verify token, topics named `<topic_prefix><event type>`, then `section={key: value}`
    overrides."""
    data: dict[str, Any] = {
        "server": {"host": LOOPBACK, "port": 0},
        "admin": {"host": LOOPBACK, "port": 0},
        "auth": {"bearer_tokens": [TOKEN, SECOND_TOKEN], "verify_token": VERIFY_TOKEN},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "readiness_interval_seconds": 0.5,
            "request_timeout_ms": 5000,
        },
        "topics": {t.value: f"{topic_prefix}{t.value}" for t in config.EventType},
        "shutdown": {"timeout_seconds": 5},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return config.Settings.model_validate(data)


# A process listens where devsupport.relay_process puts it; a credential read from a file is
# read from that file, so that the process follows it.
_NOT_INHERITED = {("server", "host"), ("server", "port"), ("admin", "host"), ("admin", "port")}


def settings_env(settings: config.Settings) -> dict[str, str]:
    """The environment under which a relay process has `settings` (every key that differs
    from its default), except where it listens."""
    env = {}
    for section_name in config.Settings.model_fields:
        section = getattr(settings, section_name)
        defaults = type(section)()
        from_files = {key.removesuffix("_file") for key in vars(section) if key.endswith("_file")}
        for key in type(section).model_fields:
            value = getattr(section, key)
            if (section_name, key) in _NOT_INHERITED or value == getattr(defaults, key):
                continue
            if key in from_files and getattr(section, f"{key}_file") is not None:
                continue
            env[f"RELAY_{section_name.upper()}__{key.upper()}"] = _env_text(value)
    return env


def _env_text(value: Any) -> str:
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value)
    return str(value)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """`python -m relay <args>` with `env` added to this process's environment."""
    return subprocess.run(
        [*RELAY, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def delete_topics(bootstrap: str, *, prefix: str) -> None:
    """A test's topics, once it is done; a broker that does not answer is not the test's fault."""
    # The usual reason: a private broker a test stopped; its state dir is deleted with it.
    with contextlib.suppress(KafkaError):
        await topics.delete_prefixed(bootstrap, prefix)


def in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to the end from sync code, whether or not a test's loop is running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=120)


@dataclass
class FakePublisher:
    """Keeps what it is given, or fails as told: Kafka for the broker-free tests (tests/edge)."""

    failure: BaseException | None = None
    published: list[Record] = field(default_factory=list)

    async def publish(self, records: list[Record]) -> None:
        if self.failure is not None:
            raise self.failure
        self.published.extend(records)


class RelayUnderTest:
    """A relay a test drives; start it with one of the class methods."""

    def __init__(
        self,
        settings: config.Settings,
        port: int,
        *,
        admin_port: int | None = None,
        service: Service | None = None,
        process: RelayProcess | None = None,
        handler: WebhookHandler | None = None,
        metrics: Metrics | None = None,
        publisher: FakePublisher | None = None,
        runner: aiohttp.web.ServerRunner | None = None,
    ) -> None:
        self.settings = settings
        self.port = port
        self.admin_port = admin_port
        self.service = service
        self.process = process
        self.handler = handler
        self.publisher = publisher
        self._metrics = metrics
        self._runner = runner
        self._http: aiohttp.ClientSession | None = None

    # -- starting and stopping ------------------------------------------------------------------

    @classmethod
    async def in_process(
        cls, settings: config.Settings, *, create: bool = True, ready: bool = True
    ) -> RelayUnderTest:
        """The whole relay (`Service`) on this event loop, with its topics made unless told
        not to, ready (Kafka answered, topics found) unless told not to wait."""
        if create:
            results = await create_topics(settings)
            assert {r.status for r in results} <= {"created", "exists"}, results
        service = Service(settings)
        await service.start()
        relay = cls.around(service)
        if ready:
            await relay.wait_ready()
        return relay

    @classmethod
    def around(cls, service: Service) -> RelayUnderTest:
        """A `Service` a test built and started itself (a producer factory of its own)."""
        return cls(
            service.settings,
            service.public_port,
            admin_port=service.admin_port,
            service=service,
            handler=service.handler,
            metrics=service.metrics,
        )

    @classmethod
    async def without_broker(
        cls, settings: config.Settings, publisher: FakePublisher
    ) -> RelayUnderTest:
        """The webhook handler behind the real connection layer on a loopback port, publishing
        into `publisher`: every answer of the HTTP contract, no Kafka, no admin listener."""
        authenticator = Authenticator.of(settings.auth)
        metrics = Metrics("test", credentials=authenticator.labels)
        handler = WebhookHandler(settings, metrics, publisher, authenticator)
        edge = EdgeServer(handler, EdgeLimits.of(settings.server), metrics)
        runner = aiohttp.web.ServerRunner(edge, handle_signals=False)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return cls(
            settings, port, handler=handler, metrics=metrics, publisher=publisher, runner=runner
        )

    @classmethod
    def subprocess(
        cls, settings: config.Settings, log_path: Path, *, create: bool = True, ready: bool = True
    ) -> RelayUnderTest:
        """`whatsapp-relay serve` in a process of its own, under `settings` (as its
        environment), logging to `log_path`. Blocks until it answers /readyz (or /healthz)."""
        if create:
            in_thread(create_topics(settings))
        process = RelayProcess(settings_env(settings), log_path).start(ready=ready)
        return cls(settings, process.port, admin_port=process.admin_port, process=process)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.service is not None:
            await self.service.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.process is not None:
            await asyncio.to_thread(self.stop_process)

    def stop_process(self) -> None:
        """SIGTERM, as Kubernetes stops it; it must exit in time, and cleanly (a process the
        test stopped already is left as it is)."""
        assert self.process is not None
        if not self.process.alive():
            return
        self.process.terminate()
        assert self.process.wait(within=20) == 0, self.process.log_tail()

    async def wait_ready(self, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while not await self._ready():
                await asyncio.sleep(0.05)

    async def _ready(self) -> bool:
        if self.service is not None:
            return self.service.readiness.reason is None
        assert self.process is not None, "a relay without a broker is never ready"
        status, _ = await asyncio.to_thread(self.process.admin_get, "/readyz")
        return status == 200

    # -- talking to it ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.settings.server.path}"

    @property
    def admin_url(self) -> str:
        assert self.admin_port is not None, "a relay without a broker has no admin listener"
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def http(self) -> aiohttp.ClientSession:
        """An HTTP client session of the test's event loop, closed when the relay stops."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def post(
        self, body: bytes, *, token: str | None = TOKEN, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """A webhook POST through aiohttp's client; the answer, its body read."""
        sent = {"Content-Type": "application/json"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        # aiohttp warns that large raw bytes block the loop; a file-like body streams.
        data: Any = io.BytesIO(body) if len(body) > 1_000_000 else body
        async with self.http.post(self.url, data=data, headers=sent) as response:
            await response.read()
            return response

    # -- what it did ------------------------------------------------------------------------

    def exposition(self) -> str:
        """Its metrics as /metrics shows them (read from the registry when it runs here)."""
        if self._metrics is not None:
            return generate_latest(self._metrics.registry).decode()
        assert self.process is not None
        status, body = self.process.admin_get("/metrics")
        assert status == 200, status
        return body.decode()

    def metric(self, name: str, **labels: str) -> float:
        """One sample, by name and labels (all of them, in the order the relay exports them)."""
        return sample(self.exposition(), name, **labels)

    def outcome(self, outcome: Outcome | str) -> float:
        """How many requests ended in `outcome`."""
        return self.metric("whatsapp_relay_requests_total", outcome=str(outcome))

    async def until(self, name: str, at_least: float, within: float = 10.0) -> None:
        """Wait until the metric `name` reaches `at_least`: what the relay has seen, not a
        sleep that a loaded machine can outrun."""
        deadline = time.monotonic() + within
        while (value := self.metric(name)) < at_least:
            assert time.monotonic() < deadline, f"{name} is {value} after {within}s"
            await asyncio.sleep(0.02)

    async def published(self) -> int:
        """How many records it published: read back from its topics, or the fake's count."""
        if self.publisher is not None:
            return len(self.publisher.published)
        bootstrap = self.settings.kafka.bootstrap_servers
        names = self.settings.topics.names().values()
        return sum([await topics.size(bootstrap, name) for name in names])

    def log(self) -> str:
        """What a relay process logged (one that runs here logs into pytest's caplog)."""
        assert self.process is not None, "an in-process relay logs into caplog"
        return self.process.log()

    def rss_mib(self) -> float:
        """A relay process's resident memory."""
        assert self.process is not None
        assert self.process.pid is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kib / 1024


class Relays:
    """The relays one test (or one module) started, all stopped at its end. Calling it starts
    one from `section={key: value}` overrides of the suite's settings."""

    def __init__(self, settings: SettingsFactory, log_dir: Path) -> None:
        self.settings = settings  # the suite's settings, with overrides
        self._log_dir = log_dir
        self.started: list[RelayUnderTest] = []

    async def __call__(
        self, *, process: bool = False, ready: bool = True, **overrides: dict[str, Any]
    ) -> RelayUnderTest:
        return await self.start(self.settings(**overrides), process=process, ready=ready)

    async def start(
        self,
        settings: config.Settings,
        *,
        process: bool = False,
        ready: bool = True,
        create: bool = True,
    ) -> RelayUnderTest:
        """A relay under `settings`, in this process or, with `process`, in its own."""
        if process:
            log_path = self._log_dir / f"relay-{len(self.started)}.log"
            relay = await asyncio.to_thread(
                RelayUnderTest.subprocess, settings, log_path, create=create, ready=ready
            )
        else:
            relay = await RelayUnderTest.in_process(settings, create=create, ready=ready)
        self.started.append(relay)
        return relay

    def start_process(self, **overrides: dict[str, Any]) -> RelayUnderTest:
        """From sync code (a module's fixture): a relay process from overrides."""
        log_path = self._log_dir / f"relay-{len(self.started)}.log"
        relay = RelayUnderTest.subprocess(self.settings(**overrides), log_path)
        self.started.append(relay)
        return relay

    async def stop(self) -> None:
        for relay in self.started:
            await relay.stop()

    def stop_processes(self) -> None:
        for relay in self.started:
            relay.stop_process()
