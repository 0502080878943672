"""The floor of the stack the relay is built on: the least a webhook endpoint can do and still
answer 200 only once Kafka has the body.

aiohttp on uvloop with one route, no access log, like bench/bare_server.py: it checks the bearer
token (constant time, as bytes) and parses the body with orjson; then it publishes the raw body
as one record, with a key and three headers, through an aiokafka producer configured as the
relay's (acks=all, idempotent, linger 0, the same batch size), and answers 200 once Kafka
acknowledged it. The record goes to the topic of the body's first change's event type, as the
relay's topics are laid out (one per type), since how many partitions the records spread over
changes how well they batch (measured, both at once on one core: everything on one topic gives
4% more acked/s and 4% less CPU at 1,000/s, so the layout is a small part of the floor). No
classification beyond that one look, no bounds, no metrics, one record per request: whatever
the relay costs beyond this is the relay's own work (docs/benchmark.md, "The floor").

    python -m bench.floor_server --port 8091 --bootstrap 127.0.0.1:9092 --topic-prefix bench.floor.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench.bare_server import arguments, serve

# The benchmark's own lists of Meta's field names (its oracle), not the relay's.
from bench.payloads import ACCOUNT_FIELDS, TEMPLATE_FIELDS

PRODUCER: web.AppKey[AIOKafkaProducer] = web.AppKey("producer", AIOKafkaProducer)
CONTENT_TYPE = b"application/json"
CE_TYPE = b"whatsapp.webhook"


def _first(doc: dict[str, Any]) -> tuple[bytes, str]:
    """The first entry's id (a WABA id: who the body is about, as cheaply as can be had) and
    the event type of its first change (docs/design.md §4, for that change only)."""
    try:
        entry = doc["entry"][0]
        change = entry["changes"][0]
        field, value = change["field"], change["value"]
    except (KeyError, IndexError, TypeError):
        return b"", "unrouted"
    key = str(entry.get("id", "")).encode()
    if field == "messages":
        kind = "status" if "statuses" in value else "message" if "messages" in value else "account"
        return key, kind
    if field in TEMPLATE_FIELDS:
        return key, "template"
    return key, "account" if field in ACCOUNT_FIELDS else "unrouted"


def make_app(token: str, path: str, bootstrap: str, topic_prefix: str) -> web.Application:
    expected = b"Bearer " + token.encode()

    async def producer(app: web.Application) -> AsyncIterator[None]:
        # Built on the app's loop, as aiokafka requires, and as the relay builds its own.
        kafka = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            # The relay's batch size (kafka.max_batch_size): aiokafka's 16 KiB default holds a
            # handful of webhooks, and a floor that batches worse than the relay is no floor.
            max_batch_size=256 * 1024,
        )
        await kafka.start()
        app[PRODUCER] = kafka
        yield
        await kafka.stop()

    async def webhook(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(auth, expected):
            return web.Response(status=401)
        body = await request.read()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return web.Response(status=400)
        if not isinstance(doc, dict):
            return web.Response(status=400)
        headers = [
            ("ce_id", hashlib.sha256(body).hexdigest().encode()),
            ("ce_type", CE_TYPE),
            ("content-type", CONTENT_TYPE),
        ]
        key, kind = _first(doc)
        try:
            sent = await request.app[PRODUCER].send(
                topic_prefix + kind, body, key=key, headers=headers
            )
            await sent
        except Exception:  # any Kafka failure: the sender must retry
            return web.Response(status=503)
        return web.Response(status=200)

    app = web.Application()
    app.cleanup_ctx.append(producer)
    app.router.add_post(path, webhook)
    return app


def main() -> None:
    ap = arguments((__doc__ or "").split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument(
        "--topic-prefix", required=True, help="the topics: this followed by the event type"
    )
    args = ap.parse_args()
    serve(make_app(args.token, args.path, args.bootstrap, args.topic_prefix), args)


if __name__ == "__main__":
    main()
