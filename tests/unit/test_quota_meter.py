"""The quota check without servers: the token bucket, the day's count, the all-or-none batch,
the notices queued once, the limits' validation, and failing open when the bucket errs."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tidings.errors import DailyQuotaExceeded, InvalidField, PublishRateLimited
from tidings.publishing import PublishPolicy, prepare
from tidings.quotas.limits import Limits, TenantLimits, day_of, seconds_to_midnight
from tidings.quotas.meter import Meter, TokenBucket, exact_margin, tenant_of
from tidings.quotas.metrics import QuotaMetrics
from tidings.settings import QuotaSettings

NOON = 1_764_936_000.0  # 2025-12-05 12:00:00 UTC


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def meter(clock: Clock, **settings: object) -> Meter:
    quota = QuotaSettings(enabled=True, **settings)  # type: ignore[arg-type]
    return Meter(quota, QuotaMetrics(CollectorRegistry()), clock=clock)


def message(tenant: str | None = "acme"):  # type: ignore[no-untyped-def]
    body = {"event": "incident.created", "title": "t", "message": "m"}
    if tenant is None:
        return prepare(
            {**body, "audience": {"broadcast": True}}, PublishPolicy(allow_broadcast=True)
        )
    return prepare({**body, "tenant": tenant}, PublishPolicy())


def test_the_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, size=2.0, now=0.0)
    assert bucket.take(2, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(0.5)  # one token in half a second
    assert bucket.take(1, 0.5) == 0.0
    # A batch larger than the bucket passes when it is full and leaves a debt: the average holds.
    assert bucket.take(3, 10.0) == 0.0
    assert bucket.take(1, 10.0) == pytest.approx(1.0)  # from -1 to 1 token: one second


async def test_the_rate_refuses_with_the_seconds_until_a_token() -> None:
    clock = Clock()
    m = meter(clock, rate=0.25, burst=2)
    await m.admit("acme")
    await m.admit("acme")
    with pytest.raises(PublishRateLimited) as refused:
        await m.admit("acme")
    assert refused.value.retry_after == 4  # 1 token at 0.25/s
    assert refused.value.field == "tenant"
    await m.admit("globex")  # each tenant its own bucket
    clock.now += 4
    await m.admit("acme")
    assert list(m.notices) == [(day_of(NOON), "acme", "rate-exceeded")]


async def test_the_daily_volume_refuses_until_midnight_and_warns_once() -> None:
    clock = Clock()
    m = meter(clock, daily=5, warn_at=0.8)
    for _ in range(5):
        await m.admit("acme")
    with pytest.raises(DailyQuotaExceeded) as refused:
        await m.admit("acme")
    assert refused.value.retry_after == 12 * 3600
    with pytest.raises(DailyQuotaExceeded):
        await m.admit("acme")
    assert sorted(k[2] for k in m.notices) == ["daily-exceeded", "daily-warning"]
    clock.now += 12 * 3600  # the next UTC day
    await m.admit("acme")


async def test_a_batch_is_admitted_whole_or_not_at_all() -> None:
    clock = Clock()
    m = meter(clock, daily=3)
    await m.admit("globex", 3)
    batch = [message("acme"), message("acme"), message("globex"), message(None)]
    with pytest.raises(DailyQuotaExceeded):
        await m.admit_messages(batch)
    assert m.usage[(day_of(NOON), "acme")].used == 0  # given back
    await m.admit_messages([message("acme"), message(None)])  # a broadcast has no quota
    assert m.usage[(day_of(NOON), "acme")].used == 1


async def test_a_tenants_own_limits_win_over_the_defaults_and_reset_its_bucket() -> None:
    clock = Clock()
    m = meter(clock, rate=1, burst=1)
    await m.admit("acme")
    m.set_limits("acme", TenantLimits("acme", Limits(rate=100.0, burst=100)))
    for _ in range(100):
        await m.admit("acme")
    m.set_limits("acme", None)  # back to the defaults
    await m.admit("acme")
    with pytest.raises(PublishRateLimited):
        await m.admit("acme")


async def test_near_the_limit_every_admit_is_counted_in_the_bucket_and_fails_open() -> None:
    clock = Clock()
    m = meter(clock, daily=10)
    shared = {"total": 7}  # what other publishers added

    async def add(day: str, tenant: str, delta: int, cap: int | None) -> tuple[int, bool]:
        if cap is not None and shared["total"] + delta > cap:
            return shared["total"], False
        shared["total"] += delta
        return shared["total"], True

    m.add_shared = add
    for _ in range(3):
        await m.admit("acme")
    with pytest.raises(DailyQuotaExceeded):
        await m.admit("acme")
    assert shared["total"] == 10

    async def broken(day: str, tenant: str, delta: int, cap: int | None) -> tuple[int, bool]:
        raise OSError("bucket away")

    m.add_shared = broken
    clock.now += 86400
    await m.admit("acme")  # fail open: counted here
    assert m.metrics.unavailable._value.get() == 1  # the counter, read in-process
    assert exact_margin(10) == 100 and exact_margin(1_000_000) == 10_000


def test_limits_are_validated_and_the_day_ends_at_utc_midnight() -> None:
    with pytest.raises(InvalidField, match="rate"):
        Limits.from_dict({"rate": "fast"})
    with pytest.raises(InvalidField, match="daily"):
        Limits.from_dict({"daily": -1})
    with pytest.raises(InvalidField, match="burst"):
        Limits.from_dict({"burst": True})
    with pytest.raises(InvalidField):
        TenantLimits.from_dict({"tenant": "no spaces", "rate": 1})
    assert Limits(rate=0.5).size == 1.0 and Limits(rate=20).size == 20.0
    assert seconds_to_midnight(NOON) == 43200 and seconds_to_midnight(NOON + 43199.5) == 1
    assert tenant_of("tenant.acme.user.bob.incident.created") == "acme"
    assert tenant_of("broadcast.system.notification") is None
