"""`/metrics` in the Prometheus format: requests and latencies by route and status, events appended, and how far
each read model lags behind the log (measured when scraped)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "hajj_ledger_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "hajj_ledger_http_request_seconds", "time to answer, by route", ["method", "route"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
EVENTS_APPENDED = Counter("hajj_ledger_events_appended", "events appended to the ledger", registry=REGISTRY)


class ProjectionLag(Collector):
    """Events each read model still has to apply; read from the store at each scrape."""

    def __init__(self, lags: Callable[[], dict[str, int]]) -> None:
        self.lags = lags

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hajj_ledger_projection_lag_events", "events not yet applied", labels=["view"])
        try:
            lags = self.lags()
        except Exception:  # the store is away: /readyz says so; the scrape still answers
            lags = {}
        for name, lag in lags.items():
            family.add_metric([name], lag)
        yield family


_WRITE_COUNTERS = {
    "batches": "batches of commands recorded (a single command is a batch of one, or shares one)",
    "conflicts": "saves refused by the store's keys: a concurrent writer got there first",
    "reruns": "batches run again after a conflict",
    "give_ups": "batches refused after the last attempt (answered 409)",
    "stale": "cached journeys and trips found changed by another writer, and forgotten",
    "writer_restarts": "times the writer thread ended unexpectedly and was started again (its batch: outcome unknown)",
}


class WriteCounters(Collector):
    """How this worker's writes have met other writers' (other nodes): the ledger's own counts, read when scraped."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self.stats()
        for name, text in _WRITE_COUNTERS.items():
            yield CounterMetricFamily(f"hajj_ledger_write_{name}", text, value=getattr(stats, name))


class Leader(Collector):
    """Whether this node leads (runs the projection runner and the sealer). Registered by `serve`, which watches
    this node's worker; absent where none is watched (--api-only; uvicorn's worker processes under --workers > 1)."""

    def __init__(self) -> None:
        self.leading = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("hajj_ledger_leader", "1 while this node leads", value=float(self.leading))


LEADER = Leader()
