"""Routing matrix: every audience kind reaches exactly the connections allowed to see it.

Several connections (two tenants with overlapping user, role and room names, plus a third
tenant that tries every trick to read the others) are opened; each notification's receivers
are asserted exactly, in stream order, and a quiet period shows that nothing else arrived.
The same matrix runs on one gateway and on two gateway processes with connections spread over
both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from tests.support.gateway_process import gateway_processes
from tests.support.wsclient import RawClient
from tidings.client import Publisher, PublishResult
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway

Mint = Callable[..., str]


@dataclass(frozen=True)
class Peer:
    """One connection of the matrix: its token and the named rooms it asks for."""

    tenant: str
    user: str
    roles: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()  # the token's allowed named-room patterns
    hello_rooms: tuple[str, ...] = ()  # asked for in hello
    join: tuple[str, ...] = ()  # subscribed after hello (each must be allowed)
    refused: tuple[str, ...] = ()  # subscribed after hello, the token does not allow them


PEERS: dict[str, Peer] = {
    "a_alice": Peer("acme", "alice", ("admin",), ("site-*",), join=("room:site-berlin",),
                    refused=("room:hq",)),
    "a_alice2": Peer("acme", "alice", (), ("*",), hello_rooms=("room:site-paris", "room:hq")),
    "a_bob": Peer("acme", "bob", ("worker",), ("site-berlin",), hello_rooms=("room:site-berlin",)),
    "a_carol": Peer("acme", "carol", ("admin", "worker"), refused=("room:site-berlin",)),
    "g_alice": Peer("globex", "alice", ("admin",), ("*",), join=("room:site-berlin",)),
    "g_dave": Peer("globex", "dave", ("worker",)),
    # Same user, roles and room names as acme's, every pattern allowed: still only its own.
    "evil": Peer("evil", "alice", ("admin", "worker"), ("*",),
                 hello_rooms=("room:site-berlin",), join=("room:hq",)),
}  # fmt: skip

# Subscribe attempts that try to reach outside the own tenant or the named-room grammar: each
# must be answered with an error frame (code) and change nothing.
ESCAPES: list[tuple[Any, str]] = [
    ("room:*", "bad_room"),
    ("room:>", "bad_room"),
    ("room:..", "bad_room"),
    ("room:site-*", "bad_room"),
    ("room:site-berlin.>", "bad_room"),
    ("room:acme.room.site-berlin", "bad_room"),
    ("room:", "bad_room"),
    ("user:bob", "bad_room"),  # a user room is joined from the token, never subscribed
    ("user:*", "bad_room"),
    ("role:admin", "bad_room"),
    ("tenant", "bad_room"),
    ("tenant:acme", "bad_room"),
    ("broadcast", "bad_room"),
    (["room:site-berlin"], "invalid_field"),
    (None, "missing_field"),
]


ACME = {"a_alice", "a_alice2", "a_bob", "a_carol"}
EVERYONE = {"*"}  # stands for every connection

# (title, tenant, room, exact receivers), published in this order.
FIRST: list[tuple[str, str, str, set[str]]] = [
    ("acme-tenant", "acme", "tenant", ACME),
    ("acme-user-alice", "acme", "user:alice", {"a_alice", "a_alice2"}),
    ("acme-user-bob", "acme", "user:bob", {"a_bob"}),
    ("acme-user-dave", "acme", "user:dave", set()),  # dave exists only in globex
    ("acme-role-admin", "acme", "role:admin", {"a_alice", "a_carol"}),
    ("acme-role-worker", "acme", "role:worker", {"a_bob", "a_carol"}),
    ("acme-role-ghost", "acme", "role:ghost", set()),
    ("acme-room-berlin", "acme", "room:site-berlin", {"a_alice", "a_bob"}),
    ("acme-room-paris", "acme", "room:site-paris", {"a_alice2"}),
    ("acme-room-hq", "acme", "room:hq", {"a_alice2"}),
    ("acme-room-nobody", "acme", "room:nobody", set()),
    ("globex-tenant", "globex", "tenant", {"g_alice", "g_dave"}),
    ("globex-user-alice", "globex", "user:alice", {"g_alice"}),
    ("globex-role-worker", "globex", "role:worker", {"g_dave"}),
    ("globex-room-berlin", "globex", "room:site-berlin", {"g_alice"}),
    ("evil-room-hq", "evil", "room:hq", {"evil"}),
    ("evil-user-alice", "evil", "user:alice", {"evil"}),
    ("broadcast", "", "broadcast", EVERYONE),
    ("acme-tenant-2", "acme", "tenant", ACME),
]
AFTER_LEAVING: list[tuple[str, str, str, set[str]]] = [
    ("acme-room-berlin-2", "acme", "room:site-berlin", {"a_bob"}),
    ("globex-room-berlin-2", "globex", "room:site-berlin", {"g_alice"}),
]


def publish(pub: Publisher, tenant: str, room: str, title: str) -> Awaitable[PublishResult]:
    """Publish through the SDK to the audience that ``room`` names."""
    kind, _, name = room.partition(":")
    if kind == "broadcast":
        return pub.broadcast("system.notification", title=title, message="m")
    audience = {"tenant": None, "user": "user", "role": "role", "room": "room"}[kind]
    body: dict[str, Any] = {"tenant": tenant, "event": "incident.created", "title": title,
                            "message": "m"}  # fmt: skip
    if audience is not None:
        body["audience"] = {audience: name}
    return pub.publish(body)


@dataclass
class Sent:
    """One published notification and who must receive it."""

    title: str
    room: str
    receivers: frozenset[str]
    seq: int = 0


@dataclass
class Matrix:
    """What was sent to whom; :meth:`check` compares it with what every client received."""

    clients: dict[str, RawClient]
    sent: list[Sent] = field(default_factory=list)

    async def send(
        self, title: str, room: str, receivers: set[str], published: Awaitable[PublishResult]
    ) -> None:
        result = await published
        if receivers == EVERYONE:
            receivers = set(self.clients)
        unknown = receivers - set(self.clients)
        assert not unknown, unknown
        assert result.seq is not None and not result.duplicate, result
        self.sent.append(Sent(title, room, frozenset(receivers), result.seq))

    async def check(self) -> None:
        """Each client got exactly its notifications, in stream order, then nothing else."""
        expected = {name: [s for s in self.sent if name in s.receivers] for name in self.clients}

        async def collect(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            client = self.clients[name]
            got: list[dict[str, Any]] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    while len(got) < len(expected[name]):
                        got.append(await client.next("notification", timeout=10))
            return got, await client.quiet(0.3)

        results = await asyncio.gather(*(collect(n) for n in self.clients))
        for name, (got, extra) in zip(self.clients, results, strict=True):
            want = expected[name]
            assert [(g["title"], g["room"], g["seq"]) for g in got] == [
                (s.title, s.room, s.seq) for s in want
            ], name
            assert extra == [], f"{name} received more than it should: {extra}"
        self.sent.clear()


async def open_peer(stack: AsyncExitStack, url: str, name: str, token: Mint) -> RawClient:
    peer = PEERS[name]
    client = await stack.enter_async_context(RawClient(url))
    jwt = token(tenant=peer.tenant, user=peer.user, roles=list(peer.roles),
                rooms=list(peer.patterns))  # fmt: skip
    welcome = await client.hello(jwt, rooms=list(peer.hello_rooms))
    assert (welcome["tenant"], welcome["user"]) == (peer.tenant, peer.user)
    expected_rooms = {"tenant", f"user:{peer.user}", *(f"role:{r}" for r in peer.roles)}
    assert set(welcome["rooms"]) - {"broadcast"} == expected_rooms | set(peer.hello_rooms)
    await client.next("synced")
    for i, room in enumerate(peer.join):
        await client.send({"type": "subscribe", "room": room, "id": i})
        assert await client.next("subscribed") == {"type": "subscribed", "room": room, "id": i}
    for i, room in enumerate(peer.refused, start=100):
        await client.send({"type": "subscribe", "room": room, "id": i})
        error = await client.next("error")
        assert (error["code"], error["id"], error.get("close")) == ("forbidden", i, None), error
    return client


async def try_escapes(client: RawClient) -> None:
    """Every escape attempt is refused with its code; the connection stays open."""
    for i, (room, code) in enumerate(ESCAPES, start=1):
        await client.send({"type": "subscribe", "room": room, "id": i})
        error = await client.next("error")
        assert (error["code"], error["id"], error.get("close")) == (code, i, None), (room, error)
        assert error["reason"]
    await client.send({"type": "ping", "id": 999})
    assert await client.next("pong") == {"type": "pong", "id": 999}
    assert await client.quiet(0.05) == []


async def refused_at_hello(url: str, token: Mint) -> None:
    """Wildcards and other users' rooms in hello are refused with their close codes."""
    evil = PEERS["evil"]
    cases: list[tuple[str, list[str], str, int]] = [
        ("*", ["room:*"], "bad_room", 4000),
        ("*", ["room:site-berlin", "room:>"], "bad_room", 4000),
        ("*", ["user:bob"], "bad_room", 4000),
        ("*", ["tenant:acme"], "bad_room", 4000),
        ("site-*", ["room:hq"], "forbidden", 4003),  # the token's patterns do not allow it
    ]
    for pattern, rooms, code, close in cases:
        async with RawClient(url) as client:
            jwt = token(tenant=evil.tenant, user=evil.user, rooms=[pattern])
            await client.send({"type": "hello", "token": jwt, "rooms": rooms})
            error = await client.next("error")
            assert (error["code"], error["close"]) == (code, close), (rooms, error)
            assert await client.closed() == (close, code)


