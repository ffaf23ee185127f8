"""Retention: how long the inbox keeps notifications, per tenant, and the job that enforces it.

Two limits, each global (``TIDINGS_INBOX_RETENTION_MAX_AGE_DAYS`` / ``_MAX_ITEMS``) unless a
tenant has its own (``inbox_retention``, set by a tenant admin through the API); 0 keeps
without limit:

* **max age**: a notification stored (``stored_at``) longer ago than that many days goes;
* **max items**: the newest N notifications *per audience* stay, older ones go. A notification
  is stored once for its audience (the tenant, a user, a role, a room; broadcasts are one
  audience of their own), not once per user, so "per user" cannot be counted without a user
  list the inbox does not have; per audience, a user's inbox holds at most N of each audience
  they belong to (their own, the tenant's, each role's and room's, the broadcasts).

Broadcasts belong to no tenant and follow the global limits. A deleted notification's state
rows go with it (``ON DELETE CASCADE``; SQLite enforces it, ``PRAGMA foreign_keys`` in
:mod:`tidings.inbox.store`); marks are positions and need no clean-up.

The job (:class:`RetentionJob`, a :class:`~tidings.lifecycle.Part` of ``tidings inbox writer``)
deletes in batches of ``TIDINGS_INBOX_RETENTION_BATCH_SIZE`` rows, one short transaction each,
pausing ``TIDINGS_INBOX_RETENTION_PAUSE`` between them, so the writer (same database, same
SQLite file) waits at most one batch; a pass every ``TIDINGS_INBOX_RETENTION_INTERVAL``. A
failing pass is logged and counted and the next one tries again: retention is never a reason to
stop the writer. On PostgreSQL an advisory lock lets one writer of several run a pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.errors import InvalidField, StoredRowInvalid
from tidings.inbox.metrics import InboxMetrics
from tidings.inbox.schema import notifications, retention
from tidings.inbox.store import Store
from tidings.settings import InboxSettings
from tidings.subjects import check_id

log = logging.getLogger(__name__)

MAX_AGE_DAYS = 36_500  # bounds of a tenant's own values (the settings' bounds too)
MAX_ITEMS = 1_000_000
PASS_LOCK = 0x7469_6469_6E68  # pg_try_advisory_lock key of a pass (migrate.py uses ...6E67)

_n = notifications.c


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits in force; 0 = no limit."""

    max_age_days: int = 0
    max_items: int = 0

    @classmethod
    def of(cls, settings: InboxSettings) -> Limits:
        return cls(settings.retention_max_age_days, settings.retention_max_items)


@dataclass(frozen=True, slots=True)
class TenantRetention:
    """A tenant's own limits; ``None`` follows the global setting, 0 keeps without limit."""

    tenant: str
    max_age_days: int | None = None
    max_items: int | None = None

    def resolve(self, defaults: Limits) -> Limits:
        return Limits(
            defaults.max_age_days if self.max_age_days is None else self.max_age_days,
            defaults.max_items if self.max_items is None else self.max_items,
        )

    def as_json(self) -> dict[str, Any]:
        return {"max_age_days": self.max_age_days, "max_items": self.max_items}


