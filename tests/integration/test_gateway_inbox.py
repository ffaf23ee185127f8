"""The gateway's inbox side (issue 11, items 4 and 5) with a real nats-server and real gateway
processes: counts in the welcome, ``inbox`` frames to every connection of one user and no one
else, bad change messages dropped, an inbox that does not answer costing only the counts, and
muted domains left out live and on resume without disturbing the resume point.

The inbox API's side is played over NATS the way it speaks (``tidings.inbox.session`` answered,
``tidings.inbox.changed.<tenant>.<user>`` published): what the API process does; the end-to-end
test with the real API process is in test_inbox_live.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tests.support.publisher_process import metric
from tests.support.waiting import at_server, until
from tests.support.wsclient import RawClient, ws_url
from tidings.client import Publisher, SubscriberOptions, connect
from tidings.client.subscriber_events import InboxChanged
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway
from tidings.protocol import InboxFrame

Mint = Callable[..., str]
INBOX_ON = {"TIDINGS_GATEWAY_INBOX": "true", "TIDINGS_GATEWAY_INTEREST_LINGER": "0.2"}


def counts(unread: int, *, total: int = 10, warning: int = 0) -> dict[str, Any]:
    return {
        "total": total,
        "unread": unread,
        "unseen": unread,
        "unread_by_severity": {
            "info": unread - warning,
            "success": 0,
            "warning": warning,
            "error": 0,
            "critical": 0,
        },
    }


class Sessions:
    """Answers ``tidings.inbox.session`` per (tenant, user) as the inbox API would."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], dict[str, Any]] = {}
        self.asked: list[dict[str, Any]] = []

    async def handle(self, msg: Msg) -> None:
        question = orjson.loads(msg.data)
        self.asked.append(question)
        answer = self.answers.get((question["tenant"], question["user"]))
        body = answer or {"counts": counts(0, total=0), "muted": []}
        await msg.respond(orjson.dumps(body))


@asynccontextmanager
async def inbox_api(nc: NATS) -> AsyncIterator[Sessions]:
    sessions = Sessions()
    sub = await nc.subscribe("tidings.inbox.session", "tidings-inbox-api", cb=sessions.handle)
    await at_server(nc)
    try:
        yield sessions
    finally:
        await sub.unsubscribe()


async def changed(nc: NATS, tenant: str, user: str, body: dict[str, Any] | bytes) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    await nc.publish(f"tidings.inbox.changed.{tenant}.{user}", data)
    await nc.flush()


async def inbox_frames(c: RawClient, seconds: float = 0.3) -> list[dict[str, Any]]:
    """The ``inbox`` frames that arrive within ``seconds``."""
    return [f for f in await c.quiet(seconds) if f["type"] == "inbox"]


async def gauge(gw: GatewayProcess, name: str, **labels: str) -> float:
    async with gw.http(metrics=True) as http:
        return metric((await http.get("/metrics")).text, name, **labels)


@asynccontextmanager
async def one_gateway(
    nats_server: EmbeddedNats, tmp_path: Path, **env: str
) -> AsyncIterator[GatewayProcess]:
    async with gateway_processes(1, nats_server.url, tmp_path, env={**INBOX_ON, **env}) as gws:
        yield gws[0]


# --- counts and changes ------------------------------------------------------------------------


