"""The inbox in tests: stored rows built like the writer builds them, publishing through the one
publish path, a running inbox process (in-process) and what its database holds, and a
synchronous handle on an async store for hypothesis tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import func, select

from tests.support.waiting import until
from tidings.envelope import Notification, new_id
from tidings.inbox import migrate
from tidings.inbox.app import Inbox
from tidings.inbox.rows import StreamMessage, notification_row
from tidings.inbox.schema import notifications
from tidings.inbox.store import Store
from tidings.publishing import OutgoingMessage, PublishPolicy, prepare, publish_many
from tidings.settings import InboxSettings, NatsSettings, Settings
from tidings.subjects import Audience, Route

EPOCH = "test"
POLICY = PublishPolicy(allow_broadcast=True)


def row(
    seq: int, tenant: str | None, audience: Audience, *, ident: str | None = None
) -> dict[str, Any]:
    """The ``notifications`` row the writer stores for such a message."""
    route = Route(tenant, audience, "incident.created")
    n = Notification(
        id=ident or new_id(),
        tenant=tenant,
        event=route.event,
        audience=audience,
        time=datetime.now(UTC),
        title=f"n{seq}",
        message="m",
    )
    return notification_row(StreamMessage(EPOCH, seq, route.subject, n.to_bytes()))


def request(i: int, *, tenant: str = "acme", audience: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "tenant": tenant,
        "event": "incident.created",
        "title": f"incident {i}",
        "message": "a pump failed",
        "severity": "warning",
        "data": {"i": i},
    }
    if audience is not None:
        body["audience"] = audience
    if audience == {"broadcast": True}:
        del body["tenant"]
    return body


async def publish_requests(js: JetStreamContext, bodies: Sequence[Any]) -> list[str]:
    """Publish through ``tidings.publishing`` (validated like the sidecar); the ids, in order."""
    msgs: list[OutgoingMessage] = [prepare(b, POLICY) for b in bodies]
    ids: list[str] = []
    for start in range(0, len(msgs), 500):
        chunk = msgs[start : start + 500]
        results = await publish_many(js, chunk, stream="TIDINGS", timeout=10)
        ids += [r.id for r in results]
    return ids


@contextmanager
def sync_store(url: str) -> Iterator[tuple[asyncio.Runner, Store]]:
    """A migrated store with its own event loop, for synchronous (hypothesis) tests."""
    with asyncio.Runner() as runner:
        store = Store.open(url)
        try:
            runner.run(migrate.upgrade(store.engine))
            yield runner, store
        finally:
            runner.run(store.close())


def inbox_settings(nats_settings: NatsSettings, url: str, **inbox: object) -> Settings:
    fields: dict[str, object] = {
        "database_url": url,
        "migrate": True,
        "port": 0,
        "batch_size": 50,
        "fetch_timeout": 0.2,
        "ack_wait": 2.0,
        **inbox,
    }
    return Settings(nats=nats_settings, inbox=InboxSettings(**fields))  # type: ignore[arg-type]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Inbox]:
    inbox = Inbox.build(settings)
    await inbox.start()
    try:
        await until(lambda: inbox.writer.ready, timeout=10, what="the writer to bind")
        yield inbox
    finally:
        await inbox.stop()


async def stored_ids(url: str) -> list[str]:
    store = Store.open(url)
    try:
        async with store.engine.connect() as conn:
            return list((await conn.scalars(select(notifications.c.id))).all())
    finally:
        await store.close()


async def count(url: str, table: object = notifications) -> int:
    store = Store.open(url)
    try:
        async with store.engine.connect() as conn:
            query = select(func.count()).select_from(table)  # type: ignore[arg-type]
            return int((await conn.execute(query)).scalar_one())
    finally:
        await store.close()
