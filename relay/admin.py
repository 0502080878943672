"""The admin listener: /metrics, /healthz, /readyz. Never mounted on the public port."""

from __future__ import annotations

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from relay.metrics import Metrics
from relay.publish import Readiness

_JSON = "application/json"


def build_admin_app(metrics: Metrics, readiness: Readiness) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        # Liveness: answering at all proves the process and its event loop run. It must never
        # depend on Kafka, or a broker outage would have Kubernetes restart every replica.
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def readyz(_request: web.Request) -> web.Response:
        reason = readiness.reason
        if reason is None:
            degraded = readiness.degraded
            if degraded is None:
                return web.Response(body=b'{"status":"ready"}', content_type=_JSON)
            # Still ready (README, "Readiness"), but say why webhooks get 503s.
            body = orjson.dumps({"status": "ready", "degraded": degraded})
            return web.Response(body=body, content_type=_JSON)
        body = orjson.dumps({"status": "not ready", "reason": reason})
        return web.Response(status=503, body=body, content_type=_JSON)

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
