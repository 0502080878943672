"""Lines a client can cause are bounded: one per kind and interval, then one counting the rest."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from relay import logs
from relay.logs import RateLimitedLog

log = logging.getLogger("test.ratelimited")


FIELDS = ("outcome", "reason", "request_id", "suppressed")


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [
        (record.getMessage(), {k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        for record in caplog.records
        if record.name == log.name
    ]


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, log.name)


async def test_a_flood_of_one_kind_is_one_line_then_one_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = RateLimitedLog(log, "request rejected", interval=0.2)
    for index in range(1000):
        limited.info("unauthorized", "invalid_token", request_id=f"r{index}")
    assert lines(caplog) == [
        ("request rejected", {"outcome": "unauthorized", "reason": "invalid_token",
                              "request_id": "r0"}),
    ]  # fmt: skip
    await asyncio.sleep(0.3)  # the interval ends: what it held back is counted, without ids
    assert lines(caplog)[1:] == [
        ("request rejected: 999 more suppressed",
         {"outcome": "unauthorized", "reason": "invalid_token", "suppressed": 999}),
    ]  # fmt: skip
    limited.info("unauthorized", "invalid_token", request_id="r1000")  # a new interval
    assert lines(caplog)[2:] == [
        ("request rejected", {"outcome": "unauthorized", "reason": "invalid_token",
                              "request_id": "r1000"}),
    ]  # fmt: skip


async def test_each_kind_has_its_own_bound(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(log, "request rejected", interval=10)
    for reason in ("invalid_token", "missing_credentials", "invalid_token"):
        limited.info("unauthorized", reason, request_id="r")
    limited.info("payload_too_large", "content-length above limit", request_id="r")
    assert [fields["reason"] for _, fields in lines(caplog)] == [
        "invalid_token",
        "missing_credentials",
        "content-length above limit",
    ]


async def test_the_lines_a_flood_costs_are_bounded_by_kinds_and_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    interval, kinds, rounds = 0.05, 3, 8
    limited = RateLimitedLog(log, "request rejected", interval=interval)
    started = asyncio.get_running_loop().time()
    for _ in range(rounds):
        for _ in range(500):
            for kind in range(kinds):
                limited.info("unauthorized", f"reason {kind}", request_id="r")
        await asyncio.sleep(interval / 2)
    await asyncio.sleep(interval * 2)  # the last counts
    seconds = asyncio.get_running_loop().time() - started
    written = lines(caplog)
    assert len(written) <= kinds * 2 * (seconds / interval + 1)
    # Nothing is lost from the count: every event is a line or counted in one.
    counted = sum(1 if "request_id" in f else f["suppressed"] for _, f in written)
    assert counted == rounds * 500 * kinds


async def test_interval_zero_writes_every_line(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(log, "request rejected", interval=0)
    for index in range(5):
        limited.info("unauthorized", "invalid_token", request_id=f"r{index}")
    assert [fields["request_id"] for _, fields in lines(caplog)] == [f"r{i}" for i in range(5)]


async def test_kinds_beyond_the_bound_share_one(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(log, "malformed HTTP", interval=10)
    for index in range(logs.MAX_KINDS + 50):
        limited.info("bad_http", f"reason {index}", request_id="r")
    assert len(lines(caplog)) == logs.MAX_KINDS + 1


def test_nothing_is_done_when_info_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, log.name)
    limited = RateLimitedLog(log, "request rejected", interval=10)
    for _ in range(3):  # no event loop here: nothing may be scheduled either
        limited.info("unauthorized", "invalid_token", request_id="r")
    assert lines(caplog) == []
