"""What a flood of refused requests costs in log: bytes and lines written while a relay process
answers N credential guesses (README, "Security").

    .venv/bin/python -m bench.refusal_logs --bootstrap 127.0.0.1:9092 --requests 100000

Starts `whatsapp-relay serve` (bearer mode, JSON logs at INFO, as shipped) on free loopback
ports with topics of its own, waits until it is ready, then sends `--requests` POSTs with a
wrong bearer token, each on a connection of its own (a refused request's connection is closed),
`--concurrency` at a time. Prints what the log grew by during the flood (and one second after
it, so that a line a rate limit holds back until the end of its interval is counted), per
message, and the relay's own count of the refusals. `--relay-cmd` runs another version of the
relay, e.g. `<its venv>/bin/whatsapp-relay serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from devsupport import topics
from devsupport.ports import LOOPBACK
from devsupport.relay_process import RelayProcess

TOKEN = "refusal-logs-token-0123456789"  # noqa: S105 - a benchmark credential, never a real one
GUESS = b"guess-token-0000000000000000"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
EVENT_TYPES = ("message", "status", "template", "account", "unrouted")
# After the flood: one rate-limit interval, so that its last line is written too.
SETTLE_S = 1.5


def guess(port: int) -> bytes:
    return (
        b"POST /webhook HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (LOOPBACK.encode(), port, GUESS, len(BODY), BODY)
    )


async def flood(port: int, requests: int, concurrency: int) -> Counter[int]:
    """`requests` wrong-token POSTs, each on its own connection; how many got each status."""
    raw = guess(port)
    statuses: Counter[int] = Counter()
    next_index = iter(range(requests))

    async def sender() -> None:
        for _ in next_index:
            status = 0
            try:
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
                writer.write(raw)
                answer = await asyncio.wait_for(reader.read(), 10)
                writer.close()
                status = int(answer.split(b" ", 2)[1]) if answer else 0
            except (OSError, TimeoutError, ValueError, IndexError):
                pass
            statuses[status] += 1

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return statuses


async def measure(args: argparse.Namespace, log_path: Path) -> dict[str, object]:
    prefix = f"refusal-logs.{uuid.uuid4().hex[:8]}"
    names = {t: f"{prefix}.{t}" for t in EVENT_TYPES}
    await topics.create(args.bootstrap, names.values(), partitions=1, replication=1)
    env = {
        "RELAY_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
        "RELAY_AUTH__BEARER_TOKENS": json.dumps([TOKEN]),
        "RELAY_LOG__LEVEL": "INFO",
        "RELAY_LOG__FORMAT": "json",
        **{f"RELAY_TOPICS__{t.upper()}": name for t, name in names.items()},
    }
    command = shlex.split(args.relay_cmd) if args.relay_cmd else None
    relay = RelayProcess(env, log_path, command=command, new_session=True)
    try:
        relay.start(within=60)
        await asyncio.sleep(1.0)  # start-up lines written
        before = (await asyncio.to_thread(log_path.stat)).st_size
        started = time.monotonic()
        statuses = await flood(relay.port, args.requests, args.concurrency)
        seconds = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        grown = await asyncio.to_thread(lambda: log_path.read_bytes()[before:])
        refused = relay.metric("whatsapp_relay_requests_total", outcome="unauthorized")
    finally:
        relay.stop()
        await topics.delete(args.bootstrap, names.values())
    lines = grown.decode(errors="replace").splitlines()
    # "request rejected: 4321 more suppressed" counts as "request rejected: N more suppressed".
    messages = Counter(
        re.sub(r"\d+", "N", json.loads(line).get("msg", "?")) for line in lines if line[:1] == "{"
    )
    return {
        "requests": args.requests,
        "statuses": dict(statuses),
        "relay_counted_unauthorized": refused,
        "flood_seconds": round(seconds, 1),
        "requests_per_second": round(args.requests / seconds),
        "log_bytes": len(grown),
        "log_lines": len(lines),
        "log_bytes_per_second": round(len(grown) / (seconds + SETTLE_S)),
        "lines_by_message": dict(messages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.refusal_logs", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="a Kafka broker for the relay's topics")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--relay-cmd", default=None, help="the relay's serve command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(args, Path(tmp) / "relay.log"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
