"""Retention on SQLite and a real PostgreSQL server: exactly what is too old or over the cap of
its audience goes (its state rows with it), nothing else; per-tenant limits over the global
ones; DELETEs bounded in size; the job as a supervised part that survives a failing pass."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from nats.js import JetStreamContext
from sqlalchemy import event, func, insert, select, text

from tests.support.inbox import inbox_settings, publish_requests, request, running, stored_ids
from tests.support.inbox_notes import note, role, user
from tests.support.postgres import PostgresServer
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tidings.errors import InvalidField, StoredRowInvalid
from tidings.inbox import migrate
from tidings.inbox.metrics import InboxMetrics
from tidings.inbox.retention import PASS_LOCK as retention_lock
from tidings.inbox.retention import (
    RetentionJob,
    TenantRetention,
    read_retention,
    set_retention,
)
from tidings.inbox.schema import inbox_state, notifications, retention
from tidings.inbox.store import Store
from tidings.lifecycle import Supervisor
from tidings.settings import InboxSettings, NatsSettings
from tidings.subjects import BROADCAST_AUDIENCE, Audience

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = Store.open(database_url)
    try:
        await migrate.upgrade(opened.engine)
        yield opened
    finally:
        await opened.close()


def job(store: Store, **limits: Any) -> RetentionJob:
    settings = InboxSettings(**{"retention_pause": 0, **limits})
    return RetentionJob(store, InboxMetrics(), settings, now=lambda: NOW)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def titles(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set((await conn.scalars(select(notifications.c.title))).all())


async def with_state(store: Store, rows: list[dict[str, Any]]) -> None:
    """Store ``rows`` and give each a state row of alice's (read) to see the cascade."""
    await store.write(rows)
    async with store.engine.begin() as conn:
        pks = (await conn.scalars(select(notifications.c.pk))).all()
        await conn.execute(
            insert(inbox_state),
            [
                {
                    "tenant": "acme",
                    "user": "alice",
                    "notification": pk,
                    "read": True,
                    "archived": False,
                    "updated_at": NOW,
                }
                for pk in pks
            ],
        )


async def state_titles(store: Store) -> set[str]:
    query = select(notifications.c.title).join(
        inbox_state, inbox_state.c.notification == notifications.c.pk
    )
    async with store.engine.connect() as conn:
        return set((await conn.scalars(query)).all())


def titled(title: str, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "title": title}


async def test_max_age_deletes_exactly_what_is_older_per_tenant(store: Store) -> None:
    rows = [
        titled("acme-old", note(1, "acme", stored_at=ago(30.001))),
        titled("acme-at-cutoff", note(2, "acme", stored_at=ago(30))),  # not *older*: stays
        titled("acme-young", note(3, "acme", stored_at=ago(29))),
        titled("globex-old", note(4, "globex", stored_at=ago(6))),  # own limit: 5 days
        titled("globex-young", note(5, "globex", stored_at=ago(4))),
        titled("initech-ancient", note(6, "initech", stored_at=ago(1000))),  # own: no limit
        titled("hooli-old", note(7, "hooli", stored_at=ago(31))),  # own cap only: global age
        titled("bc-old", note(8, None, BROADCAST_AUDIENCE, stored_at=ago(31))),
        titled("bc-young", note(9, None, BROADCAST_AUDIENCE, stored_at=ago(1))),
    ]
    await with_state(store, rows)
    async with store.engine.begin() as conn:
        await set_retention(conn, "globex", 5, None)
        await set_retention(conn, "initech", 0, None)
        await set_retention(conn, "hooli", None, 100)
    retention_job = job(store, retention_max_age_days=30)
    result = await retention_job.run_once()
    assert result is not None
    kept = {"acme-at-cutoff", "acme-young", "globex-young", "initech-ancient", "bc-young"}
    assert await titles(store) == kept
    assert await state_titles(store) == kept  # the deleted ones' state went with them
    assert (result.age, result.items) == (4, 0)
    deleted = retention_job.metrics.retention_deleted
    assert deleted.labels("age")._value.get() == 4
    assert (await retention_job.run_once()) is not None
    assert await titles(store) == kept  # a second pass finds nothing more


async def test_max_items_keeps_the_newest_n_of_each_audience(store: Store) -> None:
    plan = [
        ("acme", Audience(), 5),  # global cap 3: the newest 3 stay
        ("acme", user("alice"), 2),  # under the cap: both stay
        ("acme", role("ops"), 4),
        ("globex", Audience(), 3),  # own cap 1
        ("initech", Audience(), 5),  # own cap 0: no limit
        (None, BROADCAST_AUDIENCE, 4),
    ]
    rows: list[dict[str, Any]] = []
    seq = 0
    # Interleaved, so that the newest of an audience are not the newest overall.
    for i in range(5):
        for tenant, audience, n in plan:
            if i < n:
                seq += 1
                name = f"{tenant}-{audience.kind.value}{audience.name}-{i}"
                rows.append(titled(name, note(seq, tenant, audience)))
    await with_state(store, rows)
    async with store.engine.begin() as conn:
        await set_retention(conn, "globex", None, 1)
        await set_retention(conn, "initech", None, 0)
    result = await job(store, retention_max_items=3, retention_max_age_days=0).run_once()
    assert result is not None
    expected = (
        {f"acme-tenant-{i}" for i in (2, 3, 4)}
        | {f"acme-useralice-{i}" for i in (0, 1)}
        | {f"acme-roleops-{i}" for i in (1, 2, 3)}
        | {"globex-tenant-2"}
        | {f"initech-tenant-{i}" for i in range(5)}
        | {f"None-broadcast-{i}" for i in (1, 2, 3)}
    )
    assert await titles(store) == expected
    assert await state_titles(store) == expected
    assert (result.age, result.items) == (0, 2 + 1 + 2 + 1)


