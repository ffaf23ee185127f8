"""Prometheus metrics of one gateway. No per-tenant label: cardinality stays bounded.

Hot-path counters are plain integers on the hub, read at scrape time by a collector, so the
fan-out pays nothing per delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tidings.gateway.service import Gateway

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output


class _HotPath(Collector):
    def __init__(self, gateway: Callable[[], Gateway]) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self._gateway()
        yield GaugeMetricFamily(
            "tidings_gateway_connections", "Open WebSocket connections.", value=len(gw.sessions)
        )
        yield GaugeMetricFamily(
            "tidings_gateway_tenants",
            "Tenants with a live subscription.",
            value=len(gw.hub.tenants),
        )
        yield CounterMetricFamily(
            "tidings_gateway_deliveries",
            "Notifications written to connections (notifications x receivers).",
            value=gw.hub.deliveries,
        )
        yield CounterMetricFamily(
            "tidings_gateway_frames",
            "Fan-out frames built (each written to a room).",
            value=gw.hub.frames,
        )
        if gw.live is not None:
            yield CounterMetricFamily(
                "tidings_gateway_dropped_messages",
                "Live messages that could not be routed or decoded.",
                value=gw.live.dropped,
            )
        yield GaugeMetricFamily(
            "tidings_gateway_nats_connected",
            "1 while connected to NATS.",
            value=1 if gw.nats_connected else 0,
        )
        yield GaugeMetricFamily(
            "tidings_gateway_draining", "1 while draining.", value=1 if gw.draining else 0
        )


class GatewayMetrics:
    """The registry served on ``/metrics``."""

    def __init__(self, gateway: Callable[[], Gateway]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_HotPath(gateway))
        self.latency = Histogram(
            "tidings_gateway_delivery_latency_seconds",
            "From the stream's timestamp to the fan-out, per notification.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.notifications = Counter(
            "tidings_gateway_notifications",
            "Live notifications fanned out.",
            registry=self.registry,
        )
        self.resumes = Counter(
            "tidings_gateway_resumes",
            "Resumes by outcome: memory, jetstream (backfilled), not_recovered.",
            ["outcome"],
            registry=self.registry,
        )
        self.slow_consumers = Counter(
            "tidings_gateway_slow_consumer_closes",
            "Connections closed as slow consumers.",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "tidings_gateway_auth_failures",
            "Refused tokens by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.closes = Counter(
            "tidings_gateway_refusals",
            "Connections refused or closed by error code.",
            ["code"],
            registry=self.registry,
        )
