"""Counts say exactly what they include (``seq``) with several writers: every notification
stored with a sequence up to it, none above, even when writers commit out of order.

Real nats-server, SQLite and a real PostgreSQL; the writers are the real ``InboxWriter`` of
two inbox processes sharing one durable consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from nats.js import JetStreamContext
from sqlalchemy import func, select, update

from tests.support.inbox import POLICY, inbox_settings, publish_requests, request, running
from tests.support.waiting import until
from tidings.auth.claims import Claims
from tidings.inbox import migrate, queries
from tidings.inbox.app import Inbox, prepare_schema
from tidings.inbox.rows import StreamMessage, notification_row
from tidings.inbox.schema import notifications, progress
from tidings.inbox.store import Progress, Store
from tidings.publishing import prepare
from tidings.settings import NatsSettings, Settings

ALICE = Claims("acme", "alice")


@asynccontextmanager
async def bound_only(settings: Settings) -> AsyncIterator[Inbox]:
    """An inbox process whose writer is bound to the consumer but fetches only when told."""
    inbox = Inbox.build(settings)
    await prepare_schema(inbox.store, migrating=True)
    inbox.supervisor.start(inbox.link)
    try:
        await until(lambda: inbox.writer.ready, timeout=10, what="the writer to bind")
        yield inbox
    finally:
        await inbox.stop()


async def counts(store: Store) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        return await queries.counts(conn, ALICE, None)


async def stored_upto(store: Store, seq: int) -> int:
    """Notifications stored with a stream sequence up to ``seq`` (all of them tenant-wide)."""
    async with store.engine.connect() as conn:
        query = select(func.count()).where(notifications.c.seq <= seq)
        return int((await conn.execute(query)).scalar_one())


async def test_a_higher_batch_committed_first_is_not_counted_until_the_lower_one_is(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    settings = inbox_settings(nats_settings, database_url, batch_size=10)
    async with bound_only(settings) as one, bound_only(settings) as two:
        await publish_requests(js, [request(i) for i in range(20)])
        lower = await one.writer.fetch()  # sequences 1-10
        higher = await two.writer.fetch()  # 11-20
        assert [m.metadata.sequence.stream for m in lower] == list(range(1, 11))
        assert [m.metadata.sequence.stream for m in higher] == list(range(11, 21))

        await two.writer.handle(higher)  # committed and acked while 1-10 are not stored
        seen = await counts(one.store)
        # Before: seq 20 with 10 counted, so a client holding 1-10 live would never add them.
        assert (seen["seq"], seen["total"], seen["unread"]) == (0, 0, 0)

        await one.writer.handle(lower)
        assert (await counts(one.store))["total"] in (0, 20)  # never a part

        async def covered() -> bool:
            await one.writer.settle()  # idle: records the ack floor once it covers both
            return (await counts(one.store))["seq"] == 20

        await until(covered, timeout=10, what="the ack floor past both batches")
        seen = await counts(one.store)
        assert (seen["seq"], seen["total"], seen["unread"]) == (20, 20, 20)


async def test_counts_of_two_running_writers_include_exactly_up_to_their_seq(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    """Sampled while two writers drain 2,000 notifications in small batches: each sample's
    total is the number stored up to its ``seq`` (checked once all are stored: nothing is
    deleted, so what was stored up to a sequence then is stored up to it now)."""
    total = 2000
    settings = inbox_settings(nats_settings, database_url, batch_size=25)
    samples: list[tuple[int, int]] = []

    async def paced() -> None:
        # In 20 steps a writer's progress interval (0.2 s) apart, so the bound has steps to move
        # through whatever the machine's speed (published at once, a fast drain recorded only
        # 0, 1400 and 2000 under CI's load).
        for start in range(0, total, 100):
            await publish_requests(js, [request(i) for i in range(start, start + 100)])
            await asyncio.sleep(0.25)

    async with running(settings) as one, running(settings) as two:
        publishing = asyncio.ensure_future(paced())
        while True:
            seen = await counts(one.store)
            samples.append((seen["seq"], seen["total"]))
            if seen["seq"] >= total and publishing.done():
                break
            await asyncio.sleep(0.005)
        await publishing
        stored = [w.metrics.stored._value.get() for w in (one, two)]
        for seq, counted in samples:
            assert counted == await stored_upto(one.store, seq), (seq, counted)
    assert sum(stored) == total
    assert all(stored), stored  # both writers took part
    assert len({seq for seq, _ in samples}) > 3, samples[:10]  # the bound moved along
    assert samples[-1] == (total, total)


async def test_gone_writers_progress_is_pruned_but_never_the_highest(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine)
        for writer, upto in (("gone-low", 5), ("gone-high", 50), ("old-epoch", 900), ("me", 10)):
            epoch = "e0" if writer == "old-epoch" else "e1"
            await store.record(Progress(writer, epoch, upto))
        async with store.engine.begin() as conn:
            long_ago = datetime.now(UTC) - timedelta(hours=2)
            await conn.execute(
                update(progress).where(progress.c.writer != "me").values(updated_at=long_ago)
            )
        await store.prune_progress("me", 3600)
        async with store.engine.connect() as conn:
            rows = (await conn.execute(select(progress.c.writer, progress.c.upto))).all()
    finally:
        await store.close()
    assert sorted(rows) == [("gone-high", 50), ("me", 10)]


async def test_migration_0003_keeps_stored_notifications_and_goes_back(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine, "0002")
        await store.write([row(1), row(2)])
        assert await migrate.upgrade(store.engine, "0003") == ("0002", "0003")
        assert await stored_upto(store, 2) == 2
        assert (await counts(store))["total"] == 2
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(migrate._config(sync), "0002"))
        assert await migrate.current(store.engine) == "0002"
        assert await stored_upto(store, 2) == 2
        assert await migrate.upgrade(store.engine) == ("0002", migrate.head())
    finally:
        await store.close()


def row(seq: int) -> dict[str, Any]:
    note = prepare(request(seq), POLICY)
    message = StreamMessage("e1", seq, note.subject, note.payload)
    return notification_row(message)
