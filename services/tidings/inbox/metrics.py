"""Prometheus metrics of one inbox process, in a registry of its own (several in one test)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# One batch: a few ms on SQLite/PostgreSQL nearby, seconds while the database recovers.
_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class InboxMetrics:
    """Every metric the inbox writer exports; ``bind`` connects the gauges to live state."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stored = Counter(
            "tidings_inbox_stored",
            "Notifications this writer stored (new rows; each notification counts once overall).",
            registry=r,
        )
        self.duplicates = Counter(
            "tidings_inbox_duplicates",
            "Messages already stored (a redelivery, another writer's, or a republished id).",
            registry=r,
        )
        self.dead = Counter(
            "tidings_inbox_dead",
            "Stream messages that are not valid notifications, kept in dead_letters, by reason.",
            ["reason"],
            registry=r,
        )
        self.store_errors = Counter(
            "tidings_inbox_store_errors",
            "Batches the database refused or did not answer (retried; nothing is acked before).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "tidings_inbox_batch_seconds",
            "Time to commit one batch to the database.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tidings_inbox_batch_messages",
            "Messages per committed batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=r,
        )
        self.pending = Gauge(
            "tidings_inbox_consumer_pending",
            "Messages of the stream the durable consumer has not delivered yet (the lag).",
            registry=r,
        )
        self.last_sequence = Gauge(
            "tidings_inbox_last_stored_sequence",
            "Stream sequence of the last message this writer committed and acked.",
            registry=r,
        )
        self.nats_connected = Gauge(
            "tidings_inbox_nats_connected", "1 while the NATS connection is up.", registry=r
        )

        self.retention_deleted = Counter(
            "tidings_inbox_retention_deleted",
            "Notifications the retention job deleted, by limit (age, items).",
            ["reason"],
            registry=r,
        )
        self.retention_errors = Counter(
            "tidings_inbox_retention_errors",
            "Retention passes that failed (the next pass tries again).",
            registry=r,
        )
        self.retention_last_run = Gauge(
            "tidings_inbox_retention_last_run_timestamp_seconds",
            "Unix time the last retention pass of this writer finished (0: none yet).",
            registry=r,
        )
        self.retention_last_duration = Gauge(
            "tidings_inbox_retention_last_run_duration_seconds",
            "How long the last retention pass of this writer took.",
            registry=r,
        )
        for reason in ("age", "items"):
            self.retention_deleted.labels(reason)

    def bind(self, *, nats_connected: Callable[[], float]) -> None:
        self.nats_connected.set_function(nats_connected)

    def render(self) -> bytes:
        return generate_latest(self.registry)
