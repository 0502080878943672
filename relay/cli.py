"""Command line: `whatsapp-relay serve | check-config | topics create | tail TOPIC`.

Configuration errors end here, at the boundary: every bad key printed at once, exit code 2,
before anything listens.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson

from relay import __version__, config, logs, runtime
from relay.startup import StartupError

EXIT_CONFIG = 2
EXIT_FAILURE = 1
EXIT_TOPICS_DIFFER = 3  # `topics create`: existing topics are not as configured


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whatsapp-relay",
        description="WhatsApp Business webhooks in, raw payloads out on Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config",
            type=Path,
            default=None,
            help="YAML file (default: $RELAY_CONFIG, else config/relay.yaml if it exists)",
        )
        return sub

    with_config(commands.add_parser("serve", help="run the relay"))
    with_config(commands.add_parser("check-config", help="validate and print the effective config"))
    topics = commands.add_parser("topics", help="manage the relay's topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True)
    with_config(topic_commands.add_parser("create", help="create the configured topics"))
    tail = with_config(commands.add_parser("tail", help="print records of a topic"))
    tail.add_argument("topic", help="topic name, or an event type such as 'status'")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--max", type=int, default=None, help="stop after this many records")
    tail.add_argument(
        "--idle", type=float, default=None, help="stop after this many seconds without a record"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load(args.config)
        if args.command in ("serve", "check-config") and settings.serving_problems():
            raise config.ConfigError(settings.serving_problems())
    except config.ConfigError as exc:
        print(f"whatsapp-relay: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "check-config":
        sys.stdout.write(orjson.dumps(settings.redacted(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0

    logs.configure(settings.log.level, settings.log.format)
    if args.command == "serve":
        from relay.service import serve

        return _run(serve(settings))
    if args.command == "topics":
        return _run(_create_topics(settings))
    if args.command == "tail":
        from relay.tail import tail

        return _run(
            tail(
                settings,
                args.topic,
                from_beginning=args.from_beginning,
                limit=args.max,
                idle_seconds=args.idle,
            )
        )
    raise AssertionError(args.command)  # argparse only lets known commands through


async def _create_topics(settings: config.Settings) -> int:
    from relay.topics import create_topics

    results = await create_topics(settings)
    for result in results:
        print(f"{result.name}: {result.status}{' - ' + result.detail if result.detail else ''}")
    statuses = {result.status for result in results}
    if "failed" in statuses:
        return EXIT_FAILURE
    return EXIT_TOPICS_DIFFER if "differs" in statuses else 0


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a command on uvloop when installed; its result (None: 0) is the exit code."""
    try:
        result = runtime.event_loop_runner()(coro)
    except KeyboardInterrupt:
        return 0
    # A port already taken, missing extensions: the message says it all, no traceback.
    except (StartupError, OSError) as exc:
        logging.getLogger("relay").error("cannot start", extra={"error": str(exc)})
        return EXIT_FAILURE
    except Exception as exc:  # a failure the user can act on: say it plainly, exit non-zero
        logging.getLogger("relay").error("command failed", exc_info=exc)
        return EXIT_FAILURE
    return result or 0


if __name__ == "__main__":
    raise SystemExit(main())