async def run_matrix(urls: list[str], js: JetStreamContext, token: Mint) -> None:
    """Open every peer (spread over ``urls``), publish to every audience kind, check receivers."""
    pub = Publisher(js, allow_broadcast=True)
    async with AsyncExitStack() as stack:
        names = list(PEERS)
        clients = {
            name: await open_peer(stack, urls[i % len(urls)], name, token)
            for i, name in enumerate(names)
        }
        await try_escapes(clients["evil"])
        for url in urls:
            await refused_at_hello(url, token)
        m = Matrix(clients)
        for title, tenant, room, receivers in FIRST:
            await m.send(title, room, receivers, publish(pub, tenant, room, title))
        await m.check()

        # Leaving a named room stops its notifications; the other member keeps them.
        alice = clients["a_alice"]
        await alice.send({"type": "unsubscribe", "room": "room:site-berlin", "id": 7})
        left = await alice.next("unsubscribed")
        assert (left["room"], left["id"]) == ("room:site-berlin", 7)
        for title, tenant, room, receivers in AFTER_LEAVING:
            await m.send(title, room, receivers, publish(pub, tenant, room, title))
        await m.check()


async def test_routing_matrix_on_one_gateway(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    await run_matrix([f"ws://127.0.0.1:{gateway.port}/ws"], js, token)


async def test_routing_matrix_across_two_gateway_processes(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Mint, tmp_path: Path
) -> None:
    async with gateway_processes(2, nats_server.url, tmp_path) as gws:
        await run_matrix([gw.ws_url for gw in gws], js, token)


async def test_rooms_follow_a_refreshed_token(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    """A refresh with other roles and room patterns moves the connection's rooms with it."""
    pub = Publisher(js, allow_broadcast=True)
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        await client.hello(
            token(roles=["admin", "auditor"], rooms=["site-*"]), rooms=["room:site-berlin"]
        )
        await client.next("synced")
        await client.send(
            {"type": "refresh", "token": token(roles=["auditor", "worker"], rooms=["hq"]), "id": 1}
        )
        taken = [await client.next("unsubscribed"), await client.next("unsubscribed")]
        assert sorted((t["room"], t.get("reason")) for t in taken) == [
            ("role:admin", "forbidden"),
            ("room:site-berlin", "forbidden"),
        ]
        refreshed = await client.next("refreshed")
        assert refreshed["id"] == 1
        assert set(refreshed["rooms"]) == {
            "broadcast", "tenant", "user:alice", "role:auditor", "role:worker"
        }  # fmt: skip
        await client.send({"type": "subscribe", "room": "room:site-berlin", "id": 2})
        assert (await client.next("error"))["code"] == "forbidden"
        await client.send({"type": "subscribe", "room": "room:hq", "id": 3})
        assert (await client.next("subscribed"))["room"] == "room:hq"

        sent = {}
        for room in ("role:admin", "room:site-berlin", "role:auditor", "role:worker", "room:hq"):
            sent[room] = (await publish(pub, "acme", room, room)).seq
        got = await client.notifications(3)
        assert [(g["room"], g["seq"]) for g in got] == [
            (room, sent[room]) for room in ("role:auditor", "role:worker", "room:hq")
        ]
        assert await client.quiet(0.3) == []
