"""The admin listener: /metrics, /healthz, /readyz. Never mounted on the public port.

A low-level handler like the public one, so both listeners share the bounded connection layer
(`relay.edge`): no version banner, no request bytes in a log line, bounded heads and idle time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from relay.metrics import Metrics
from relay.readiness import Readiness

_JSON = "application/json"

AdminHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def build_admin_handler(metrics: Metrics, readiness: Readiness) -> AdminHandler:
    prometheus = make_aiohttp_handler(metrics.registry)

    async def healthz(_request: web.BaseRequest) -> web.StreamResponse:
        # Liveness: answering at all proves the process and its event loop run. It must never
        # depend on Kafka, or a broker outage would have Kubernetes restart every replica.
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def readyz(_request: web.BaseRequest) -> web.StreamResponse:
        reason = readiness.reason
        if reason is None:
            degraded = readiness.degraded
            if degraded is None:
                return web.Response(body=b'{"status":"ready"}', content_type=_JSON)
            # Still ready (README, "Readiness and Kafka"), but say why webhooks get 503s.
            body = orjson.dumps({"status": "ready", "degraded": degraded})
            return web.Response(body=body, content_type=_JSON)
        body = orjson.dumps({"status": "not ready", "reason": reason})
        return web.Response(status=503, body=body, content_type=_JSON)

    routes: dict[str, AdminHandler] = {
        "/metrics": prometheus,  # type: ignore[dict-item]  # it takes any request
        "/healthz": healthz,
        "/readyz": readyz,
    }

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        route = routes.get(request.path)
        if route is None:
            return web.Response(status=404, body=b'{"status":"not_found"}', content_type=_JSON)
        if request.method not in ("GET", "HEAD"):
            response = web.Response(
                status=405, body=b'{"status":"method_not_allowed"}', content_type=_JSON
            )
            response.headers["Allow"] = "GET"
            return response
        return await route(request)

    return handle