def _check_limit(value: object, *, name: str, most: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField("must be an integer or null", field=name)
    if not 0 <= value <= most:
        raise InvalidField(f"{value} is outside 0..{most} (0: no limit)", field=name)
    return value


def _stored(tenant: object, max_age: object, max_items: object) -> TenantRetention:
    """A row of ``inbox_retention``, checked like the input that wrote it."""
    where = f"inbox_retention row of tenant {tenant!r}"
    try:
        check_id(tenant, field="tenant")
        age = _check_limit(max_age, name="max_age_days", most=MAX_AGE_DAYS)
        items = _check_limit(max_items, name="max_items", most=MAX_ITEMS)
    except InvalidField as bad:
        field = f"inbox_retention.{bad.field}"
        raise StoredRowInvalid(f"{where}: {bad.reason}", field=field) from None
    assert isinstance(tenant, str)
    return TenantRetention(tenant, age, items)


async def read_retention(conn: AsyncConnection, tenant: str) -> TenantRetention:
    """The tenant's own limits (both ``None`` when it has none)."""
    check_id(tenant, field="tenant")
    c = retention.c
    query = select(c.tenant, c.max_age_days, c.max_items).where(c.tenant == tenant)
    found = (await conn.execute(query)).first()
    return TenantRetention(tenant) if found is None else _stored(*found)


async def set_retention(
    conn: AsyncConnection, tenant: str, max_age_days: int | None, max_items: int | None
) -> TenantRetention:
    """Set the tenant's own limits (``None``: follow the global setting; 0: no limit)."""
    check_id(tenant, field="tenant")
    age = _check_limit(max_age_days, name="max_age_days", most=MAX_AGE_DAYS)
    items = _check_limit(max_items, name="max_items", most=MAX_ITEMS)
    if age is None and items is None:
        await conn.execute(delete(retention).where(retention.c.tenant == tenant))
        return TenantRetention(tenant)
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    values = {"max_age_days": age, "max_items": items, "updated_at": datetime.now(UTC)}
    stmt = insert(retention).values(tenant=tenant, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["tenant"], set_=values))
    return TenantRetention(tenant, age, items)


async def tenant_limits(conn: AsyncConnection) -> tuple[dict[str, TenantRetention], list[str]]:
    """Every tenant's own limits, and the tenants whose row is invalid (left alone)."""
    c = retention.c
    rows = (await conn.execute(select(c.tenant, c.max_age_days, c.max_items))).all()
    good: dict[str, TenantRetention] = {}
    bad: list[str] = []
    for tenant, age, items in rows:
        try:
            good[tenant] = _stored(tenant, age, items)
        except StoredRowInvalid as why:
            log.error("retention skips a tenant: %s", why)
            bad.append(str(tenant))
    return good, bad


@dataclass(slots=True)
class PassResult:
    """What one retention pass deleted, by reason."""

    age: int = 0
    items: int = 0
    statements: int = 0
    paused: float = 0.0  # seconds spent in the pauses between statements
    skipped_tenants: list[str] = field(default_factory=list)


