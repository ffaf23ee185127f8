"""The quotas' metrics, registered on the registry of the process that enforces them (the
sidecar's; an SDK publisher's own). No metric has a tenant label: tenants are unbounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class QuotaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "tidings_publisher_quota_refused",
            "Notifications refused by a tenant's quota (429), by reason (rate, daily).",
            ["reason"],
            registry=registry,
        )
        self.unavailable = Counter(
            "tidings_publisher_quota_unavailable",
            "Checks or merges that could not reach the quotas bucket (the publish went through:"
            " quotas fail open).",
            registry=registry,
        )
        self.notices = Counter(
            "tidings_publisher_quota_notices",
            "quota.warning / quota.exceeded notifications this process sent, by kind.",
            ["kind"],
            registry=registry,
        )
        self.limit_changes = Counter(
            "tidings_publisher_quota_limit_changes",
            "Changes of a tenant's limits this process applied (from the bucket).",
            registry=registry,
        )
        self.following = Gauge(
            "tidings_publisher_quota_following",
            "1 while this process follows the quotas bucket (limits current).",
            registry=registry,
        )
        self.tenants = Gauge(
            "tidings_publisher_quota_tenants",
            "Tenants with limits of their own (the others have the defaults).",
            registry=registry,
        )
        self.spent = Gauge(
            "tidings_publisher_quota_spent_tenants",
            "Tenants whose daily volume is spent today, as this process knows.",
            registry=registry,
        )