async def test_deletes_go_in_bounded_batches(store: Store) -> None:
    await store.write(
        [note(i, stored_at=ago(40)) for i in range(1, 31)]
        + [note(i, stored_at=ago(1)) for i in range(31, 36)]
    )
    deletes: list[int] = []

    def seen(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    event.listen(store.engine.sync_engine, "after_cursor_execute", seen)
    try:
        result = await job(store, retention_max_age_days=30, retention_batch_size=7).run_once()
    finally:
        event.remove(store.engine.sync_engine, "after_cursor_execute", seen)
    assert deletes == [7, 7, 7, 7, 2]
    assert result is not None and result.statements == 5 and result.age == 30
    assert await store.count() == 5


async def test_the_cap_deletes_in_bounded_batches_across_audiences(store: Store) -> None:
    # 12 users 3 over a cap of 2, and one user 23 over (more than a batch: paged by key).
    rows = [
        titled(f"u{u}-{i}", note(u * 100 + i, "acme", user(f"u{u}")))
        for u in range(12)
        for i in range(5)
    ] + [titled(f"big-{i}", note(5000 + i, "acme", user("big"))) for i in range(25)]
    await store.write(rows)
    deletes: list[int] = []

    def seen(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    event.listen(store.engine.sync_engine, "after_cursor_execute", seen)
    try:
        retention_job = job(
            store, retention_max_items=2, retention_max_age_days=0, retention_batch_size=5
        )
        result = await retention_job.run_once()
    finally:
        event.remove(store.engine.sync_engine, "after_cursor_execute", seen)
    assert result is not None and result.items == 12 * 3 + 23
    assert deletes == [5] * 11 + [4]  # 59 rows, never more than 5 per statement
    expected = {f"u{u}-{i}" for u in range(12) for i in (3, 4)} | {"big-23", "big-24"}
    assert await titles(store) == expected


async def test_tenant_limits_are_validated_and_stored(store: Store) -> None:
    async with store.engine.begin() as conn:
        assert await read_retention(conn, "acme") == TenantRetention("acme")
        assert await set_retention(conn, "acme", 7, 500) == TenantRetention("acme", 7, 500)
        assert await set_retention(conn, "acme", None, 20) == TenantRetention("acme", None, 20)
        assert await read_retention(conn, "acme") == TenantRetention("acme", None, 20)
        assert (await read_retention(conn, "acme")).as_json() == {
            "max_age_days": None,
            "max_items": 20,
        }
        for age, items, field, reason in (
            (-1, None, "max_age_days", "outside 0..36500"),
            (36_501, None, "max_age_days", "outside 0..36500"),
            (None, 1_000_001, "max_items", "outside 0..1000000"),
            (True, None, "max_age_days", "must be an integer or null"),
            (None, "5", "max_items", "must be an integer or null"),
            (1.5, None, "max_age_days", "must be an integer or null"),
        ):
            with pytest.raises(InvalidField) as caught:
                await set_retention(conn, "acme", age, items)  # type: ignore[arg-type]
            assert caught.value.field == field
            assert reason in caught.value.reason
        with pytest.raises(InvalidField) as caught:
            await set_retention(conn, "a.b", 1, 1)
        assert caught.value.field == "tenant"
        # Both None: back to the global limits, the row is gone.
        assert await set_retention(conn, "acme", None, None) == TenantRetention("acme")
        count = select(func.count()).select_from(retention)
        assert (await conn.execute(count)).scalar_one() == 0


async def test_a_bad_stored_limit_leaves_that_tenant_alone(store: Store) -> None:
    await store.write(
        [titled(f"{t}-{i}", note(i + (10 if t == "evil" else 0), t, stored_at=ago(90)))
         for t in ("evil", "acme") for i in range(3)]
    )  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(retention).values(tenant="evil", max_age_days=None, max_items=-1, updated_at=NOW)
        )
    async with store.engine.connect() as conn:
        with pytest.raises(StoredRowInvalid) as caught:
            await read_retention(conn, "evil")
    assert caught.value.field == "inbox_retention.max_items"
    assert "tenant 'evil'" in caught.value.reason
    result = await job(store, retention_max_age_days=30, retention_max_items=1).run_once()
    assert result is not None and result.skipped_tenants == ["evil"]
    assert await titles(store) == {"evil-0", "evil-1", "evil-2"}


async def test_the_job_runs_every_interval_and_survives_a_failing_pass(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    store = Store.open(url)  # not migrated yet: every pass fails
    retention_job = RetentionJob(
        store,
        InboxMetrics(),
        InboxSettings(retention_interval=1, retention_max_age_days=30, retention_pause=0),
    )
    errors = retention_job.metrics.retention_errors
    supervisor = Supervisor()
    try:
        supervisor.start(retention_job)
        await until(lambda: errors._value.get() >= 1, what="a failed pass", timeout=10)
        assert supervisor.names == ["inbox-retention"] and retention_job.passes == 0
        await migrate.upgrade(store.engine)
        await store.write([note(1, stored_at=datetime.now(UTC) - timedelta(days=31)), note(2)])
        await until(
            lambda: retention_job.metrics.retention_deleted.labels("age")._value.get() == 1,
            what="the old notification deleted by a pass",
            timeout=10,
        )
        assert await store.count() == 1  # the young one stays
        assert retention_job.metrics.retention_last_run._value.get() > time.time() - 60
        page = retention_job.metrics.render().decode()
        assert 'tidings_inbox_retention_deleted_total{reason="age"} 1.0' in page
        assert "tidings_inbox_retention_last_run_timestamp_seconds" in page
        assert supervisor.failure is None
    finally:
        await supervisor.stop()
        await store.close()


async def test_migration_0002_keeps_stored_notifications_and_goes_back(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine, "0001")
        await store.write([note(1), note(2)])
        assert await migrate.upgrade(store.engine, "0002") == ("0001", "0002")
        assert await store.count() == 2
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(migrate._config(sync), "0001"))
        assert await migrate.current(store.engine) == "0001"
        assert await store.count() == 2
        assert await migrate.upgrade(store.engine) == ("0001", migrate.head())
    finally:
        await store.close()


async def test_retention_does_not_hold_the_writer_up(store: Store) -> None:
    """Writes go on while a large backlog is deleted: each waits for one batch at most."""
    backlog = 20_000
    for start in range(0, backlog, 2000):
        await store.write([note(i, stored_at=ago(60)) for i in range(start + 1, start + 2001)])
    retention_job = job(store, retention_max_age_days=30, retention_pause=0.01)
    latencies: list[float] = []
    done = asyncio.Event()

    async def writer() -> None:
        seq = backlog
        while not done.is_set():
            seq += 1
            started = time.perf_counter()
            await store.write([note(seq)])
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)

    writing = asyncio.ensure_future(writer())
    started = time.perf_counter()
    try:
        result = await retention_job.run_once()
    finally:
        done.set()
        await writing
    took = time.perf_counter() - started
    assert result is not None and result.age == backlog
    assert await store.count() == len(latencies)
    latencies.sort()
    print(
        f"\n{store.dialect}: deleted {backlog} in {took:.2f}s ({result.statements} statements);"
        f" {len(latencies)} writes meanwhile, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms,"
        f" max {latencies[-1] * 1000:.1f} ms"
    )
    assert latencies[-1] < 1.0