class RetentionJob:
    """Deletes what the limits no longer keep, in bounded batches; runs until cancelled."""

    name = "inbox-retention"

    def __init__(
        self,
        store: Store,
        metrics: InboxMetrics,
        settings: InboxSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.now = now
        self.passes = 0

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.retention_errors.inc()
                log.warning(
                    "inbox retention pass failed; next in %.0fs: %s: %s",
                    self.settings.retention_interval,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
            await asyncio.sleep(self.settings.retention_interval)

    async def run_once(self) -> PassResult | None:
        """One pass (``None``: another writer holds the PostgreSQL lock and runs it)."""
        started = time.perf_counter()
        if self.store.dialect == "postgresql":
            async with self.store.engine.connect() as lock:
                # A session lock: held across the commit, which ends the transaction so this
                # idle connection holds no snapshot back during the pass.
                query = text("SELECT pg_try_advisory_lock(:key)")
                got = (await lock.execute(query, {"key": PASS_LOCK})).scalar_one()
                await lock.commit()
                if not got:
                    return None
                try:
                    result = await self._pass()
                finally:
                    await lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PASS_LOCK})
                    await lock.commit()
        else:
            result = await self._pass()
        self.passes += 1
        self.metrics.retention_last_run.set(time.time())
        self.metrics.retention_last_duration.set(time.perf_counter() - started)
        if result.age or result.items:
            log.info(
                "inbox retention deleted notifications",
                extra={"age": result.age, "items": result.items},
            )
        return result

    async def _pass(self) -> PassResult:
        defaults = Limits.of(self.settings)
        async with self.store.engine.connect() as conn:
            own, bad = await tenant_limits(conn)
        result = PassResult(skipped_tenants=bad)
        await self._by_age(defaults, own, bad, result)
        await self._by_count(defaults, own, bad, result)
        return result

    # -- max age -------------------------------------------------------------------------------

    async def _by_age(
        self, defaults: Limits, own: dict[str, TenantRetention], bad: list[str], result: PassResult
    ) -> None:
        now = self.now()
        for tenant, limits in sorted(own.items()):
            days = limits.resolve(defaults).max_age_days
            if limits.max_age_days is not None and days > 0:
                where = and_(_n.tenant == tenant, _n.stored_at < now - timedelta(days=days))
                result.age += await self._delete(where, _n.stored_at, "age", result)
        if defaults.max_age_days > 0:
            # Every other tenant (and broadcasts): those with an own age, or a bad row, excluded.
            exempt = sorted(bad + [t for t, lim in own.items() if lim.max_age_days is not None])
            cutoff = now - timedelta(days=defaults.max_age_days)
            where = and_(_n.stored_at < cutoff, _n.tenant.not_in(exempt) if exempt else true())
            result.age += await self._delete(where, _n.stored_at, "age", result)

    # -- max items per audience ----------------------------------------------------------------

    async def _by_count(
        self, defaults: Limits, own: dict[str, TenantRetention], bad: list[str], result: PassResult
    ) -> None:
        caps = [lim.resolve(defaults).max_items for lim in own.values()]
        if not any(c > 0 for c in (defaults.max_items, *caps)):
            return
        # One ranked scan of the visibility index (newest first within each audience) yields
        # every pk beyond its tenant's cap; they are deleted ``batch_size`` at a time across
        # audiences. One DELETE per audience cost a round trip each (measured on SQLite:
        # 11,000 audiences 3 over their cap took 44 s that way).
        group = (_n.tenant, _n.audience_kind, _n.audience_name)
        rank = func.row_number().over(partition_by=group, order_by=_n.pk.desc())
        ranked = select(_n.pk, _n.tenant, rank.label("rank")).subquery()
        cap = func.coalesce(retention.c.max_items, defaults.max_items)
        beyond = (
            select(ranked.c.pk)
            .select_from(ranked.outerjoin(retention, retention.c.tenant == ranked.c.tenant))
            .where(cap > 0, ranked.c.rank > cap)
        )
        if bad:
            beyond = beyond.where(ranked.c.tenant.not_in(sorted(bad)))
        size = self.settings.retention_batch_size
        async with self.store.engine.connect() as reader:
            found = await reader.stream_scalars(beyond.execution_options(yield_per=size))
            async for pks in found.partitions(size):
                result.items += await self._delete_pks(list(pks), "items", result)

    # -- one bounded statement at a time -------------------------------------------------------

    async def _delete(
        self, where: ColumnElement[bool], order: Any, reason: str, result: PassResult
    ) -> int:
        """Delete what ``where`` selects, ``batch_size`` rows per transaction, oldest first."""
        size = self.settings.retention_batch_size
        total = 0
        while True:
            batch = select(_n.pk).where(where).order_by(order).limit(size)
            async with self.store.engine.begin() as conn:
                deleted = (
                    await conn.execute(delete(notifications).where(_n.pk.in_(batch)))
                ).rowcount
            result.statements += 1
            total += deleted
            self.metrics.retention_deleted.labels(reason).inc(deleted)
            if deleted < size:
                return total
            await self._pause(result)

    async def _delete_pks(self, pks: list[int], reason: str, result: PassResult) -> int:
        """Delete these rows (at most ``batch_size``) in one transaction, then pause."""
        async with self.store.engine.begin() as conn:
            deleted = (await conn.execute(delete(notifications).where(_n.pk.in_(pks)))).rowcount
        result.statements += 1
        self.metrics.retention_deleted.labels(reason).inc(deleted)
        await self._pause(result)
        return int(deleted)

    async def _pause(self, result: PassResult) -> None:
        await asyncio.sleep(self.settings.retention_pause)
        result.paused += self.settings.retention_pause
