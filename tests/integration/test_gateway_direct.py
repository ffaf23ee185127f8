"""The direct live ingest (gateway/direct.py) against a real nats-server: routed
subscriptions get the raw parts nats-py's parser read, in order; every other subscription and
request of the same client goes nats-py's own way; a reconnect keeps the routes."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client as NATS

from tests.support.waiting import at_server, until
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway import direct

SEQ = b"\r\nNats-Sequence:"


def test_the_installed_nats_py_is_the_one_verified() -> None:
    """An upgrade of nats-py that changes the parser's call or ``_process_msg`` fails here
    (the gateway would fall back to nats-py's queue: correct, but the ingest's cost again)."""
    assert direct.supported()


def test_header_values_read_from_a_raw_block() -> None:
    block = (
        b"NATS/1.0\r\nNats-Stream: TIDINGS\r\nX-Nats-Sequence: 1\r\nNats-Sequence:  42 \r\n"
        b"Nats-Time-Stamp: 2026-12-06T03:00:00.5Z\r\n\r\n"
    )
    assert direct.header_value(block, SEQ) == b"42"
    assert direct.header_value(block, b"\r\nNats-Time-Stamp:") == b"2026-12-06T03:00:00.5Z"
    assert direct.header_value(block, b"\r\nNats-Last-Sequence:") is None
    assert direct.header_value(None, SEQ) is None
    # Repeated (a publisher's own header, then the server's): the last wins, as in nats-py.
    twice = b"NATS/1.0\r\nNats-Sequence: 999\r\nNats-Sequence: 7\r\n\r\n"
    assert direct.header_value(twice, SEQ) == b"7"


async def test_routed_messages_arrive_raw_and_in_order_beside_normal_ones(
    nc: NATS, nats_server: EmbeddedNats
) -> None:
    routes = direct.install(nc)
    assert routes is not None
    assert direct.install(nc) is routes  # one per client
    got: list[tuple[bytes, bytes, bytes | None]] = []
    sub = await nc.subscribe("live.tenant.acme.>")
    routes.route(sub._id, lambda s, d, h: got.append((s, d, h)))
    plain: list[bytes] = []

    async def on_plain(msg: nats.aio.msg.Msg) -> None:
        plain.append(msg.data)

    await nc.subscribe("other.>", cb=on_plain)

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    await nc.subscribe("svc.echo", cb=echo)
    await at_server(nc)

    pub = await nats.connect(nats_server.url)
    try:
        for i in range(200):
            await pub.publish(
                f"live.tenant.acme.user.u{i % 3}.x", b"%d" % i, headers={"Nats-Sequence": str(i)}
            )
        await pub.publish("other.thing", b"plain")
        await pub.publish("live.tenant.acme.y", b"no-headers")
        answer = await pub.request("svc.echo", b"hi", timeout=5)
        assert answer.data == b"pong:hi"
        await pub.flush()
        await until(
            lambda: len(got) == 201 and plain == [b"plain"], what="201 routed, 1 plain", timeout=10
        )
        assert [d for _, d, _ in got[:200]] == [b"%d" % i for i in range(200)]
        assert [int(direct.header_value(h, SEQ) or b"") for _, _, h in got[:200]] == list(
            range(200)
        )
        assert got[0][0] == b"live.tenant.acme.user.u0.x"
        assert got[200] == (b"live.tenant.acme.y", b"no-headers", None)
        assert nc.stats["in_msgs"] >= 202

        # A reconnect (the server restarted on its port) resubscribes with the same ids.
        nats_server.stop()
        nats_server.start()
        await until(
            lambda: (
                nc.stats["reconnects"] == 1 == pub.stats["reconnects"]
                and nc.is_connected
                and pub.is_connected
            ),
            what="reconnected",
            timeout=20,
        )
        await at_server(nc)
        await pub.publish("live.tenant.acme.z", b"after", headers={"Nats-Sequence": "500"})
        await pub.flush()
        await until(lambda: len(got) == 202, what="routed after the reconnect", timeout=10)
        assert got[201][1] == b"after"

        routes.unroute(sub._id)  # unrouted: nats-py's own path (no callback: its queue)
        await pub.publish("live.tenant.acme.z", b"queued")
        await pub.flush()
        msg = await sub.next_msg(timeout=5)
        assert msg.data == b"queued"
        assert len(got) == 202
    finally:
        await pub.close()


async def test_a_taken_over_subscription_hands_back_what_came_early_and_drains_clean(
    nats_server: EmbeddedNats,
) -> None:
    """What arrived between the SUB and the route comes back in order; the routed messages
    follow; nats-py's queue and iterator are gone (one per tenant: the bulk of what a tenant
    costs a gateway), and an unsubscribe and the client's drain still finish."""
    nc = await nats.connect(nats_server.url)
    pub = await nats.connect(nats_server.url)
    try:
        routes = direct.install(nc)
        assert routes is not None
        sub = await nc.subscribe("live.tenant.acme.>")
        await at_server(nc)
        for i in range(3):
            await pub.publish("live.tenant.acme.x", b"early%d" % i)
        await pub.flush()
        await until(lambda: sub.pending_msgs == 3, what="three queued before the route")
        got: list[bytes] = []
        early = routes.take_over(sub, lambda s, d, h: got.append(d))
        assert [m.data for m in early] == [b"early0", b"early1", b"early2"]
        assert not isinstance(sub._pending_queue, asyncio.Queue)
        assert sub._message_iterator is None
        for i in range(3):
            await pub.publish("live.tenant.acme.x", b"late%d" % i)
        await pub.flush()
        await until(lambda: len(got) == 3, what="the routed ones")
        assert got == [b"late0", b"late1", b"late2"]

        other = await nc.subscribe("live.tenant.other.>")
        await at_server(nc)
        assert routes.take_over(other, lambda s, d, h: got.append(d)) == []
        routes.unroute(sub._id)
        await sub.unsubscribe()
        await pub.publish("live.tenant.acme.x", b"after-unsubscribe")
        await pub.publish("live.tenant.other.x", b"other")
        await pub.flush()
        await until(lambda: got[-1:] == [b"other"], what="the other tenant's")
        assert b"after-unsubscribe" not in got
        await asyncio.wait_for(nc.drain(), 10)  # joins every subscription's queue: none waits
        assert nc.is_closed
    finally:
        await pub.close()
        await nc.close()
