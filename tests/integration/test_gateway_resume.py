"""Gap-free resume (docs/protocol.md §10), checked frame by frame with a raw client.

Two real gateways share one real nats-server. A client that was away resumes on the *other*
gateway and must get exactly what it missed, in order, then live ones, nothing twice — whether
that gateway answers from its in-memory window or has to read JetStream (no interest in the
tenant yet). A resume that cannot be complete (another epoch, beyond the replay bound) must say
so with ``recovered: false`` + ``reset`` and replay nothing. A cold gateway hit by a reconnect
storm of one tenant serves every client exactly with one JetStream read for the tenant.
A gateway whose NATS link is down refuses a resume for later instead of resetting it, and long
replays and bursts come in frames every client must accept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, NamedTuple

import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import read_stream
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tests.support.wsclient import RawClient, ws_url
from tidings.client import Publisher, SubscriberOptions
from tidings.client import connect as sdk_connect
from tidings.client.subscriber_events import Reset
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway
from tidings.gateway.window import SEQ
from tidings.protocol import SUBPROTOCOL
from tidings.settings import Settings

Mint = Callable[..., str]
TENANT = "acme"
ALICE_ROOMS = {"tenant", "user:alice", "role:admin", "room:site-1", "broadcast"}


# --- helpers -----------------------------------------------------------------------------------


@asynccontextmanager
async def gateways(settings: Settings, count: int) -> AsyncIterator[list[Gateway]]:
    """``count`` gateways in this process, each on its own port, sharing the nats-server."""
    async with AsyncExitStack() as stack:
        started: list[Gateway] = []
        for _ in range(count):
            gw = Gateway(settings)
            await gw.start()
            stack.push_async_callback(gw.stop)
            started.append(gw)
        yield started


def with_gateway(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, gateway=settings.gateway.model_copy(update=changes))


def audience_of(i: int) -> tuple[dict[str, Any], str | None]:
    """A repeating mix of audiences; the room alice sees it in, or None when she must not."""
    mix: list[tuple[dict[str, Any], str | None]] = [
        ({}, "tenant"),
        ({"audience": {"user": "alice"}}, "user:alice"),
        ({"audience": {"user": "bob"}}, None),
        ({"audience": {"role": "admin"}}, "role:admin"),
        ({"audience": {"role": "auditor"}}, None),
        ({"audience": {"room": "site-1"}}, "room:site-1"),
        ({"audience": {"room": "site-2"}}, None),
        ({"tenant": "globex"}, None),
    ]
    return mix[i % len(mix)]


class Sent(NamedTuple):
    seq: int
    room: str | None  # the room alice receives it in; None: she must not
    title: str


async def publish_mix(
    pub: Publisher, count: int, *, run: str, broadcast_every: int = 0
) -> list[Sent]:
    """Publish ``count`` notifications of the mix (pipelined, in batches of 100)."""
    bodies: list[dict[str, Any]] = []
    rooms: list[str | None] = []
    for i in range(count):
        if broadcast_every and i % broadcast_every == broadcast_every - 1:
            extra: dict[str, Any] = {"audience": {"broadcast": True}}
            room: str | None = "broadcast"
        else:
            extra, room = audience_of(i)
            extra = {"tenant": TENANT, **extra}
        bodies.append({"event": "incident.created", "title": f"{run}{i}", "message": "m", **extra})
        rooms.append(room)
    out: list[Sent] = []
    for start in range(0, count, 100):
        chunk = bodies[start : start + 100]
        results = await pub.publish_batch(chunk)
        out.extend(
            Sent(r.seq or 0, room, b["title"])
            for r, room, b in zip(results, rooms[start:], chunk, strict=False)
        )
    return out


def for_rooms(published: list[Sent], rooms: set[str]) -> list[int]:
    return [s.seq for s in published if s.room is not None and s.room in rooms]


async def read_until_synced(c: RawClient, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every object after ``welcome`` up to and including ``synced``, in arrival order."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not got or got[-1]["type"] != "synced":
            got.append(await c.next(timeout=timeout))
    return got


async def resumes(gw: Gateway, outcome: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.metrics_port}", timeout=5) as http:
        text = (await http.get("/metrics")).text
    return metric(text, "tidings_gateway_resumes_total", outcome=outcome)


async def live_check(c: RawClient, pub: Publisher, *, run: str) -> None:
    """After syncing, live notifications arrive in order and nothing else comes."""
    published = await publish_mix(pub, 16, run=run)
    want = for_rooms(published, ALICE_ROOMS)
    got = await c.notifications(len(want))
    assert [g["seq"] for g in got] == want
    assert [o for o in await c.quiet(0.3) if o["type"] == "notification"] == []


def alice(token: Mint) -> str:
    return token(tenant=TENANT, user="alice", roles=["admin"], rooms=["site-*"])


# --- resume on the other gateway ---------------------------------------------------------------


@pytest.mark.parametrize("served_from", ["memory", "jetstream"])
async def test_resume_on_the_other_gateway_gets_exactly_what_was_missed(
    js: JetStreamContext, gateway_settings: Settings, token: Mint, served_from: str
) -> None:
    pub = Publisher(js, allow_broadcast=True)
    async with gateways(gateway_settings, 2) as (gw_a, gw_b), AsyncExitStack() as stack:
        if served_from == "memory":
            # Another client of the tenant keeps gateway B subscribed: its window holds the gap.
            watcher = await stack.enter_async_context(RawClient(ws_url(gw_b)))
            stack.push_async_callback(watcher.quiet, 0.05)  # read what it got, then close
            await watcher.hello(token(tenant=TENANT, user="carol"))
        async with RawClient(ws_url(gw_a)) as c:
            welcome = await c.hello(alice(token), rooms=["room:site-1"])
            assert welcome["recovered"] is False
            assert (await c.next())["type"] == "synced"
            before = await publish_mix(pub, 24, run="before", broadcast_every=7)
            want = for_rooms(before, ALICE_ROOMS)
            got = await c.notifications(len(want))
            assert [g["seq"] for g in got] == want
            last, epoch = got[-1]["seq"], welcome["epoch"]

        missed = await publish_mix(pub, 500, run="away", broadcast_every=9)
        want = for_rooms(missed, ALICE_ROOMS)
        assert len(want) > 250

        async with RawClient(ws_url(gw_b)) as c:
            welcome = await c.hello(alice(token), since=last, epoch=epoch, rooms=["room:site-1"])
            assert welcome["recovered"] is True
            assert welcome["epoch"] == epoch == gw_b.epoch
            objs = await read_until_synced(c)
            notes = [o for o in objs if o["type"] == "notification"]
            assert [o["type"] for o in objs[:-1]] == ["notification"] * len(notes), "no reset"
            assert [n["seq"] for n in notes] == want
            titles = {s.seq: (s.title, s.room) for s in missed}
            assert [(n["title"], n["room"]) for n in notes] == [titles[s] for s in want]
            assert objs[-1]["seq"] >= want[-1]
            await live_check(c, pub, run="after")

        assert await resumes(gw_b, served_from) == 1
        assert await resumes(gw_b, "not_recovered") == 0


async def test_resume_while_publishing_continues_has_no_gap_and_no_duplicate(
    js: JetStreamContext, gateway_settings: Settings, token: Mint
) -> None:
    """Notifications stored while the replay runs are held back, then sent once, in order."""
    pub = Publisher(js, allow_broadcast=True)
    async with gateways(gateway_settings, 1) as (gw,):
        since = (await publish_mix(pub, 8, run="seed"))[-1].seq
        await publish_mix(pub, 400, run="gap")
        publishing = asyncio.ensure_future(publish_mix(pub, 300, run="during"))
        try:
            async with RawClient(ws_url(gw)) as c:
                await asyncio.sleep(0.05)  # some of them land before the hello
                welcome = await c.hello(
                    alice(token), since=since, epoch=gw.epoch, rooms=["room:site-1"]
                )
                assert welcome["recovered"] is True
                objs = await read_until_synced(c)
                assert all(o["type"] == "notification" for o in objs[:-1])
                got = [o["seq"] for o in objs[:-1]]
                await asyncio.wait_for(publishing, 30)
                want = [s for s, room in await alice_view(js, since) if room in ALICE_ROOMS]
                if len(got) < len(want):  # the rest arrives live, after synced
                    got += [n["seq"] for n in await c.notifications(len(want) - len(got))]
                assert got == want
                assert [o for o in await c.quiet(0.3) if o["type"] == "notification"] == []
        finally:
            publishing.cancel()


async def alice_view(js: JetStreamContext, since: int) -> list[tuple[int, str]]:
    """(seq, room) of every stored notification after ``since`` of alice's tenant or broadcast."""
    stored = await read_stream(js, start=since + 1)
    return [(s.seq, s.room) for s in stored if s.tenant in (TENANT, None)]


