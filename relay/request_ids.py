"""Request ids: what links a request's answer, its log lines and its Kafka records.

A request's id is its own `X-Request-Id` when that is 1 to 128 characters of `[A-Za-z0-9._:-]`
(so an ingress's id links its access log to the relay's lines); anything else is replaced by
a generated one, so the only header value that may reach a log line or an answer can carry no
line break, quote or control character (README, "Security").
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping

_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class _Generator:
    """32 hex characters: a random prefix drawn once per process, then a counter. Unique like
    a random id, without a system call per request; drawn on first use, not at import."""

    def __init__(self) -> None:
        self._prefix = ""
        self._count = itertools.count()

    def __call__(self) -> str:
        if not self._prefix:
            self._prefix = os.urandom(8).hex()
        return f"{self._prefix}{next(self._count):016x}"


new = _Generator()


def of(headers: Mapping[str, str]) -> str:
    """The id of a request with these headers: its own if sane, else a new one."""
    given = headers.get("X-Request-Id")
    if given is not None and _SANE.fullmatch(given):
        return given
    return new()
