"""Stream provisioning against a real nats-server: idempotent, reports what it cannot change."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tidings.nats import ensure_stream
from tidings.settings import StreamSettings


async def test_create_then_nothing_changes(nc: NATS) -> None:
    js = nc.jetstream()
    first = await ensure_stream(js, StreamSettings())
    assert first.created
    assert first.epoch
    second = await ensure_stream(js, StreamSettings())
    assert second.unchanged
    assert second.epoch == first.epoch
    info = await js.stream_info("TIDINGS")
    assert sorted(info.config.subjects or []) == ["broadcast.>", "tenant.>"]
    assert info.config.republish is not None
    assert (info.config.republish.src, info.config.republish.dest) == (">", "live.>")
    assert info.config.duplicate_window == 120


async def test_changes_are_applied_and_reported(nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    report = await ensure_stream(js, StreamSettings(max_age=3600, max_bytes=10_000_000))
    assert report.changed == {
        "max_age": (604800.0, 3600.0),
        "max_bytes": (1 << 30, 10_000_000),
    }
    assert not report.conflicts
    info = await js.stream_info("TIDINGS")
    assert info.config.max_age == 3600
    assert info.config.max_bytes == 10_000_000


async def test_storage_cannot_change_in_place(nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    report = await ensure_stream(js, StreamSettings(storage="memory", max_age=600))
    assert report.conflicts == {"storage": ("file", "memory")}
    assert report.changed == {"max_age": (604800.0, 600.0)}  # the rest still converges
    info = await js.stream_info("TIDINGS")
    assert getattr(info.config.storage, "value", info.config.storage) == "file"
    assert info.config.max_age == 600


async def test_stored_messages_are_republished_live_with_sequence(nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    got: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_live(msg: Msg) -> None:
        await got.put(msg)

    await nc.subscribe("live.tenant.acme.>", cb=on_live)
    ack = await js.publish("tenant.acme.incident.created", b"x", headers={"Nats-Msg-Id": "a1"})
    live = await asyncio.wait_for(got.get(), 5)
    assert live.subject == "live.tenant.acme.incident.created"
    assert live.headers is not None
    assert live.headers["Nats-Sequence"] == str(ack.seq)
    assert live.headers["Nats-Time-Stamp"]