@pytest.mark.parametrize("batch_window", [0.002, 0.0], ids=["batched", "unbatched"])
async def test_live_order_holds_across_the_tenant_and_broadcast_subscriptions(
    js: JetStreamContext, gateway_settings: Settings, token: Mint, batch_window: float
) -> None:
    """Broadcasts and a tenant's notifications reach the gateway on two NATS subscriptions; a
    connection must still get them in stream order (a client drops what goes backwards)."""
    pub = Publisher(js, allow_broadcast=True)
    settings = with_gateway(gateway_settings, batch_window=batch_window)
    async with gateways(settings, 1) as (gw,), RawClient(ws_url(gw)) as c:
        await c.hello(alice(token), rooms=["room:site-1"])
        await read_until_synced(c)
        want = for_rooms(await publish_mix(pub, 300, run="o", broadcast_every=5), ALICE_ROOMS)
        assert [n["seq"] for n in await c.notifications(len(want))] == want


# --- resumes that cannot be complete -----------------------------------------------------------


async def test_a_wrong_epoch_gets_a_reset_and_no_replay(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    pub = Publisher(js, allow_broadcast=True)
    await publish_mix(pub, 40, run="old")
    async with RawClient(ws_url(gateway)) as c:
        welcome = await c.hello(
            alice(token), since=3, epoch="some-older-stream", rooms=["room:site-1"]
        )
        assert welcome["recovered"] is False
        objs = await read_until_synced(c)
        assert [o["type"] for o in objs] == ["reset", "synced"]
        reset = objs[0]
        assert reset["reason"] == "epoch_changed"
        assert reset["epoch"] == gateway.epoch == welcome["epoch"]
        assert reset["seq"] == welcome["seq"]
        assert objs[1]["seq"] >= reset["seq"]
        await live_check(c, pub, run="live")
    assert await resumes(gateway, "not_recovered") == 1


async def test_a_resume_while_nats_is_down_is_refused_for_later_not_reset(
    gateway: Gateway, js: JetStreamContext, token: Mint, nats_server: EmbeddedNats
) -> None:
    """The gateway cannot know what it missed while its NATS link is down: it must say
    ``unavailable`` (1013, retry) rather than ``reset`` a resume point that is still good."""
    pub = Publisher(js, allow_broadcast=True)
    async with RawClient(ws_url(gateway)) as c:
        await c.hello(alice(token), rooms=["room:site-1"])
        await read_until_synced(c)
        published = await publish_mix(pub, 8, run="x")
        want = for_rooms(published, ALICE_ROOMS)
        got = await c.notifications(len(want))
        since = got[-3]["seq"]  # it processed all but the last two
    await asyncio.to_thread(nats_server.stop)
    try:
        await until(lambda: not gateway.registry.nats_connected, what="the gateway sees NATS gone")
        async with RawClient(ws_url(gateway)) as c:
            await c.send(
                {"type": "hello", "token": alice(token), "since": since, "epoch": gateway.epoch}
            )
            error = await c.next()
            assert (error["type"], error["code"], error["close"]) == ("error", "unavailable", 1013)
            assert await c.closed() == (1013, "unavailable")
    finally:
        await asyncio.to_thread(nats_server.start)
    await until(lambda: gateway.registry.nats_connected, what="the gateway reconnects", timeout=15)
    async with RawClient(ws_url(gateway)) as c:
        welcome = await c.hello(
            alice(token), since=since, epoch=gateway.epoch, rooms=["room:site-1"]
        )
        assert welcome["recovered"] is True
        objs = await read_until_synced(c)
        assert [o["seq"] for o in objs[:-1]] == [s for s in want if s > since]


BOUND = 50


@pytest.mark.parametrize("warm", [True, False], ids=["window", "jetstream"])
async def test_beyond_the_replay_bound_is_a_reset_within_it_is_exact(
    js: JetStreamContext, gateway_settings: Settings, token: Mint, warm: bool
) -> None:
    """TIDINGS_GATEWAY_REPLAY_MAX_MESSAGES=50: 50 missed notifications of the tenant replay
    exactly; 51 do not, and then nothing at all is replayed (never a partial replay)."""
    pub = Publisher(js, allow_broadcast=True)
    settings = with_gateway(gateway_settings, replay_max_messages=BOUND)
    async with gateways(settings, 2) as (gw_a, gw_b), AsyncExitStack() as stack:
        target = gw_a if warm else gw_b
        watcher = await stack.enter_async_context(RawClient(ws_url(gw_a)))
        stack.push_async_callback(watcher.quiet, 0.05)  # read what it got, then close
        await watcher.hello(token(tenant=TENANT, user="carol"))  # gw_a: warm, window of 50

        before = (await publish_mix(pub, 1, run="seed"))[0].seq  # tenant-wide
        # BOUND + 1 notifications of the tenant, plus other tenants' (which do not count)
        published: list[tuple[int, str | None]] = []
        while sum(1 for _, room in published if room != "other") < BOUND + 1:
            body_i = len(published)
            extra, room = audience_of(body_i)
            other = extra.get("tenant") == "globex"
            body = {"tenant": TENANT, "event": "incident.created", "title": f"g{body_i}"}
            body |= {"message": "m", **extra}
            result = await pub.publish(body)
            published.append((result.seq or 0, "other" if other else room))
        tenant_seqs = [s for s, room in published if room != "other"]

        # since = the first missed one: exactly BOUND to replay -> complete
        since_ok = tenant_seqs[0]
        want = [s for s, room in published if s > since_ok and room in ALICE_ROOMS]
        async with RawClient(ws_url(target)) as c:
            welcome = await c.hello(
                alice(token), since=since_ok, epoch=target.epoch, rooms=["room:site-1"]
            )
            assert welcome["recovered"] is True
            objs = await read_until_synced(c)
            assert [o["seq"] for o in objs if o["type"] == "notification"] == want
            assert [o["type"] for o in objs[:-1]] == ["notification"] * len(want)

        # since = before all of them: BOUND + 1 to replay -> reset, nothing replayed
        for gw in (target, gw_b if warm else gw_a):
            async with RawClient(ws_url(gw)) as c:
                welcome = await c.hello(
                    alice(token), since=before, epoch=gw.epoch, rooms=["room:site-1"]
                )
                assert welcome["recovered"] is False
                objs = await read_until_synced(c)
                assert [o["type"] for o in objs] == ["reset", "synced"], objs[:3]
                assert objs[0]["reason"] == "out_of_range"
                assert objs[0]["epoch"] == gw.epoch
                assert objs[0]["seq"] >= tenant_seqs[-1]
                assert objs[1]["seq"] >= objs[0]["seq"]
                await live_check(c, pub, run=f"after-{gw.port}")


MAX_SAFE = 2**53 - 1  # the largest seq a JavaScript client can hold exactly


@pytest.mark.parametrize("warm", [True, False], ids=["window", "jetstream"])
async def test_a_point_past_the_stream_end_is_a_reset_the_last_seq_itself_resumes(
    js: JetStreamContext, gateway_settings: Settings, token: Mint, warm: bool
) -> None:
    """Issue 14 item 4: ``since`` beyond the last stored seq (last + 1, 2^53 - 1) was answered
    ``recovered: true`` and the client kept a point the stream never reached, skipping what
    came next. It is a ``reset`` (``out_of_range``) to the real position; ``since = last`` (the
    boundary) is a normal, empty resume."""
    pub = Publisher(js, allow_broadcast=True)
    async with gateways(gateway_settings, 1) as (gw,), AsyncExitStack() as stack:
        if warm:  # another client keeps the tenant subscribed: the window answers
            watcher = await stack.enter_async_context(RawClient(ws_url(gw)))
            stack.push_async_callback(watcher.quiet, 0.05)
            await watcher.hello(token(tenant=TENANT, user="carol"))
        last = (await publish_mix(pub, 8, run="seed"))[-1].seq
        async with RawClient(ws_url(gw)) as c:
            welcome = await c.hello(alice(token), since=last, epoch=gw.epoch, rooms=["room:site-1"])
            assert welcome["recovered"] is True
            assert [o["type"] for o in await read_until_synced(c)] == ["synced"]
        for since in (last + 1, MAX_SAFE):
            last = (await js.stream_info(gateway_settings.stream.name)).state.last_seq
            async with RawClient(ws_url(gw)) as c:
                welcome = await c.hello(
                    alice(token), since=since, epoch=gw.epoch, rooms=["room:site-1"]
                )
                assert welcome["recovered"] is False, since
                objs = await read_until_synced(c)
                assert [o["type"] for o in objs] == ["reset", "synced"], since
                assert objs[0]["reason"] == "out_of_range"
                assert objs[0]["seq"] == last == welcome["seq"]
                assert objs[1]["seq"] == last
                await live_check(c, pub, run=f"after-{since}")
        assert await resumes(gw, "not_recovered") == 2


async def test_the_sdk_replaces_a_point_past_the_stream_end_and_misses_nothing(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    """The Python client given a bogus stored point (2^53 - 1) takes the reset's seq as its
    position and yields what is published next (it skipped all of it before)."""
    pub = Publisher(js, allow_broadcast=True)
    last = (await publish_mix(pub, 4, run="seed"))[-1].seq
    options = SubscriberOptions(since=MAX_SAFE, epoch=gateway.epoch)
    async with await sdk_connect(ws_url(gateway), token=alice(token), options=options) as sub:
        events = sub.events()
        while not isinstance(event := await anext(events), Reset):
            pass
        assert (event.reason, event.seq) == ("out_of_range", last)
        await until(lambda: sub.position == (last, gateway.epoch), what="the new position")
        sent = await publish_mix(pub, 8, run="next")
        want = for_rooms(sent, ALICE_ROOMS - {"room:site-1"})  # no named room joined
        got: list[int] = []
        async with asyncio.timeout(10):
            async for n in sub:
                got.append(n.seq)
                if len(got) == len(want):
                    break
        assert got == want
        assert sub.position == (want[-1], gateway.epoch)


# --- frame sizes --------------------------------------------------------------------------------

CLIENT_MIN_FRAME = 4 << 20  # docs/protocol.md §11: every client accepts frames this large


async def big_burst(pub: Publisher, count: int, *, run: str) -> list[int]:
    """``count`` tenant-wide notifications of ~16 KB each, pipelined; their seqs."""
    seqs: list[int] = []
    for start in range(0, count, 50):
        bodies = [
            {
                "tenant": TENANT,
                "event": "incident.created",
                "title": f"{run}{i}",
                "message": "m",
                "data": {"blob": "x" * 16_000},
            }
            for i in range(start, min(count, start + 50))
        ]
        seqs.extend(r.seq or 0 for r in await pub.publish_batch(bodies))
    return seqs


async def test_long_replays_and_bursts_come_in_frames_every_client_accepts(
    js: JetStreamContext, gateway_settings: Settings, token: Mint
) -> None:
    """6 MB missed, then 6 MB within one (long) batching window: a client that accepts only
    the documented minimum frame size gets all of it, exactly."""
    pub = Publisher(js, allow_broadcast=True)
    # A long window gathers the burst into one run; room to buffer it, so it is no slow consumer.
    settings = with_gateway(gateway_settings, batch_window=0.5, max_outbound_bytes=16 << 20)
    async with gateways(settings, 1) as (gw,):
        since = (await publish_mix(pub, 1, run="seed"))[0].seq
        missed = await big_burst(pub, 400, run="missed")
        ws = await connect(
            ws_url(gw), subprotocols=[Subprotocol(SUBPROTOCOL)], max_size=CLIENT_MIN_FRAME
        )
        try:
            hello = {"type": "hello", "token": alice(token), "since": since, "epoch": gw.epoch}
            await ws.send(orjson.dumps(hello).decode())
            objs: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                while not objs or objs[-1]["type"] != "synced":
                    objs.extend(orjson.loads(x) for x in (await ws.recv(decode=False)).split(b"\n"))
                assert objs[0]["recovered"] is True
                assert [o["seq"] for o in objs[1:-1]] == missed
                live = await big_burst(pub, 400, run="live")
                got: list[int] = []
                while len(got) < len(live):
                    frame = await ws.recv(decode=False)
                    got.extend(orjson.loads(x)["seq"] for x in frame.split(b"\n"))
                assert got == live
        finally:
            await ws.close()


# --- a reconnect storm on a cold gateway -------------------------------------------------------

STORM = 100


async def test_a_reconnect_storm_on_a_cold_gateway_is_exact_with_a_shared_backfill(
    js: JetStreamContext, nc: NATS, gateway_settings: Settings, token: Mint
) -> None:
    pub = Publisher(js, allow_broadcast=True)
    rng = random.Random(7)
    published = await publish_mix(pub, 400, run="storm", broadcast_every=11)
    stored = dict(await alice_view(js, 0))
    # Every JetStream request the gateway makes, seen from outside: how many reads it took.
    url = nc.connected_url
    assert url is not None
    reads = await JetStreamReads().start([f"nats://{url.netloc}"])

    users = ["alice", "bob", *(f"u{i}" for i in range(8))]
    async with gateways(gateway_settings, 1) as (gw,):
        assert gw.live is not None
        assert TENANT not in gw.live.windows  # cold: no interest in the tenant yet
        candidates = [s.seq for s in published[:-1]]
        plans = []
        for i in range(STORM):
            user = users[i % len(users)]
            rooms = {"tenant", f"user:{user}", "role:admin", "broadcast"}
            named = ["room:site-1"] if i % 2 else []
            rooms |= set(named)
            plans.append((user, rng.choice(candidates), named, rooms))

        async def one(user: str, since: int, named: list[str], rooms: set[str]) -> str | None:
            async with RawClient(ws_url(gw)) as c:
                tok = token(tenant=TENANT, user=user, roles=["admin"], rooms=["site-*"])
                welcome = await c.hello(tok, since=since, epoch=gw.epoch, rooms=named)
                objs = await read_until_synced(c, timeout=60)
                got = [o["seq"] for o in objs if o["type"] == "notification"]
                want = [s for s, room in sorted(stored.items()) if s > since and room in rooms]
                if welcome["recovered"] is not True or got != want or len(got) != len(objs) - 1:
                    return f"{user} since {since}: recovered={welcome['recovered']} {got[:5]}"
                return None

        async with asyncio.timeout(90):
            failures = await asyncio.gather(*(one(*plan) for plan in plans))
        assert [f for f in failures if f] == []
        assert await resumes(gw, "not_recovered") == 0
        assert await resumes(gw, "memory") + await resumes(gw, "jetstream") == STORM
    assert reads.nc is not None
    await reads.nc.flush()
    await reads.close()
    # Shared: one read for the tenant and one for the broadcast room, whatever the points and
    # the order the 100 clients came in (the first reads the window's whole reach), and no
    # consumer created (direct gets; 5 consumers before, 8 before reads were merged).
    assert reads.consumers_created == 0, reads.calls
    assert dict(reads.backfills) == {
        (requester, tenant): 1 for requester, tenant in reads.backfills
    }, reads.backfills
    assert sorted(t for _, t in reads.backfills) == sorted(["broadcast", TENANT]), reads.backfills


@pytest.mark.timeout(30)  # the bug this guards against never yields: only a timeout ends it
async def test_a_resume_meeting_a_backfill_that_just_finished_reads_again_instead_of_spinning(
    nc: NATS, js: JetStreamContext
) -> None:
    """Found in a 10,000-client storm: a hello handled after a tenant's read finished but before
    its clean-up callback ran awaited the finished task (which returns without yielding) and
    looped on it forever, freezing the gateway (its accept queue full, nothing served)."""
    from tidings.gateway.fanout import Hub
    from tidings.gateway.live import Live

    hub = Hub(window=0.0, on_slow=lambda _: None)
    live = Live(
        nc, js, hub, stream="TIDINGS", window_count=100, window_age=600.0, replay_max=100,
        replay_concurrency=2, linger=1.0, timeout=2.0,
    )  # fmt: skip
    pub = Publisher(js)
    for i in range(5):
        await pub.publish(
            {"tenant": TENANT, "event": "incident.created", "title": f"t{i}", "message": "m"}
        )
    window = await live.ensure(TENANT)  # armed after the five: complete from seq 6
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finished.set_result(None)  # a read that ended, its clean-up not run yet
    live._backfills[TENANT] = finished  # type: ignore[assignment]
    assert await live.cover(TENANT, 0)  # read again, from seq 1
    assert [e[SEQ] for e in window.entries] == [1, 2, 3, 4, 5]
