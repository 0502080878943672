"""What the process runs on: uvloop and the C extensions that make the hot path fast."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import aiohttp.http_parser as http_parser
import aiokafka
import aiokafka.record.default_records as records
import orjson

T = TypeVar("T")


def event_loop_runner() -> Callable[[Coroutine[Any, Any, T]], T]:
    """`uvloop.run` when uvloop is installed (it roughly doubles aiohttp's throughput), else
    `asyncio.run`."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


# Every request allocates a few hundred short-lived objects; at the default threshold (700)
# the collector runs dozens of times per thousand requests and its full passes show up as
# latency spikes. The relay's objects rarely form cycles, so collect far less often.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """After start-up: exempt the long-lived objects from collection, then collect rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# How often the loop's lateness is sampled: often enough to catch a stall of a few
# milliseconds within seconds, rarely enough to cost nothing (ten wake-ups a second).
LOOP_LAG_INTERVAL = 0.1


async def watch_loop_lag(observe: Callable[[float], None]) -> None:
    """Ask to wake every `LOOP_LAG_INTERVAL` and report how much later the loop did: the time
    every request due at that moment waited too (a garbage collection, a slow callback, a
    scrape). Runs until cancelled. libuv's timers tick in milliseconds, so lateness under a
    millisecond reads as zero."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LOOP_LAG_INTERVAL
        await asyncio.sleep(LOOP_LAG_INTERVAL)
        observe(max(0.0, loop.time() - due))


def missing_c_extensions() -> list[str]:
    facts = describe_extensions()
    return [name for name in ("aiohttp_c_parser", "aiokafka_c_records") if not facts[name]]


def describe_extensions() -> dict[str, bool]:
    return {
        # The C parser is what aiohttp's speed rests on; without it parsing is pure Python.
        "aiohttp_c_parser": http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser",
        "aiokafka_c_records": "._crecords." in records.DefaultRecordBatchBuilder.__module__,
    }


def describe() -> dict[str, Any]:
    """Versions and accelerations in use, for the start-up log."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return {
        "python": sys.version.split()[0],
        "event_loop": loop,
        "aiohttp": aiohttp.__version__,
        "aiokafka": aiokafka.__version__,
        "orjson": orjson.__version__,
        **describe_extensions(),
    }