async def test_counts_in_the_welcome_and_changes_to_every_device_of_that_user_only(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    async with inbox_api(nc) as api, one_gateway(nats_server, tmp_path) as gw:
        api.answers[("acme", "alice")] = {"counts": counts(3, warning=1), "muted": []}
        api.answers[("globex", "alice")] = {"counts": counts(7), "muted": []}
        async with (
            RawClient(gw.ws_url) as phone,
            RawClient(gw.ws_url) as laptop,
            RawClient(gw.ws_url) as bob,
            RawClient(gw.ws_url) as other_alice,  # same user name, another tenant
        ):
            welcome = await phone.hello(token(roles=["admin"], rooms=["site-*"]))
            assert welcome["inbox"] == counts(3, warning=1)
            assert (await laptop.hello(token()))["inbox"] == counts(3, warning=1)
            assert (await bob.hello(token(user="bob")))["inbox"] == counts(0, total=0)
            assert (await other_alice.hello(token(tenant="globex")))["inbox"] == counts(7)
            # The question carries the token's claims, as the inbox decides visibility by them.
            first = api.asked[0]
            assert first == {
                "tenant": "acme",
                "user": "alice",
                "roles": ["admin"],
                "rooms": ["site-*"],
            }

            # A read on some device: every connection of acme/alice, within a second.
            change = {"counts": counts(2), "ids": ["n-1"], "set": {"read": True}}
            started = time.monotonic()
            await changed(nc, "acme", "alice", change)
            for device in (phone, laptop):
                frame = await device.next("inbox", timeout=1.0)
                assert frame == {"type": "inbox", **change}
            assert time.monotonic() - started < 1.0
            # A body cannot redirect a change: the subject's tenant and user decide.
            await changed(nc, "globex", "alice", {**change, "tenant": "acme", "user": "bob"})
            got = await other_alice.next("inbox", timeout=1.0)
            assert got == {"type": "inbox", **change}  # unknown fields are not forwarded
            mark_all = {"counts": counts(0), "ids": [], "set": {"read": True}, "all": True}
            await changed(nc, "acme", "alice", mark_all)
            assert await phone.next("inbox") == {"type": "inbox", **mark_all}
            assert await laptop.next("inbox") == {"type": "inbox", **mark_all}
            # Nobody else heard anything: not bob (same tenant), not globex/alice after hers.
            assert await inbox_frames(bob) == []
            assert await inbox_frames(other_alice, 0.1) == []
            assert await gauge(gw, "tidings_gateway_inbox_frames_total") == 5


async def test_bad_change_messages_are_dropped_counted_and_harmless(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    good = {"counts": counts(1), "ids": ["n-1"], "set": {"seen": True}}
    bad: list[tuple[str, bytes]] = [
        ("alice", b"not json"),
        ("alice", b"[1, 2]"),
        ("alice", orjson.dumps({**good, "counts": {"total": 1}})),  # counts incomplete
        ("alice", orjson.dumps({**good, "counts": {**counts(1), "unread": -1}})),
        ("alice", orjson.dumps({**good, "ids": ["a.b"]})),  # not an id
        ("alice", orjson.dumps({**good, "ids": ["x"] * 1001})),
        ("alice", orjson.dumps({**good, "set": {"read": "yes"}})),
        ("alice", orjson.dumps({**good, "set": {"deleted": True}})),
        ("alice", orjson.dumps({**good, "muted": ["Billing!"]})),
        ("alice", orjson.dumps({**good, "all": False})),
        ("alice", b"{" + b" " * 300_000 + b"}"),
        ("alice.extra", orjson.dumps(good)),  # six tokens: no (tenant, user) subject
    ]
    async with (
        inbox_api(nc),
        one_gateway(nats_server, tmp_path) as gw,
        RawClient(gw.ws_url) as alice,
    ):
        await alice.hello(token())
        for user, data in bad:
            await changed(nc, "acme", user, data)
        await changed(nc, "acme", "alice", good)
        assert await alice.next("inbox") == {"type": "inbox", **good}  # the good one only
        assert await inbox_frames(alice, 0.2) == []
        assert await gauge(gw, "tidings_gateway_inbox_changes_dropped_total") == len(bad)
        assert gw.running
        await alice.send({"type": "ping", "id": 1})
        assert await alice.next("pong") == {"type": "pong", "id": 1}


async def test_no_answer_costs_the_counts_not_the_welcome(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    async with one_gateway(nats_server, tmp_path, TIDINGS_GATEWAY_INBOX_TIMEOUT="0.5") as gw:
        # Nobody answers: NATS says so at once.
        async with RawClient(gw.ws_url) as alice:
            welcome = await alice.hello(token())
            assert "inbox" not in welcome
            assert welcome["recovered"] is False
        failures = "tidings_gateway_inbox_session_failures_total"
        assert await gauge(gw, failures, reason="no_responders") == 1
        # An inbox that takes the question and never answers: the welcome comes after the
        # timeout (0.5 s), without counts, and the connection works.
        silent = await nc.subscribe("tidings.inbox.session")
        await at_server(nc)
        async with RawClient(gw.ws_url) as alice:
            started = time.monotonic()
            welcome = await alice.hello(token())
            waited = time.monotonic() - started
            assert "inbox" not in welcome
            assert 0.4 < waited < 1.5, waited
            await changed(nc, "acme", "alice", {"counts": counts(1), "ids": [], "set": {}})
            assert (await alice.next("inbox"))["counts"] == counts(1)  # changes still arrive
        assert await gauge(gw, failures, reason="timeout") == 1
        await silent.unsubscribe()
        # An error body is a refusal: no counts either.

        async def refuse(msg: Msg) -> None:
            await msg.respond(b'{"error":{"code":"internal","reason":"database down"}}')

        refusing = await nc.subscribe("tidings.inbox.session", cb=refuse)
        await at_server(nc)
        async with RawClient(gw.ws_url) as alice:
            assert "inbox" not in await alice.hello(token())
        assert await gauge(gw, failures, reason="refused") == 1
        await refusing.unsubscribe()


async def test_off_by_default_the_gateway_neither_asks_nor_listens(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    async with (
        inbox_api(nc) as api,
        gateway_processes(1, nats_server.url, tmp_path) as (gw,),
        RawClient(gw.ws_url) as alice,
    ):
        assert "inbox" not in await alice.hello(token())
        await changed(nc, "acme", "alice", {"counts": counts(1), "ids": [], "set": {}})
        assert await inbox_frames(alice) == []
        assert api.asked == []


# --- muted domains -----------------------------------------------------------------------------


def note(event: str, title: str, severity: str = "info", **extra: Any) -> dict[str, Any]:
    return {"tenant": "acme", "event": event, "title": title, "message": "m", **extra} | {
        "severity": severity
    }


async def titles_until_synced(c: RawClient) -> tuple[list[str], int]:
    """Titles of the notifications before ``synced``, and its seq."""
    got: list[str] = []
    while True:
        frame = await c.next()
        if frame["type"] == "synced":
            return got, frame["seq"]
        if frame["type"] == "notification":
            got.append(frame["title"])


async def test_muted_domains_are_left_out_live_and_on_resume_exactly(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    pub = Publisher(js)
    async with inbox_api(nc) as api, one_gateway(nats_server, tmp_path) as gw:
        api.answers[("acme", "alice")] = {"counts": counts(0), "muted": ["audit"]}
        async with RawClient(gw.ws_url) as alice, RawClient(gw.ws_url) as bob:
            welcome = await alice.hello(token())
            epoch = welcome["epoch"]
            await alice.next("synced")
            await bob.hello(token(user="bob"))
            await bob.next("synced")
            sent = [
                await pub.publish(note("incident.created", "i1")),
                await pub.publish(note("audit.created", "a1")),  # muted for alice
                await pub.publish(note("audit.created", "a2-critical", "critical")),  # never
                await pub.publish(note("incident.updated", "i2")),
            ]
            got = await alice.notifications(3)
            assert [n["title"] for n in got] == ["i1", "a2-critical", "i2"]
            assert [n["seq"] for n in got] == [sent[0].seq, sent[2].seq, sent[3].seq]
            assert [n["title"] for n in await bob.notifications(4)] == [
                "i1",
                "a1",
                "a2-critical",
                "i2",
            ]
            assert [f for f in await alice.quiet(0.2) if f["type"] == "notification"] == []
            resume_point = got[-1]["seq"]
            # Gone, then: a muted one, the last one before the gap is one alice never had.
        async with RawClient(gw.ws_url) as bob:
            await bob.hello(token(user="bob"))
            await bob.next("synced")
            muted_seq = (await pub.publish(note("audit.updated", "a3"))).seq
            after = [
                await pub.publish(note("incident.created", "i3")),
                await pub.publish(note("audit.status_changed", "a4")),
                await pub.publish(note("audit.assigned", "a5-critical", "critical")),
                await pub.publish(note("incident.status_changed", "i4")),
                await pub.publish(note("audit.updated", "a6")),  # muted, and the newest
            ]
            # The gateway holds all six before alice is back (bob has them): they reach her by
            # the replay, never live — a PubAck can come before the republished copy arrives.
            assert len(await bob.notifications(6)) == 6
        assert muted_seq < after[0].seq
        async with RawClient(gw.ws_url) as alice:
            welcome = await alice.hello(token(), since=resume_point, epoch=epoch)
            assert welcome["recovered"] is True
            titles, synced = await titles_until_synced(alice)
            assert titles == ["i3", "a5-critical", "i4"]  # nothing lost, nothing twice
            assert synced >= after[-2].seq
            # Resume from that point (the muted a6 may lie after it): nothing comes again, and
            # a6 does not come at all.
        async with RawClient(gw.ws_url) as alice:
            welcome = await alice.hello(token(), since=synced, epoch=epoch)
            assert welcome["recovered"] is True
            assert await titles_until_synced(alice) == ([], synced)
            # Preferences change on another device: audit is unmuted at once, live.
            await changed(
                nc, "acme", "alice", {"counts": counts(0), "ids": [], "set": {}, "muted": []}
            )
            assert (await alice.next("inbox"))["muted"] == []
            await pub.publish(note("audit.updated", "a7"))
            assert [n["title"] for n in await alice.notifications(1)] == ["a7"]
            # ... and muted again: incident now.
            await changed(
                nc,
                "acme",
                "alice",
                {"counts": counts(0), "ids": [], "set": {}, "muted": ["incident"]},
            )
            await alice.next("inbox")
            await pub.publish(note("incident.updated", "i5"))
            await pub.publish(note("audit.updated", "a8"))
            assert [n["title"] for n in await alice.notifications(1)] == ["a8"]
        # A replay from before all of it, with incident muted: the audit ones, critical ones.
        async with RawClient(gw.ws_url) as alice:
            api.answers[("acme", "alice")] = {"counts": counts(0), "muted": ["incident"]}
            welcome = await alice.hello(token(), since=sent[0].seq, epoch=epoch)
            assert welcome["recovered"] is True
            titles, _ = await titles_until_synced(alice)
            assert titles == ["a1", "a2-critical", "a3", "a4", "a5-critical", "a6", "a7", "a8"]
        # Counted live only: a1 and i5 (what a replay leaves out was never due to it).
        assert await gauge(gw, "tidings_gateway_muted_total") == 2


# --- interest ----------------------------------------------------------------------------------


@pytest.mark.settings(gateway={"inbox": True, "interest_linger": 0.1})
async def test_the_change_subscription_follows_the_tenants_hosted(
    gateway: Gateway, nc: NATS, token: Mint
) -> None:
    inbox = gateway.inbox
    assert inbox is not None
    async with RawClient(ws_url(gateway)) as alice:
        await alice.hello(token())
        assert set(inbox.subs) == {"acme"}
        async with RawClient(ws_url(gateway)) as other:
            await other.hello(token(tenant="globex"))
            assert set(inbox.subs) == {"acme", "globex"}
        await until(lambda: set(inbox.subs) == {"acme"}, what="globex's subscription dropped")
        await changed(nc, "acme", "alice", {"counts": counts(4), "ids": [], "set": {}})
        assert (await alice.next("inbox"))["counts"] == counts(4)
    await until(lambda: not inbox.subs and not inbox.users, what="every subscription dropped")


# --- NATS reconnect ----------------------------------------------------------------------------


async def test_after_a_nats_restart_every_user_gets_its_counts_again(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    """Changes published while NATS was away are lost (core NATS): the heal asks the inbox
    again for every user here and pushes the counts; the change subscription is back too."""
    async with inbox_api(nc) as api, one_gateway(nats_server, tmp_path) as gw:
        api.answers[("acme", "alice")] = {"counts": counts(1), "muted": []}
        async with RawClient(gw.ws_url) as alice:
            assert (await alice.hello(token()))["inbox"] == counts(1)
            await alice.next("synced")
            await asyncio.to_thread(nats_server.stop)
            api.answers[("acme", "alice")] = {"counts": counts(6), "muted": ["audit"]}
            await asyncio.to_thread(nats_server.start)
            frame = await alice.next("inbox", timeout=20)
            assert frame == {
                "type": "inbox",
                "counts": counts(6),
                "ids": [],
                "set": {},
                "muted": ["audit"],
            }
            await until(lambda: nc.is_connected, what="the test's own NATS client is back")
            change = {"counts": counts(2), "ids": ["n-9"], "set": {"read": True}}

            async def delivered() -> bool:  # the gateway's re-sent SUB may lag the test's own
                await changed(nc, "acme", "alice", change)
                try:
                    return await alice.next("inbox", timeout=0.5) == {"type": "inbox", **change}
                except TimeoutError:
                    return False

            await until(delivered, what="a change after the restart", timeout=10)


# --- the Python client -------------------------------------------------------------------------


async def test_the_python_client_reports_inbox_frames_and_welcome_counts(
    nats_server: EmbeddedNats, js: JetStreamContext, nc: NATS, token: Mint, tmp_path: Path
) -> None:
    events: list[Any] = []
    async with inbox_api(nc) as api, one_gateway(nats_server, tmp_path) as gw:
        api.answers[("acme", "alice")] = {"counts": counts(2), "muted": []}
        options = SubscriberOptions(on_event=events.append)
        async with await connect(gw.ws_url, token=token(), options=options) as sub:
            assert sub.welcome is not None
            assert sub.welcome.inbox == counts(2)
            change = {"counts": counts(1), "ids": ["n-1"], "set": {"read": True}}
            await changed(nc, "acme", "alice", change)
            await until(
                lambda: any(isinstance(e, InboxChanged) for e in events), what="InboxChanged"
            )
            (got,) = [e.frame for e in events if isinstance(e, InboxChanged)]
            assert got == InboxFrame(counts=counts(1), ids=("n-1",), set={"read": True})
