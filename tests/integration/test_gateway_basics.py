"""A first walk through the gateway: hello, welcome, live notifications, resume."""

from __future__ import annotations

from collections.abc import Callable

from nats.js import JetStreamContext

from tests.support.wsclient import RawClient, ws_url
from tidings.client import Publisher
from tidings.gateway.service import Gateway


async def test_hello_then_live_then_resume(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    pub = Publisher(js)
    async with RawClient(ws_url(gateway)) as c:
        welcome = await c.hello(token(roles=["admin"]))
        assert welcome["tenant"] == "acme"
        assert welcome["user"] == "alice"
        assert welcome["epoch"] == gateway.epoch
        assert welcome["recovered"] is False
        assert await c.next("synced")
        for i in range(3):
            await pub.to_tenant("acme", "incident.created", title=f"t{i}", message="m")
        got = await c.notifications(3)
        assert [g["title"] for g in got] == ["t0", "t1", "t2"]
        last = got[-1]["seq"]
    for i in range(4):
        await pub.to_tenant("acme", "incident.created", title=f"missed{i}", message="m")
    async with RawClient(ws_url(gateway)) as c:
        welcome = await c.hello(token(), since=last, epoch=gateway.epoch)
        assert welcome["recovered"] is True
        missed = await c.notifications(4)
        assert [m["title"] for m in missed] == [f"missed{i}" for i in range(4)]
        assert [m["seq"] for m in missed] == list(range(last + 1, last + 5))
        synced = await c.next("synced")
        assert synced["seq"] == missed[-1]["seq"]
