"""The relay on its own (no HTTP): direct while NATS takes messages, through the outbox while
it does not, drained in order once the link is back, and never a second copy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from tests.support.waiting import until as wait_until
from tidings.dev.embedded import EmbeddedNats
from tidings.lifecycle import Supervisor
from tidings.nats_link import NatsLink
from tidings.publisher.metrics import PublisherMetrics
from tidings.publisher.outbox import Outbox
from tidings.publisher.relay import Relay
from tidings.publishing import OutgoingMessage
from tidings.settings import NatsSettings, StreamSettings


def msg(n: int) -> OutgoingMessage:
    ident = f"relay-{n:04d}"
    return OutgoingMessage(
        ident, f"tenant.acme.incident.created.{n}", f"n={n}".encode(), {"Nats-Msg-Id": ident}
    )


@pytest.fixture
async def relay(
    js: JetStreamContext, nats_settings: NatsSettings, tmp_path: Path
) -> AsyncIterator[Relay]:
    outbox = await Outbox(
        tmp_path / "outbox", max_messages=1000, max_bytes=1 << 20, retry_after=1
    ).open()
    link = NatsLink(nats_settings)
    relay = Relay(
        link,
        outbox,
        stream=StreamSettings().name,
        timeout=2.0,
        metrics=PublisherMetrics(),
        idle_poll=5.0,  # only the link's wake-up can make a drain start soon
    )
    supervisor = Supervisor()
    supervisor.start(link)
    supervisor.start(relay)
    await asyncio.wait_for(link.wait_connected(), 10)
    try:
        yield relay
    finally:
        await supervisor.stop()
        assert supervisor.failure is None
        await outbox.close()


async def stored(js: JetStreamContext) -> list[bytes]:
    info = await js.stream_info(StreamSettings().name)
    return [
        (await js.get_msg(StreamSettings().name, seq)).data or b""
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def test_connected_it_publishes_directly(relay: Relay, js: JetStreamContext) -> None:
    (one,) = await relay.submit([msg(1)])
    assert not one.queued and one.seq is not None
    results = await relay.submit([msg(2), msg(3)])
    assert [r.seq for r in results] == [one.seq + 1, one.seq + 2]
    assert relay.outbox.depth == 0
    assert await stored(js) == [b"n=1", b"n=2", b"n=3"]


async def test_an_outage_goes_through_the_outbox_and_drains_in_order(
    relay: Relay, js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    await relay.submit([msg(0)])
    await asyncio.to_thread(nats_server.stop)
    await wait_until(lambda: not relay.link.connected, timeout=10, what="the link sees NATS gone")
    results = [r for n in range(1, 6) for r in await relay.submit([msg(n)])]
    assert all(r.queued and r.seq is None for r in results)
    assert relay.outbox.depth == 5
    await asyncio.to_thread(nats_server.start)
    # The link's step after the reconnect wakes the drainer (its own poll is 5 s away).
    await wait_until(lambda: relay.outbox.depth == 0, timeout=4, what="the outbox drained")
    again = await relay.submit([msg(6)])  # direct again once the outbox is empty
    assert not again[0].queued
    js = relay.link.js
    assert await stored(js) == [f"n={n}".encode() for n in range(7)]


async def test_while_the_outbox_holds_anything_new_messages_queue_behind_it(
    relay: Relay, nats_server: EmbeddedNats
) -> None:
    await asyncio.to_thread(nats_server.stop)
    await wait_until(lambda: not relay.link.connected, timeout=10, what="the link sees NATS gone")
    await relay.submit([msg(1)])
    await asyncio.to_thread(nats_server.start)
    await asyncio.wait_for(relay.link.wait_connected(), 15)
    # Connected, but the outbox is not empty yet (or just drained): order is kept either way.
    (second,) = await relay.submit([msg(2)])
    await wait_until(lambda: relay.outbox.depth == 0, timeout=5, what="the outbox drained")
    data = await stored(relay.link.js)
    assert data == [b"n=1", b"n=2"], second
