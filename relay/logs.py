"""Logging: one JSON object per line by default, plain text on request.

Context travels in `extra={...}`; the JSON formatter writes every such field. Nothing here ever
sees a body or a credential: callers pass ids and reasons only.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return text


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every reconnect attempt at error level while a broker is away; the relay
    # reports that state once, through readiness, instead.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)


class RateLimitedLog:
    """At most one INFO line per `interval` for an event any client can cause at will (a flood
    of malformed requests must not become a flood of log lines); the next line counts the ones
    held back."""

    def __init__(self, logger: logging.Logger, message: str, interval: float = 1.0) -> None:
        self._logger = logger
        self._message = message
        self._interval = interval
        self._next = 0.0
        self._held_back = 0

    def info(self, **fields: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held_back += 1
            return
        self._next = now + self._interval
        self._logger.info(self._message, extra={**fields, "held_back": self._held_back})
        self._held_back = 0
