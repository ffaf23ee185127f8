"""Stored messages a client must never see (issue 14 item 6), against a real nats-server.

A service that writes to JetStream directly can store an envelope with ``data`` that is not
JSON, an audience kind the gateway does not know, or a tenant / audience that is not its
subject's. Each one is dropped by the gateway, live and when read back for a resume, counted by
reason on ``/metrics``, logged with its subject (never its content); the valid notifications
stored around them are delivered, in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from tests.support.publisher_process import metric
from tests.support.wsclient import RawClient, ws_url
from tidings.envelope import Notification
from tidings.gateway.service import Gateway
from tidings.subjects import Audience, AudienceKind
from tidings.v1 import notification_pb2 as pb

Mint = Callable[..., str]
SECRET_WORD = "do-not-log-me"  # in every bad message's content: must never reach the log


def envelope(title: str, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "id": f"id-{title}",
        "tenant": "acme",
        "event": "incident.created",
        "audience": Audience(),
        "time": datetime.now(UTC),
        "title": title,
        "message": SECRET_WORD,
        "data": b'{"k": 1}',
    }
    fields.update(changes)
    return Notification(**fields).to_bytes()  # type: ignore[arg-type]


def unknown_kind(title: str) -> bytes:
    msg = pb.Notification.FromString(envelope(title))
    msg.audience.kind = pb.Audience.Kind.KIND_UNSPECIFIED
    return msg.SerializeToString()


TENANT_SUBJECT = "tenant.acme.incident.created"
ALICE_SUBJECT = "tenant.acme.user.alice.incident.created"

# (subject, payload, reason): what a careless or hostile direct producer can store.
BAD: list[tuple[str, bytes, str]] = [
    (TENANT_SUBJECT, envelope("bad-json", data=b'{"a":'), "data"),
    (TENANT_SUBJECT, envelope("bad-list", data=b'["' + SECRET_WORD.encode() + b'"]'), "data"),
    (TENANT_SUBJECT, unknown_kind("bad-kind"), "audience"),
    (TENANT_SUBJECT, envelope("bad-tenant", tenant="globex"), "mismatch"),
    (
        ALICE_SUBJECT,
        envelope("bad-audience", audience=Audience(AudienceKind.USER, "bob")),
        "mismatch",
    ),
    (TENANT_SUBJECT, b"\xff\xff" + SECRET_WORD.encode(), "envelope"),
]
REASONS = {"data": 2, "audience": 1, "mismatch": 2, "envelope": 1}


async def store_mixed(js: JetStreamContext, run: str) -> list[str]:
    """A good notification before and after each bad one; the good titles, in order."""
    good: list[str] = []
    for i, (subject, payload, _) in enumerate(BAD):
        title = f"{run}-good-{i}"
        await js.publish(TENANT_SUBJECT, envelope(title))
        good.append(title)
        await js.publish(subject, payload)
    await js.publish(
        ALICE_SUBJECT, envelope(f"{run}-good-end", audience=Audience(AudienceKind.USER, "alice"))
    )
    return [*good, f"{run}-good-end"]


async def dropped(gw: Gateway) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.metrics_port}", timeout=5) as http:
        text = (await http.get("/metrics")).text
    return {
        r: metric(text, "tidings_gateway_dropped_messages_total", reason=r)
        for r in ("subject", "sequence", "envelope", "audience", "mismatch", "data", "other")
    }


async def test_invalid_stored_envelopes_are_dropped_live_and_on_replay(
    gateway: Gateway, js: JetStreamContext, token: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tidings.gateway.ingest")
    async with RawClient(ws_url(gateway)) as c:
        welcome = await c.hello(token(tenant="acme", user="alice"))
        await c.next("synced")
        start = welcome["seq"]
        want = await store_mixed(js, "live")
        got = await c.notifications(len(want))
        assert [n["title"] for n in got] == want
        assert [o for o in await c.quiet(0.3) if o["type"] == "notification"] == []
        assert all(n["data"] == {"k": 1} for n in got)
    live_counts = await dropped(gateway)
    assert {r: n for r, n in live_counts.items() if n} == REASONS

    # The same stream read back for a resume (the tenant's window dropped: a cold read).
    gw2 = Gateway(gateway.settings)
    await gw2.start()
    try:
        async with RawClient(ws_url(gw2)) as c:
            resumed = await c.hello(
                token(tenant="acme", user="alice"), since=start, epoch=gw2.epoch
            )
            assert resumed["recovered"] is True
            objs: list[dict[str, Any]] = []
            while not objs or objs[-1]["type"] != "synced":
                objs.append(await c.next())
            assert [o["title"] for o in objs[:-1]] == want
        assert {r: n for r, n in (await dropped(gw2)).items() if n} == REASONS
    finally:
        await gw2.stop()

    lines = [r for r in caplog.records if r.name == "tidings.gateway.ingest"]
    assert lines, "drops are logged"
    assert {getattr(r, "reason", None) for r in lines} == set(REASONS)
    assert all(
        getattr(r, "subject", "").startswith(("live.tenant.acme", "tenant.acme")) for r in lines
    )
    for r in lines:
        text = r.getMessage() + repr(r.__dict__)
        assert SECRET_WORD not in text