async def test_the_writer_process_runs_retention_beside_the_writer(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine)
        old = datetime.now(UTC) - timedelta(days=31)
        await store.write([titled(f"old-{i}", note(i, stored_at=old)) for i in range(1, 6)])
    finally:
        await store.close()
    settings = inbox_settings(
        nats_settings, database_url, retention_interval=1, retention_max_age_days=30
    )
    async with running(settings) as inbox:
        assert inbox.supervisor.names == ["nats-link", "inbox-writer", "inbox-retention"]
        ids = await publish_requests(js, [request(i) for i in range(20)])

        async def only_the_new() -> bool:
            return sorted(await stored_ids(database_url)) == sorted(ids)

        await until(only_the_new, timeout=30, what="the 20 new stored and the 5 old deleted")
        last_run = inbox.metrics.retention_last_run
        await until(lambda: last_run._value.get() > 0, timeout=10, what="a pass to finish")
        page = inbox.metrics.render().decode()
    assert metric(page, "tidings_inbox_retention_deleted_total", reason="age") == 5
    assert metric(page, "tidings_inbox_retention_deleted_total", reason="items") == 0
    assert metric(page, "tidings_inbox_retention_last_run_timestamp_seconds") > time.time() - 60
    assert metric(page, "tidings_inbox_retention_errors_total") == 0
    assert metric(page, "tidings_inbox_stored_total") == 20


async def test_one_postgresql_pass_at_a_time(postgres_server: PostgresServer) -> None:
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres_server.create_database(name)
    store = Store.open(postgres_server.url(name))
    try:
        await migrate.upgrade(store.engine)
        await store.write([note(1, stored_at=ago(40))])
        other = job(store, retention_max_age_days=30)
        async with store.engine.connect() as holder:  # another writer's pass, running
            query = text("SELECT pg_try_advisory_lock(:key)")
            assert (await holder.execute(query, {"key": retention_lock})).scalar_one()
            assert await other.run_once() is None
            assert await store.count() == 1 and other.passes == 0
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": retention_lock})
        result = await other.run_once()
        assert result is not None and result.age == 1
    finally:
        await store.close()
        postgres_server.drop_database(name)
