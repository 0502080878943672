"""The start-up check of the connection layer: it passes on the aiohttp the relay ships with, and
refuses, naming what changed, an aiohttp that behaves otherwise or whose names moved."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from relay import edge_check
from relay.startup import StartupError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


async def test_the_installed_aiohttp_behaves_as_the_edge_relies_on() -> None:
    assert edge_check.names_problems() == []
    assert await edge_check.behaviour_problems() == []
    tasks = asyncio.all_tasks()
    await edge_check.self_check()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == tasks, "the check leaves nothing running"


async def test_it_is_cheap_enough_to_run_at_every_start() -> None:
    # Not a benchmark: a bound two orders of magnitude above what it takes (about 1 ms), so
    # that a check that started waiting on a timer or a socket would show.
    started = time.perf_counter()
    await edge_check.self_check()
    assert time.perf_counter() - started < 0.5


async def _start_without_the_prepare_hook(self: web.StreamResponse, request: BaseRequest) -> Any:
    """aiohttp's `StreamResponse._start`, from a release that no longer calls the hook."""
    self._req = request
    writer = self._payload_writer = request._payload_writer
    await self._prepare_headers()
    await self._write_headers()
    return writer


async def test_an_aiohttp_that_skips_the_prepare_hook_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web.StreamResponse, "_start", _start_without_the_prepare_hook)
    with pytest.raises(StartupError) as refused:
        await edge_check.self_check()
    message = str(refused.value)
    assert "the prepare hook was not called" in message
    assert "Install aiohttp>=3.14.3,<3.15" in message


async def test_a_slot_aiohttp_adds_under_a_name_the_edge_uses_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = web_protocol.RequestHandler
    monkeypatch.setattr(handler, "__slots__", (*handler.__slots__, "head_since"))
    monkeypatch.setattr(handler, "cut", lambda self: None, raising=False)
    assert edge_check.names_problems() == [
        "aiohttp's RequestHandler now has cut, which EdgeProtocol adds",
        "aiohttp's RequestHandler now has head_since, which EdgeProtocol adds",
    ]
    with pytest.raises(StartupError, match="now has cut"):
        await edge_check.self_check()


async def test_an_override_aiohttp_no_longer_calls_and_an_internal_it_dropped_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(web_protocol.RequestHandler, "log_exception")
    monkeypatch.delattr(web_protocol, "ERROR")
    assert edge_check.names_problems() == [
        "aiohttp's RequestHandler has no log_exception any more, which EdgeProtocol overrides",
        "aiohttp's web_protocol has no ERROR any more, which the edge compares",
    ]


async def test_a_scenario_that_breaks_is_named_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def data_received(self: Any, data: bytes) -> None:
        raise AttributeError("'RequestHandler' object has no attribute '_parser'")

    monkeypatch.setattr(web_protocol.RequestHandler, "data_received", data_received)
    problems = await edge_check.behaviour_problems()
    assert problems[0] == (
        "a request and a pipelined second one: AttributeError: "
        "'RequestHandler' object has no attribute '_parser'"
    )
    assert len(problems) == 5  # every scenario feeds data


def test_the_supported_range_is_pyprojects() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    [aiohttp] = [Requirement(d) for d in project["dependencies"] if d.startswith("aiohttp")]
    assert aiohttp.specifier == SpecifierSet(edge_check.SUPPORTED_AIOHTTP)
