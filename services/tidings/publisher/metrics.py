"""Prometheus metrics of one sidecar, in a registry of its own (one per app, so tests and
several apps in one process never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# PubAck latency: sub-millisecond on loopback, seconds when JetStream is electing a leader.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class PublisherMetrics:
    """Every metric the sidecar exports; ``bind`` connects the gauges to live state."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tidings_publisher_requests",
            "HTTP publish requests by route and outcome (published, queued, or an error code).",
            ["route", "outcome"],
            registry=r,
        )
        self.notifications = Counter(
            "tidings_publisher_notifications",
            "Notifications accepted: published (stored now), duplicate, or queued (outbox).",
            ["outcome"],
            registry=r,
        )
        self.publish_seconds = Histogram(
            "tidings_publisher_publish_seconds",
            "Time from publish to PubAck, by mode (single, batch, drain).",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_messages = Gauge(
            "tidings_publisher_outbox_messages", "Messages waiting in the outbox.", registry=r
        )
        self.outbox_bytes = Gauge(
            "tidings_publisher_outbox_bytes", "Bytes waiting in the outbox.", registry=r
        )
        self.outbox_full = Counter(
            "tidings_publisher_outbox_full_rejections",
            "Notifications refused with 503 because the outbox was full.",
            registry=r,
        )
        self.drained = Counter(
            "tidings_publisher_outbox_drained",
            "Outbox messages JetStream acknowledged after NATS came back.",
            registry=r,
        )
        self.dead = Counter(
            "tidings_publisher_outbox_dead",
            "Outbox messages JetStream refused for good (kept in the outbox's dead table).",
            registry=r,
        )
        self.nats_connected = Gauge(
            "tidings_publisher_nats_connected", "1 while the NATS connection is up.", registry=r
        )

    def bind(
        self,
        *,
        outbox_messages: Callable[[], float],
        outbox_bytes: Callable[[], float],
        nats_connected: Callable[[], float],
    ) -> None:
        self.outbox_messages.set_function(outbox_messages)
        self.outbox_bytes.set_function(outbox_bytes)
        self.nats_connected.set_function(nats_connected)

    def render(self) -> bytes:
        return generate_latest(self.registry)
