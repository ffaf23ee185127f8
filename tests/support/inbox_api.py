"""The inbox API in tests: the app in this process (its lifespan run by hand), an HTTP client on
it, tokens for its callers, and stored notifications built like the writer builds them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.tokens import JWT_SECRET
from tidings.auth import mint_token
from tidings.envelope import Notification, Severity, new_id
from tidings.inbox.api_app import InboxApiProcess, create_app
from tidings.inbox.rows import StreamMessage, notification_row
from tidings.inbox.store import Store
from tidings.settings import AuthSettings, GatewaySettings, InboxSettings, NatsSettings, Settings
from tidings.subjects import TENANT_AUDIENCE, Audience, Route

ORIGIN = "http://app.example"
# No nats-server listens here: the API must answer while NATS is down.
NO_NATS = NatsSettings(urls=["nats://127.0.0.1:9"], reconnect_wait=0.2, request_timeout=1.0)


def bearer(tenant: str = "acme", user: str = "alice", **claims: Any) -> dict[str, str]:
    token = mint_token(JWT_SECRET, tenant=tenant, user=user, **claims)
    return {"Authorization": f"Bearer {token}"}


def api_settings(url: str, nats: NatsSettings = NO_NATS, **inbox: Any) -> Settings:
    fields: dict[str, Any] = {"database_url": url, "migrate": True, "api_port": 0, **inbox}
    return Settings(
        nats=nats,
        auth=AuthSettings(jwt_secret=JWT_SECRET),  # type: ignore[arg-type]
        gateway=GatewaySettings(allowed_origins=[ORIGIN]),
        inbox=InboxSettings(**fields),
    )


@asynccontextmanager
async def inbox_api(
    url: str, nats: NatsSettings = NO_NATS, **inbox: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, InboxApiProcess]]:
    """The API app on ``url`` (migrated), and a client calling it in process."""
    app = create_app(api_settings(url, nats, **inbox))
    process: InboxApiProcess = app.state.process
    await process.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
            yield client, process
    finally:
        await process.stop()


class Seeder:
    """Stores notifications through the writer's own row builder and store write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.epoch = "test"  # the stream's epoch: a new one restarts the sequence
        self.seq = 0

    async def add(
        self,
        tenant: str | None = "acme",
        audience: Audience = TENANT_AUDIENCE,
        *,
        event: str = "incident.created",
        severity: str = "info",
        title: str | None = None,
        message: str = "details",
        time: datetime | None = None,
    ) -> str:
        self.seq += 1
        route = Route(tenant, audience, event)
        n = Notification(
            id=new_id(),
            tenant=tenant,
            event=event,
            audience=audience,
            time=time or datetime.now(UTC),
            title=title or f"n{self.seq}",
            message=message,
            severity=Severity(severity),
        )
        row = notification_row(StreamMessage(self.epoch, self.seq, route.subject, n.to_bytes()))
        assert (await self.store.write([row])).stored == 1
        return n.id

    async def many(self, count: int, **fields: Any) -> list[str]:
        return [await self.add(**fields) for _ in range(count)]
