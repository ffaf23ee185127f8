"""The quotas' supervised part in each publisher: follows the limits, merges the counts, and
sends the tenant's admins ``quota.warning`` / ``quota.exceeded``.

Every ``merge_interval`` (and at once when a notice is due) it adds this process's counts to the
shared day totals and reads them back, so each publisher knows what the others published within
about a second. A notice is sent by the one publisher whose create of the day's marker
succeeds, through the publisher's own path (the sidecar's outbox, the SDK's publish), to the
tenant's ``TIDINGS_QUOTA_NOTIFY_ROLE``, with an id per tenant, kind and day (the stream's
duplicate window would catch a second copy too).

NATS down or the bucket missing: the publishes go through (the meter fails open), the counts
wait here for the next merge, and the part tries the bucket again on the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from tidings.nats_link import NatsLink
from tidings.publishing import OutgoingMessage, PublishPolicy, prepare
from tidings.quotas.bucket import QuotaBucket
from tidings.quotas.meter import EXCEEDED, Meter, Notice
from tidings.quotas.metrics import QuotaMetrics
from tidings.settings import QuotaSettings, Settings

log = logging.getLogger(__name__)

Send = Callable[[OutgoingMessage], Awaitable[object]]
FOLLOW_AGAIN = 10.0  # seconds between two tries to follow a bucket that is missing


class QuotaKeeper:
    name = "quotas"

    def __init__(
        self,
        meter: Meter,
        bucket: QuotaBucket,
        *,
        js: Callable[[], JetStreamContext],
        send: Send,
        policy: PublishPolicy,
        settings: QuotaSettings,
        timeout: float,
    ) -> None:
        self.meter = meter
        self.bucket = bucket
        self.js = js  # raises while NATS is down
        self.send = send
        self.policy = policy
        self.settings = settings
        self.timeout = timeout
        self._wake = asyncio.Event()
        self._refollow = True
        self._next_follow = 0.0
        self._claimed: set[tuple[str, str, str]] = set()  # markers created, notice not sent yet
        meter.on_notice = self._wake.set

    def reconnected(self) -> None:
        """NATS came back (possibly a new client): follow the limits anew on the next tick."""
        self._refollow = True
        self._next_follow = 0.0
        self._wake.set()

    def track(self, link: NatsLink) -> None:
        """Follow ``link``'s losses and reconnects (the sidecar's supervised connection)."""

        async def reconnected() -> None:
            self.reconnected()

        link.on_up(reconnected)
        link.on_down(self.lost)

    def lost(self) -> None:
        self.meter.add_shared = None
        self.meter.metrics.following.set(0)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.tick(loop.time())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.merge_interval)
        finally:
            await self._last_merge()
            await self.bucket.stop()

    async def _last_merge(self) -> None:
        """On the way out, add what this process counted since the last merge (a restart
        would otherwise drop up to one interval's count from the day's total)."""
        if self.meter.add_shared is None:
            return
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.merge(self.js()), self.timeout)

    async def tick(self, now: float) -> None:
        try:
            js = self.js()
        except Exception:
            self.lost()
            return
        if self._refollow or not self.bucket.following:
            if now < self._next_follow:
                return
            try:
                await self.bucket.follow(js, self.meter.set_limits, self.timeout)
            except Exception as exc:
                self.lost()
                self._next_follow = now + FOLLOW_AGAIN
                self.meter.unavailable(exc)
                return
            self._refollow = False
            self.meter.metrics.following.set(1)
            self.meter.add_shared = self._add
        await self.merge(js)
        await self.notify(js)

    async def _add(self, day: str, tenant: str, delta: int, cap: int | None) -> tuple[int, bool]:
        return await asyncio.wait_for(
            self.bucket.add(self.js(), day, tenant, delta, cap=cap), self.timeout
        )

    async def merge(self, js: JetStreamContext) -> None:
        for day, tenant, delta in self.meter.take_pending():
            try:
                total, _ = await self.bucket.add(js, day, tenant, delta)
            except Exception as exc:
                self.meter.unmerged(day, tenant, delta)
                self.meter.unavailable(exc)
                continue
            self.meter.merged(day, tenant, total)

    async def notify(self, js: JetStreamContext) -> None:
        for key, notice in list(self.meter.notices.items()):
            try:
                if key not in self._claimed:
                    if not await self.bucket.create_once(js, *key):
                        del self.meter.notices[key]  # another publisher sent it
                        continue
                    self._claimed.add(key)
                await self.send(self.message(notice))
            except Exception as exc:
                self.meter.unavailable(exc)
                return  # kept: tried again on the next tick
            del self.meter.notices[key]
            self._claimed.discard(key)
            self.meter.metrics.notices.labels(notice.kind).inc()
            log.info(
                "quota notice sent",
                extra={"tenant": notice.tenant, "kind": notice.kind, "day": notice.day},
            )

    def message(self, notice: Notice) -> OutgoingMessage:
        day = f"{notice.day[:4]}-{notice.day[4:6]}-{notice.day[6:]}"
        if notice.quota == "rate":
            title = "Publish rate quota exceeded"
            text = (
                f"Notifications were refused on {day} (UTC): the tenant published faster than"
                f" {notice.limit:g} per second."
            )
        elif notice.level == EXCEEDED:
            title = "Daily notification quota exceeded"
            text = (
                f"All {notice.limit:.0f} notifications of {day} (UTC) are used; more are refused"
                " until 00:00 UTC."
            )
        else:
            share = round(100 * self.settings.warn_at)
            title = f"Daily notification quota {share}% used"
            text = f"{notice.used} of {notice.limit:.0f} notifications of {day} (UTC) are used."
        body = {
            "id": f"quota-{notice.kind}-{notice.day}",
            "tenant": notice.tenant,
            "event": f"quota.{notice.level}",
            "audience": {"role": self.settings.notify_role},
            "severity": "error" if notice.level == EXCEEDED else "warning",
            "title": title,
            "message": text,
            "source": "tidings-quotas",
            "data": {
                "quota": notice.quota,
                "limit": notice.limit if notice.quota == "rate" else int(notice.limit),
                "used": notice.used,
                "day": day,
            },
        }
        return prepare(body, self.policy)


def build_quotas(
    settings: Settings,
    *,
    registry: CollectorRegistry,
    js: Callable[[], JetStreamContext],
    send: Send,
    policy: PublishPolicy,
) -> tuple[Meter, QuotaKeeper]:
    """The meter a publisher checks and the part that keeps it current (start the part)."""
    meter = Meter(settings.quota, QuotaMetrics(registry))
    keeper = QuotaKeeper(
        meter,
        QuotaBucket(stream=settings.stream.name),
        js=js,
        send=send,
        policy=policy,
        settings=settings.quota,
        timeout=settings.nats.request_timeout,
    )
    return meter, keeper
