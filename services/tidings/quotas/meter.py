"""The check on the publish path: a token bucket per tenant (rate) and the day's count (volume).

:meth:`Meter.admit` runs before a publish is accepted (the sidecar before the outbox, the SDK
before sending) and raises :class:`PublishRateLimited` or :class:`DailyQuotaExceeded` with the
seconds to wait. Its common case is a few dictionary lookups and arithmetic, no I/O: the limits
come from the bucket by a watch (:mod:`tidings.quotas.keeper`), and the count is this process's
own, added to the shared total about once a second.

Far from a daily limit that is exact enough; near it, publishers running at once could each
admit their last second's worth. So within :func:`exact_margin` of the limit every admit adds
itself to the shared count with compare-and-set, capped at the limit: the total over every
publisher then never exceeds it. When the bucket cannot be reached the publish goes through
(quotas protect; publishing is the product) and ``tidings_publisher_quota_unavailable`` counts it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tidings.errors import DailyQuotaExceeded, PublishQuotaError, PublishRateLimited
from tidings.publishing import OutgoingMessage
from tidings.quotas.limits import (
    DAY_SECONDS,
    Limits,
    TenantLimits,
    day_of,
    seconds_to_midnight,
)
from tidings.quotas.metrics import QuotaMetrics
from tidings.settings import QuotaSettings
from tidings.subjects import TENANT_PREFIX

log = logging.getLogger(__name__)

EXACT_FLOOR = 100  # below this many left, every admit is counted in the bucket at once
LOG_EVERY = 30.0  # seconds between two "quotas bucket unavailable" lines

# (day, tenant, delta, cap) -> (total, added): the shared count's compare-and-set.
AddShared = Callable[[str, str, int, int | None], Awaitable[tuple[int, bool]]]

WARNING, EXCEEDED = "warning", "exceeded"


def exact_margin(daily: int) -> int:
    """How close to ``daily`` every admit is counted in the bucket at once."""
    return max(EXACT_FLOOR, daily // 100)


def tenant_of(subject: str) -> str | None:
    """The tenant of a prepared message's subject (``tenant.<tenant>.…``); None: a broadcast."""
    head, _, rest = subject.partition(".")
    return rest.partition(".")[0] if head == TENANT_PREFIX else None


class TokenBucket:
    __slots__ = ("at", "rate", "size", "tokens")

    def __init__(self, rate: float, size: float, now: float) -> None:
        self.rate, self.size, self.tokens, self.at = rate, size, size, now

    def take(self, n: int, now: float) -> float:
        """Take ``n`` tokens: 0.0, or the seconds until there are enough (nothing taken).

        A batch larger than the bucket passes when the bucket is full and leaves it in debt
        (negative), so the average rate holds and no batch is refused for ever.
        """
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        needed = min(float(n), self.size)
        if self.tokens >= needed:
            self.tokens -= n
            return 0.0
        return (needed - self.tokens) / self.rate


@dataclass(slots=True)
class Usage:
    """One tenant's day in this process."""

    merged: int = 0  # the shared total as last read or written
    pending: int = 0  # admitted here, not yet added to the shared total
    touched: bool = False  # admitted since the last merge: read the shared total again

    @property
    def used(self) -> int:
        return self.merged + self.pending


@dataclass(frozen=True, slots=True)
class Notice:
    day: str
    tenant: str
    quota: str  # "daily" or "rate"
    level: str  # WARNING or EXCEEDED
    limit: float
    used: int

    @property
    def kind(self) -> str:
        return f"{self.quota}-{self.level}"


