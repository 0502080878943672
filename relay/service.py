"""The relay's lifecycle: start, serve until told to stop, shut down within a bound.

Shutdown order (SIGTERM or SIGINT):
1. readiness turns 503 at once, so Kubernetes stops routing here;
2. for `shutdown.drain_seconds` requests are still served normally (load balancers lag);
3. the public listener stops accepting; requests on open connections get 503 and
   `Connection: close`, requests in flight finish (200 once acked, else 503);
4. with the spool on, it drains to Kafka for what is left of the bound and keeps the rest on
   disk; the producer flushes and closes, bounded even when Kafka is away;
5. the admin listener closes last, so the drain stays observable.
Steps 3 and 4 share `shutdown.timeout_seconds`.

SIGHUP reads the credential files again (relay.credentials); they are also watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl

from aiohttp import web

from relay import __version__, edge, edge_check, runtime
from relay.admin import build_admin_handler
from relay.auth import Authenticator
from relay.config import Settings
from relay.credentials import CredentialReloader
from relay.metrics import Metrics
from relay.publish import ProducerFactory, Publisher
from relay.readiness import Readiness
from relay.spool.publisher import SpoolingPublisher
from relay.startup import StartupError
from relay.webhook import RecordPublisher, WebhookHandler

log = logging.getLogger("relay.service")

# After in-flight requests finish, give keep-alive clients this long to send their next
# request and get a clean 503 + close, rather than racing an idle-connection close.
_LINGER_SECONDS = 0.5


class Service:
    def __init__(
        self, settings: Settings, *, producer_factory: ProducerFactory | None = None
    ) -> None:
        self.settings = settings
        authenticator = Authenticator.of(settings.auth)
        self.metrics = Metrics(
            __version__,
            credentials=authenticator.labels,
            unrouted_fields=(f for f, t in settings.routing.fields.items() if t == "unrouted"),
        )
        self.publisher = Publisher(settings, self.metrics, producer_factory=producer_factory)
        # With the spool off the handler publishes through `publisher` itself (docs/design.md §9).
        self.spool = (
            SpoolingPublisher(settings, self.metrics, self.publisher)
            if settings.spool.enabled
            else None
        )
        publish: RecordPublisher = self.spool or self.publisher
        self.readiness = Readiness(self.publisher.kafka, self.publisher.producer_alive, self.spool)
        self.handler = WebhookHandler(settings, self.metrics, publish, authenticator)
        readiness, handler = self.readiness, self.handler

        def use(authenticator: Authenticator) -> None:
            handler.authenticator = authenticator

        self.credentials = CredentialReloader(settings.auth, self.metrics, use)
        self._background: list[asyncio.Task[None]] = []  # stopped after the public listener
        self.metrics.inflight.set_function(lambda: handler.inflight)
        self.metrics.inflight_limit.set(settings.server.max_inflight_requests)
        self.metrics.kafka_ready.set_function(lambda: int(readiness.kafka_ready))
        self.metrics.ready.set_function(lambda: int(readiness.reason is None))
        self._public: web.ServerRunner | None = None
        self._admin: web.ServerRunner | None = None
        self._public_site: web.TCPSite | None = None
        self._stop = asyncio.Event()
        self.public_port = 0
        self.admin_port = 0

    async def start(self) -> None:
        server, admin = self.settings.server, self.settings.admin
        if self.settings.serving_problems():
            raise StartupError("; ".join(self.settings.serving_problems()))
        missing = runtime.missing_c_extensions()
        if missing and server.require_c_extensions:
            raise StartupError(
                f"compiled extensions missing: {', '.join(missing)} (reinstall aiohttp and "
                "aiokafka from their wheels, unset AIOHTTP_NO_EXTENSIONS / "
                "AIOKAFKA_NO_EXTENSIONS, or set server.require_c_extensions: false to run "
                "slower)"
            )
        if missing:
            log.warning("running without compiled extensions", extra={"missing": missing})
        await edge_check.self_check()
        limits = edge.EdgeLimits.of(server)
        admin_server = edge.EdgeServer(
            build_admin_handler(self.metrics, self.readiness),
            limits,
            log_interval=self.settings.log.rate_limit_seconds,
        )
        self._admin = web.ServerRunner(admin_server, handle_signals=False, shutdown_timeout=1.0)
        await self._admin.setup()
        admin_site = web.TCPSite(self._admin, admin.host, admin.port)
        await admin_site.start()
        self.admin_port = admin_site.port

        if self.spool is not None:
            await self.spool.open()  # before the producer: a directory in use fails the start
        await self.publisher.start()
        if self.spool is not None:
            self.spool.start_draining()
        lag = runtime.watch_loop_lag(self.metrics.event_loop_lag.observe)
        self._background.append(asyncio.create_task(lag, name="loop-lag"))
        if self.credentials.watching:
            await self.credentials.catch_up()
            self._background.append(asyncio.create_task(self.credentials.run(), name="credentials"))

        public_server = edge.EdgeServer(
            self.handler,
            limits,
            self.metrics,
            access_log=logging.getLogger("aiohttp.access") if server.access_log else None,
            log_interval=self.settings.log.rate_limit_seconds,
        )
        self.metrics.connections.set_function(lambda: len(public_server.open))
        self.metrics.connection_limit.set(server.max_connections)
        # The service waits for in-flight requests itself (within the shutdown bound); what is
        # left for aiohttp's own wait is closing connections, hence the short timeout.
        self._public = web.ServerRunner(public_server, handle_signals=False, shutdown_timeout=1.0)
        await self._public.setup()
        self._public_site = web.TCPSite(
            self._public, server.host, server.port, ssl_context=_tls_context(self.settings)
        )
        await self._public_site.start()
        self.public_port = self._public_site.port
        self.readiness.accepting = True
        log.info(
            "relay serving",
            extra={
                "version": __version__,
                "public": f"{server.host}:{self.public_port}",
                "admin": f"{admin.host}:{self.admin_port}",
                "tls": server.tls_cert_file is not None,
                "config": self.settings.redacted(),
                "kafka": self.publisher.broker_info,
                "runtime": runtime.describe(),
            },
        )

    def request_stop(self) -> None:
        self._stop.set()

    def reload_credentials(self) -> None:
        self.credentials.request()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.readiness.shutting_down = True
        log.info("shutting down", extra={"inflight": self.handler.inflight})
        if self.settings.shutdown.drain_seconds:
            await asyncio.sleep(self.settings.shutdown.drain_seconds)
        deadline = loop.time() + self.settings.shutdown.timeout_seconds

        if self._public_site is not None:
            await self._public_site.stop()  # stop accepting; open connections stay
        self.handler.closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self.handler.wait_idle()
        await asyncio.sleep(min(_LINGER_SECONDS, max(0.0, deadline - loop.time())))
        if self._public is not None:
            await self._public.cleanup()

        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.spool is not None:
            await self.spool.stop(deadline)  # drains within the bound, leaves the rest on disk
        flushed = await self.publisher.stop(max(0.5, deadline - loop.time()))
        if self._admin is not None:
            await self._admin.cleanup()
        log.info(
            "stopped",
            extra={"seconds": round(loop.time() - started, 3), "producer_flushed": flushed},
        )


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    server = settings.server
    if server.tls_cert_file is None or server.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    return context


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads credentials."""
    service = Service(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)
    loop.add_signal_handler(signal.SIGHUP, service.reload_credentials)
    try:
        await service.start()
        runtime.tune_gc()  # once per process, after start-up built the long-lived objects
        await service.wait_stopped()
    finally:
        await service.shutdown()
