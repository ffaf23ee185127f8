"""Prometheus metrics of one gateway. No per-tenant label: cardinality stays bounded.

Hot-path counters are plain integers on the hub, read at scrape time by a collector, so the
fan-out pays nothing per delivery; the per-notification latency histogram likewise
(:class:`LatencyHistogram`: a ``bisect`` and two additions instead of a locked
``Histogram.observe`` and ``Counter.inc``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tidings.gateway.fanout import Hub
from tidings.gateway.registry import Registry

Dropped = Callable[[], Mapping[str, int] | None]  # counts by reason; None before the live side

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output


class _HotPath(Collector):
    def __init__(self, registry: Registry, hub: Hub, dropped: Dropped) -> None:
        self._registry = registry
        self._hub = hub
        self._dropped = dropped

    def collect(self) -> Iterator[Metric]:
        registry, hub = self._registry, self._hub
        yield GaugeMetricFamily(
            "tidings_gateway_connections",
            "Open WebSocket connections.",
            value=len(registry.sessions),
        )
        yield GaugeMetricFamily(
            "tidings_gateway_tenants",
            "Tenants with a live subscription.",
            value=len(hub.tenants),
        )
        yield CounterMetricFamily(
            "tidings_gateway_deliveries",
            "Notifications written to connections (notifications x receivers).",
            value=hub.deliveries,
        )
        yield CounterMetricFamily(
            "tidings_gateway_frames",
            "Fan-out frames built (each written to a room).",
            value=hub.frames,
        )
        yield CounterMetricFamily(
            "tidings_gateway_muted",
            "Notifications not written to a connection because its user muted their domain"
            " (notifications x connections).",
            value=hub.muted,
        )
        dropped = self._dropped()
        if dropped is not None:
            family = CounterMetricFamily(
                "tidings_gateway_dropped_messages",
                "Stored messages not delivered (live or read back), by reason: subject,"
                " sequence, envelope, audience, mismatch (tenant or audience not the"
                " subject's), data (not a JSON object), other.",
                labels=["reason"],
            )
            for reason, count in dropped.items():
                family.add_metric([reason], count)
            yield family
        yield GaugeMetricFamily(
            "tidings_gateway_nats_connected",
            "1 while connected to NATS.",
            value=1 if registry.nats_connected else 0,
        )
        yield GaugeMetricFamily(
            "tidings_gateway_nats_healed",
            "1 once the heal after the current NATS connection completed (every hosted tenant"
            " armed): what the gateway delivers is complete. 0 from a NATS loss until then.",
            value=1 if registry.healed else 0,
        )
        yield GaugeMetricFamily(
            "tidings_gateway_draining", "1 while draining.", value=1 if registry.draining else 0
        )


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class LatencyHistogram:
    """A histogram in plain numbers, for the one event loop that observes and scrapes it.

    Same semantics as ``prometheus_client.Histogram`` (a value lands in the first bucket whose
    upper bound is >= it; the last bucket is +Inf), exported by :class:`_Delivery`.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError("bucket bounds must be sorted")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs as Prometheus writes them, ending with +Inf."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
        return out


class _Delivery(Collector):
    """The live notifications and their latency, from the plain numbers the live path keeps."""

    def __init__(self, latency: LatencyHistogram) -> None:
        self._latency = latency

    def collect(self) -> Iterator[Metric]:
        latency = self._latency
        yield HistogramMetricFamily(
            "tidings_gateway_delivery_latency_seconds",
            "From the stream's timestamp to the fan-out, per notification.",
            buckets=latency.buckets(),
            sum_value=latency.sum,
        )
        yield CounterMetricFamily(
            "tidings_gateway_notifications",
            "Live notifications fanned out.",
            value=latency.count,  # every one is observed once
        )


class GatewayMetrics:
    """The registry served on ``/metrics``; ``dropped`` reads the live side's count (None
    before it exists)."""

    def __init__(self, sessions: Registry, hub: Hub, *, dropped: Dropped) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_HotPath(sessions, hub, dropped))
        self.latency = LatencyHistogram()  # observed once per live notification
        self.registry.register(_Delivery(self.latency))
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
        self.inbox_session_failures = Counter(
            "tidings_gateway_inbox_session_failures",
            "Hellos welcomed without inbox counts (and refreshes after a NATS loss that got no"
            " answer), by reason: timeout, no_responders, refused, invalid, error, refresh.",
            ["reason"],
            registry=self.registry,
        )
        self.inbox_changes_dropped = Counter(
            "tidings_gateway_inbox_changes_dropped",
            "Inbox change messages dropped as malformed (never forwarded).",
            registry=self.registry,
        )
        self.inbox_frames = Counter(
            "tidings_gateway_inbox_frames",
            "inbox frames written to connections.",
            registry=self.registry,
        )
        self.connects_refused = Counter(
            "tidings_gateway_connects_refused",
            "Connections refused by the connect-rate limits, by scope: ip (HTTP 429 before the"
            " upgrade), tenant (rate_limited at hello) or user (user_connections_full at hello).",
            ["scope"],
            registry=self.registry,
        )
