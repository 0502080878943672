"""Logging: one JSON object per line by default, plain text on request.

Context travels in `extra={...}`; the JSON formatter writes every such field. Nothing here ever
sees a body or a credential: callers pass ids and reasons only.
"""

from __future__ import annotations

import asyncio
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
    """A line for an event any client can cause at will (a refused request, malformed HTTP),
    bounded: a flood of them must not become a flood of log lines.

    Each kind of event (its outcome and reason) writes at most one line per `interval`; at the
    end of an interval in which more came, one line says how many were held back ("N more
    suppressed", field `suppressed`). So one kind costs at most two lines per interval however
    often it happens, and the kinds are few: the reasons are the relay's own words, never a
    client's. `interval` 0 writes every line."""

    def __init__(self, logger: logging.Logger, message: str, interval: float = 1.0) -> None:
        self._logger = logger
        self._message = message
        self._interval = interval
        self._kinds: dict[tuple[str, str], _Window] = {}

    def info(self, outcome: str, reason: str, **details: Any) -> None:
        """One event of the kind (`outcome`, `reason`); `details` (the request id, the peer)
        are on its line when it gets one."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        kind = (outcome, reason)
        window = self._kinds.get(kind)
        if window is None:
            # The reasons are the relay's words; should one ever carry a client's, its kinds
            # still share a bounded number of windows.
            if len(self._kinds) >= MAX_KINDS:
                kind = ("other", "other")
            window = self._kinds.setdefault(kind, _Window())
        now = time.monotonic()
        if now < window.next:
            window.held_back += 1
            if window.report is None:
                window.report = asyncio.get_running_loop().call_later(
                    window.next - now, self._report, kind, window
                )
            return
        window.next = now + self._interval
        self._logger.info(self._message, extra={"outcome": outcome, "reason": reason, **details})

    def _report(self, kind: tuple[str, str], window: _Window) -> None:
        # The interval ends here, also when the loop's clock woke this a little early.
        window.report = None
        window.next = 0.0
        held_back, window.held_back = window.held_back, 0
        outcome, reason = kind
        self._logger.info(
            f"{self._message}: {held_back} more suppressed",
            extra={"outcome": outcome, "reason": reason, "suppressed": held_back},
        )


# Distinct kinds of a rate-limited event; the relay has about thirty.
MAX_KINDS = 128


class _Window:
    __slots__ = ("held_back", "next", "report")

    def __init__(self) -> None:
        self.next = 0.0  # when the next line may be written
        self.held_back = 0
        self.report: asyncio.TimerHandle | None = None
