"""Reference point for the benchmark: the cheapest useful webhook endpoint, publishing nothing.

aiohttp on uvloop, no access log; it checks the bearer token (constant time, as bytes) and parses
the body with orjson, then answers 200. Whatever the relay does beyond this (classification,
Kafka, metrics, headers) is the gap between its figure and this one.

    python -m bench.bare_server --port 8090 --token bench-token-0123456789
"""

from __future__ import annotations

import argparse
import hmac

import orjson
import uvloop
from aiohttp import web


def make_app(token: str, path: str) -> web.Application:
    expected = b"Bearer " + token.encode()

    async def webhook(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(auth, expected):
            return web.Response(status=401)
        try:
            doc = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400)
        if not isinstance(doc, dict):
            return web.Response(status=400)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post(path, webhook)
    return app


def arguments(description: str) -> argparse.ArgumentParser:
    """The command line every bench server has (this one, bench/floor_server.py)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--path", default="/webhook")
    ap.add_argument("--token", default="bench-token-0123456789")
    return ap


def serve(app: web.Application, args: argparse.Namespace) -> None:
    """Run `app` on uvloop, without an access log, until SIGTERM or SIGINT."""
    web.run_app(
        app, host=args.host, port=args.port, access_log=None, print=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


def main() -> None:
    args = arguments((__doc__ or "").split("\n\n")[0]).parse_args()
    serve(make_app(args.token, args.path), args)


if __name__ == "__main__":
    main()
