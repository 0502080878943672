"""The event-loop metrics expose exactly what prometheus_client's own would."""

from __future__ import annotations

from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

from relay import loopmetrics

BUCKETS = (0.0005, 0.01, 1.0, 256, 1048576)
VALUES = (0.0001, 0.0005, 0.0006, 0.5, 1.0, 300, 2e6, 1048576)


def exposition(module: Any) -> list[str]:
    registry = CollectorRegistry()
    counter = module.Counter("t_requests_total", "Requests.", ["outcome"], registry=registry)
    plain = module.Counter("t_restarts_total", "Restarts.", registry=registry)
    histogram = module.Histogram(
        "t_seconds", "Seconds.", ["outcome"], buckets=BUCKETS, registry=registry
    )
    bare = module.Histogram("t_bytes", "Bytes.", buckets=BUCKETS, registry=registry)
    counter.labels("a").inc()
    counter.labels("b").inc(2.5)
    counter.labels("zero")
    plain.inc()
    for value in VALUES:
        histogram.labels("a").observe(value)
        bare.observe(value)
    histogram.labels("empty")
    text = generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if "_created" not in line)


def test_the_exposition_is_prometheus_clients() -> None:
    assert exposition(loopmetrics) == exposition(prometheus_client)


def test_children_are_plain_numbers() -> None:
    registry = CollectorRegistry()
    counter = loopmetrics.Counter("t_total", "T.", ["x"], registry=registry)
    child = counter.labels("a")
    child.inc()
    child.inc(2)
    assert child.value == 3
    assert counter.labels("a") is child
