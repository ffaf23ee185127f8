"""Prometheus metrics of one inbox API process, in a registry of its own (several in one test)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# One request: a few ms against a database nearby (docs/inbox.md, sizing).
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ApiMetrics:
    """Every metric the inbox API exports; ``bind`` connects the gauges to live state."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tidings_inbox_api_requests",
            "Requests answered, by route and outcome (ok, or the error code).",
            ["route", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "tidings_inbox_api_request_seconds",
            "Time to answer one request, by route.",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.changed_published = Counter(
            "tidings_inbox_api_changed_published",
            "`changed` messages published to the gateways.",
            registry=r,
        )
        self.changed_dropped = Counter(
            "tidings_inbox_api_changed_dropped",
            "`changed` messages not published because NATS was down (best effort).",
            registry=r,
        )
        self.sessions = Counter(
            "tidings_inbox_api_sessions",
            "`session` requests from gateways, by outcome (answered, or the error code).",
            ["outcome"],
            registry=r,
        )
        self.nats_connected = Gauge(
            "tidings_inbox_api_nats_connected", "1 while the NATS connection is up.", registry=r
        )

    def bind(self, *, nats_connected: Callable[[], float]) -> None:
        self.nats_connected.set_function(nats_connected)

    def render(self) -> bytes:
        return generate_latest(self.registry)