class Meter:
    """The limits this process holds and what each tenant used; the publish path's check."""

    def __init__(
        self,
        settings: QuotaSettings,
        metrics: QuotaMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.defaults = Limits.defaults(settings)
        self.clock = clock
        self.own: dict[str, Limits] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.usage: dict[tuple[str, str], Usage] = {}  # (day, tenant)
        self.notices: dict[tuple[str, str, str], Notice] = {}  # (day, tenant, kind)
        self.noticed: set[tuple[str, str, str]] = set()  # queued once already (this process)
        self.add_shared: AddShared | None = None  # set while the bucket is reachable
        self.on_notice: Callable[[], None] = lambda: None
        self._logged_at = -math.inf
        self._day = ("", 0.0, 0.0)  # the UTC day, its start and end: formatted once a day
        metrics.tenants.set_function(lambda: len(self.own))
        metrics.spent.set_function(self._spent)

    # -- limits (from the bucket) --------------------------------------------------------------

    def limits_of(self, tenant: str) -> Limits:
        return self.own.get(tenant, self.defaults)

    def set_limits(self, tenant: str, entry: TenantLimits | None) -> None:
        before = self.limits_of(tenant)
        if entry is None:
            self.own.pop(tenant, None)
        else:
            self.own[tenant] = entry.limits
        after = self.limits_of(tenant)
        if after != before:
            self.buckets.pop(tenant, None)  # the new rate starts with a full bucket
            self.metrics.limit_changes.inc()
            log.info("quota limits applied", extra={"tenant": tenant, **after.to_dict()})

    # -- the publish path ----------------------------------------------------------------------

    async def admit(self, tenant: str, n: int = 1) -> None:
        """Count ``n`` notifications of ``tenant``, or raise the quota error that refuses them."""
        limits = self.own.get(tenant, self.defaults)
        if limits.unlimited:
            return
        now = self.clock()
        bucket = None
        if limits.rate:
            bucket = self.buckets.get(tenant)
            if bucket is None:
                bucket = self.buckets[tenant] = TokenBucket(limits.rate, limits.size, now)
            wait = bucket.take(n, now)
            if wait:
                self._refuse_rate(tenant, limits, now, wait, n)
        if limits.daily:
            try:
                await self._count(tenant, limits.daily, n, now)
            except DailyQuotaExceeded:
                if bucket is not None:
                    bucket.tokens = min(bucket.size, bucket.tokens + n)  # nothing was sent
                raise

    async def admit_messages(self, msgs: Sequence[OutgoingMessage]) -> None:
        """Admit a request's notifications, all or none (a batch may name several tenants;
        a broadcast has none and no quota)."""
        if len(msgs) == 1:
            tenant = tenant_of(msgs[0].subject)
            if tenant is not None:
                await self.admit(tenant, 1)
            return
        admitted: list[tuple[str, int]] = []
        try:
            for tenant, n in Counter(tenant_of(m.subject) for m in msgs).items():
                if tenant is not None:
                    await self.admit(tenant, n)
                    admitted.append((tenant, n))
        except PublishQuotaError:
            for tenant, n in admitted:
                self.release(tenant, n)
            raise

    def release_messages(self, msgs: Sequence[OutgoingMessage]) -> None:
        for tenant, n in Counter(tenant_of(m.subject) for m in msgs).items():
            if tenant is not None:
                self.release(tenant, n)

    def release(self, tenant: str, n: int) -> None:
        """Give back what :meth:`admit` counted for a publish that was not made after all."""
        limits = self.limits_of(tenant)
        bucket = self.buckets.get(tenant)
        if bucket is not None:
            bucket.tokens = min(bucket.size, bucket.tokens + n)
        if limits.daily:
            self._usage(self._today(self.clock()), tenant).pending -= n

    def _today(self, now: float) -> str:
        day, start, end = self._day
        if not start <= now < end:
            start = now - now % DAY_SECONDS
            day = day_of(now)
            self._day = (day, start, start + DAY_SECONDS)
        return day

    def _refuse_rate(self, tenant: str, limits: Limits, now: float, wait: float, n: int) -> None:
        self.metrics.refused.labels("rate").inc(n)
        self._notice(Notice(self._today(now), tenant, "rate", EXCEEDED, limits.rate, 0))
        raise PublishRateLimited(
            f"the tenant's publish rate quota ({limits.rate:g}/s, burst {limits.size:.0f}) is"
            " spent",
            retry_after=max(1, math.ceil(wait)),
            field="tenant",
        )

    async def _count(self, tenant: str, daily: int, n: int, now: float) -> None:
        day = self._today(now)
        usage = self._usage(day, tenant)
        usage.touched = True
        if usage.used + n > daily:
            self._refuse_daily(day, tenant, daily, usage.used, now, n)
        if daily - (usage.used + n) < exact_margin(daily) and self.add_shared is not None:
            await self._count_shared(day, tenant, daily, n, usage, now)
        else:
            usage.pending += n
        self._crossed(day, tenant, daily, usage.used)

    async def _count_shared(
        self, day: str, tenant: str, daily: int, n: int, usage: Usage, now: float
    ) -> None:
        add = self.add_shared
        assert add is not None
        pending, usage.pending = usage.pending, 0
        try:
            if pending:
                usage.merged, _ = await add(day, tenant, pending, None)
                pending = 0
            total, added = await add(day, tenant, n, daily)
        except Exception as exc:
            usage.pending += pending + n  # fail open: counted here, merged later
            self.unavailable(exc)
            return
        usage.merged = total
        if not added:
            self._refuse_daily(day, tenant, daily, total, now, n)

    def _refuse_daily(
        self, day: str, tenant: str, daily: int, used: int, now: float, n: int
    ) -> None:
        self.metrics.refused.labels("daily").inc(n)
        self._notice(Notice(day, tenant, "daily", EXCEEDED, daily, used))
        raise DailyQuotaExceeded(
            f"the tenant published {used} of its {daily} notifications today (UTC)",
            retry_after=seconds_to_midnight(now),
            field="tenant",
        )

    def _crossed(self, day: str, tenant: str, daily: int, used: int) -> None:
        if used >= daily * self.settings.warn_at:
            self._notice(Notice(day, tenant, "daily", WARNING, daily, used))

    # -- for the keeper ------------------------------------------------------------------------

    def _usage(self, day: str, tenant: str) -> Usage:
        usage = self.usage.get((day, tenant))
        if usage is None:
            usage = self.usage[(day, tenant)] = Usage()
        return usage

    def _notice(self, notice: Notice) -> None:
        key = (notice.day, notice.tenant, notice.kind)
        if key in self.noticed:
            return
        self.noticed.add(key)
        self.notices[key] = notice
        self.on_notice()

    def take_pending(self) -> list[tuple[str, str, int]]:
        """What to add to the shared counts: ``(day, tenant, delta)``; forgets past days."""
        today = self._today(self.clock())
        out: list[tuple[str, str, int]] = []
        for (day, tenant), usage in list(self.usage.items()):
            if usage.pending or usage.touched:
                out.append((day, tenant, usage.pending))
                usage.pending, usage.touched = 0, False
            if day != today:
                del self.usage[(day, tenant)]
        self.noticed = {k for k in self.noticed if k[0] == today}
        return out

    def merged(self, day: str, tenant: str, total: int) -> None:
        usage = self.usage.get((day, tenant))
        if usage is not None:
            usage.merged = total
            limits = self.limits_of(tenant)
            if limits.daily:
                self._crossed(day, tenant, limits.daily, usage.used)

    def unmerged(self, day: str, tenant: str, delta: int) -> None:
        """A merge failed: keep the count for the next one."""
        if day == self._today(self.clock()):
            self._usage(day, tenant).pending += delta

    def unavailable(self, exc: BaseException) -> None:
        self.metrics.unavailable.inc()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning(
                "quotas bucket unavailable; publishing without the shared count (fail open)",
                extra={"error": repr(exc)},
            )

    def _spent(self) -> float:
        today = self._today(self.clock())
        return float(
            sum(
                1
                for (day, tenant), usage in self.usage.items()
                if day == today and 0 < self.limits_of(tenant).daily <= usage.used
            )
        )
