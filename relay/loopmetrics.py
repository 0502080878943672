"""Counters and histograms for code that runs on one event loop.

prometheus_client's metrics take a lock on every update so that threads can share them: about
half a microsecond a counter and a microsecond a histogram, several times per request. Every
metric of the relay is updated from its one event loop, and scraped on that loop too, so a plain
number is enough. These keep prometheus_client's calling convention (`labels(...)`, `inc()`,
`observe()`) and are exposed by the same registry, with the same names, types, labels and
bucket boundaries; prometheus_client still formats the exposition.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket bound (`le`), so the labels match its own histograms.
_bound_label = cast(Callable[[float], str], floatToGoString)


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # The first bound at or above the value: Prometheus buckets are `le` (less or equal).
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


ChildT = TypeVar("ChildT", CounterChild, HistogramChild)


class _Family(Collector, Generic[ChildT]):
    """A metric's name, help and label names, and its children by label values."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        new_child: Callable[[], ChildT],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._new_child: Callable[[], ChildT] = new_child
        self._children: dict[tuple[str, ...], ChildT] = {}
        if not self._labelnames:
            self._children[()] = new_child()
        registry.register(self)

    def labels(self, *values: str) -> ChildT:
        child = self._children.get(values)
        if child is None:
            assert len(values) == len(self._labelnames), (self._name, values)
            child = self._children[values] = self._new_child()
        return child


class Counter(_Family[CounterChild]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        # prometheus_client adds `_total` to a counter's samples itself.
        super().__init__(
            name.removesuffix("_total"), documentation, labelnames, registry, CounterChild
        )

    def inc(self, amount: float = 1.0) -> None:
        self._children[()].inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            family.add_metric(list(values), child.value)
        yield family


class Histogram(_Family[HistogramChild]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        self._les = [*(_bound_label(b) for b in bounds), "+Inf"]
        super().__init__(name, documentation, labelnames, registry, lambda: HistogramChild(bounds))

    def observe(self, value: float) -> None:
        self._children[()].observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            cumulative = 0
            buckets = []
            for le, count in zip(self._les, child.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(list(values), buckets, child.sum)
        yield family
