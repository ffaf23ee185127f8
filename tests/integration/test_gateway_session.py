"""One session on its own: a real picows server on 127.0.0.1 whose every upgrade is a
:class:`Session` wired to a registry, a hub, a verifier and a resume step over windows in
memory (no NATS, no gateway) — the conversation and every refusal, frame by frame."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from picows import (
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from prometheus_client import CollectorRegistry, Counter

from tests.support.wsclient import RawClient
from tests.unit.test_resume import FakeLive
from tidings.auth import Verifier, mint_token
from tidings.gateway.connection import State
from tidings.gateway.fanout import Hub
from tidings.gateway.listener import SessionDeps, shed
from tidings.gateway.registry import Registry
from tidings.gateway.resume import Resume
from tidings.gateway.session import Session
from tidings.gateway.upkeep import Expiry, Keepalive
from tidings.protocol import SUBPROTOCOL
from tidings.settings import AuthSettings, GatewaySettings
from tidings.subjects import BROADCAST_TENANT

SECRET = "tidings-session-secret-0123456789abcdef"


class Served:
    def __init__(self, deps: SessionDeps, port: int) -> None:
        self.deps = deps
        self.url = f"ws://127.0.0.1:{port}/ws"

    @property
    def registry(self) -> Registry:
        return self.deps.registry

    def session(self) -> Session:
        (session,) = self.registry.members()
        assert isinstance(session, Session)
        return session


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    settings = GatewaySettings(max_rooms=2)
    registry = Registry()
    registry.nats_connected = True
    registry.set_healed(True)
    hub = Hub(window=0, on_slow=lambda c: None)
    live = FakeLive()
    live.window("acme", 0)
    live.window(BROADCAST_TENANT, 0)
    metrics = CollectorRegistry()
    resume = Resume(
        live,  # type: ignore[arg-type]
        hub,
        registry,
        epoch="e1",
        outcomes=Counter("resumes", "r", ["outcome"], registry=metrics),
    )
    verifier = Verifier(AuthSettings(jwt_secret=SECRET, max_token_lifetime=0))  # type: ignore[arg-type]
    slow = Counter("slow", "s", registry=metrics)
    deps = SessionDeps(
        settings,
        registry,
        hub,
        verifier,
        resume,
        Expiry(registry),
        Counter("auth_failures", "a", ["reason"], registry=metrics),
        lambda conn: shed(conn, hub, slow),
    )

    def upgrade(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        ok = WSUpgradeResponse.create_101_response(
            extra_headers={"Sec-WebSocket-Protocol": SUBPROTOCOL}
        )
        return WSUpgradeResponseWithListener(ok, Session(deps))

    server = await ws_create_server(upgrade, "127.0.0.1", 0)
    try:
        yield Served(deps, int(server.sockets[0].getsockname()[1]))
    finally:
        for member in registry.members():
            member.cut()
        server.close()
        await verifier.aclose()


def token(**claims: object) -> str:
    fields: dict[str, object] = {"tenant": "acme", "user": "alice", **claims}
    return mint_token(SECRET, **fields)  # type: ignore[arg-type]


async def refusal(client: RawClient) -> tuple[str, int, tuple[int | None, str | None]]:
    error = await client.next("error")
    return error["code"], error["close"], await client.closed()


async def test_a_hello_is_welcomed_and_the_connection_joins_its_rooms(served: Served) -> None:
    async with RawClient(served.url) as client:
        welcome = await client.hello(token(roles=["ops"], rooms=["site-*"]), rooms=["room:site-1"])
        assert (welcome["tenant"], welcome["user"], welcome["epoch"]) == ("acme", "alice", "e1")
        assert welcome["rooms"] == ["broadcast", "role:ops", "room:site-1", "tenant", "user:alice"]
        await client.next("synced")
        assert served.registry.accepted == 1
        conn = served.session().conn
        assert conn.state is State.LIVE
        assert served.deps.hub.tenants == {"acme": 1}
    async with asyncio.timeout(5):
        while served.registry.sessions:  # a close forgets the connection everywhere
            await asyncio.sleep(0.02)
    assert served.deps.hub.tenants == {}


async def test_frames_after_the_hello_are_answered_with_their_id(served: Served) -> None:
    async with RawClient(served.url) as client:
        await client.hello(token(rooms=["site-*"]))
        await client.next("synced")
        await client.send({"type": "subscribe", "room": "room:site-2", "id": 1})
        assert (await client.next())["type"] == "subscribed"
        await client.send({"type": "unsubscribe", "room": "room:site-2", "id": 2})
        assert (await client.next()) == {"type": "unsubscribed", "room": "room:site-2", "id": 2}
        await client.send({"type": "ping", "id": 3})
        assert (await client.next()) == {"type": "pong", "id": 3}
        # Not allowed by its token: an error for that request, the connection stays.
        await client.send({"type": "subscribe", "room": "room:hq", "id": 4})
        error = await client.next("error")
        assert (error["code"], error["id"]) == ("forbidden", 4)
        await client.send({"type": "hello", "token": token(), "id": 5})
        assert (await client.next("error"))["code"] == "unexpected_frame"
        await client.send({"type": "ping", "id": 6})
        assert (await client.next()) == {"type": "pong", "id": 6}


async def test_the_first_frame_must_be_a_hello(served: Served) -> None:
    async with RawClient(served.url) as client:
        await client.send({"type": "ping", "id": 1})
        assert await refusal(client) == ("hello_required", 4000, (4000, "hello_required"))


async def test_a_bad_token_is_refused_and_counted(served: Served) -> None:
    async with RawClient(served.url) as client:
        await client.send({"type": "hello", "token": "not-a-jwt"})
        assert await refusal(client) == ("token_malformed", 4001, (4001, "token_malformed"))
    counted = served.deps.auth_failures.labels("token_malformed")._value.get()
    assert counted == 1


async def test_while_nats_is_away_or_draining_a_hello_is_told_to_come_back(
    served: Served,
) -> None:
    served.registry.nats_connected = False
    async with RawClient(served.url) as client:
        await client.send({"type": "hello", "token": token()})
        assert await refusal(client) == ("unavailable", 1013, (1013, "unavailable"))
    served.registry.nats_connected = True
    served.registry.draining = True
    async with RawClient(served.url) as client:
        await client.send({"type": "hello", "token": token()})
        assert await refusal(client) == ("restarting", 1012, (1012, "restarting"))


async def test_a_binary_frame_is_malformed_and_keeps_the_connection(served: Served) -> None:
    async with RawClient(served.url) as client:
        await client.hello(token())
        await client.next("synced")
        assert client.ws is not None
        await client.ws.send(b'{"type": "ping", "id": 1}')
        assert (await client.next("error"))["code"] == "malformed"
        await client.send({"type": "ping", "id": 2})
        assert (await client.next()) == {"type": "pong", "id": 2}


async def test_the_upkeep_loops_close_silent_and_expired_connections(served: Served) -> None:
    async with RawClient(served.url) as silent:
        await silent.hello(token())
        await silent.next("synced")
        session = served.session()
        keepalive = Keepalive(served.registry, interval=1.0)
        keepalive.check(session, time.monotonic())  # a ping; picows' client answers it
        session.seen -= 3  # no sign of life for three intervals
        keepalive.check(session, time.monotonic())
        assert await silent.closed() == (1011, "keepalive ping timeout")
    async with RawClient(served.url) as expiring:
        await expiring.hello(token())
        await expiring.next("synced")
        conn = served.session().conn
        assert conn.expires_at is not None
        served.deps.expiry.step(conn.expires_at + 1)
        assert await refusal(expiring) == ("token_expired", 4401, (4401, "token_expired"))


async def test_closed_and_refreshed_connections_leave_nothing_in_the_expiry_heap(
    served: Served,
) -> None:
    """Connect/close churn with ten-year tokens must not grow memory (issue 14, item 3)."""
    expiry = served.deps.expiry
    decade = 10 * 365 * 86400.0
    for _ in range(300):
        async with RawClient(served.url) as client:
            await client.hello(token(ttl=decade))
            await client.next("synced")
            assert len(expiry) == 1
    async with asyncio.timeout(5):
        while served.registry.sessions:
            await asyncio.sleep(0.02)
    assert len(expiry) == 0
    assert expiry.heap_size <= 2 * 64 + 1  # forgotten entries are swept, not kept until 2036

    # Refreshes faster than the frame rate limit allows, on this test's own settings.
    served.deps.settings = served.deps.settings.model_copy(update={"rate_burst": 1000})
    async with RawClient(served.url) as client:
        await client.hello(token(ttl=decade))
        await client.next("synced")
        for i in range(200):
            await client.send({"type": "refresh", "token": token(ttl=decade - i), "id": i})
            assert (await client.next("refreshed"))["id"] == i
        assert len(expiry) == 1  # each refresh replaced the entry
        assert expiry.heap_size <= 2 * 64 + 1
