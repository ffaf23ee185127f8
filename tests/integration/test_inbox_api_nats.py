"""The inbox API's NATS side against a real nats-server: ``session`` answered for a gateway's
claims (counts and muted domains, or an error body), ``changed`` published after each write
with what changed, and the subscription back after nats-server restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from tests.support.inbox_api import Seeder, bearer, inbox_api
from tests.support.waiting import at_server, until
from tidings.dev.embedded import EmbeddedNats
from tidings.inbox.announce import SESSION_SUBJECT
from tidings.settings import NatsSettings
from tidings.subjects import Audience, AudienceKind

ALICE = bearer(roles=["ops"])


async def ask(nc: NATS, body: Any) -> dict[str, Any]:
    reply = await nc.request(SESSION_SUBJECT, orjson.dumps(body), timeout=5)
    answer: dict[str, Any] = orjson.loads(reply.data)
    return answer


async def test_session_and_changed(
    database_url: str, nats_settings: NatsSettings, nc: NATS
) -> None:
    async with inbox_api(database_url, nats_settings) as (client, process):
        await until(lambda: process.responder.armed, what="the session responder", timeout=10)
        seed = Seeder(process.store)
        tenant_wide = await seed.add(severity="warning")
        await seed.add(audience=Audience(AudienceKind.ROLE, "ops"), event="billing.invoice")
        await seed.add(audience=Audience(AudienceKind.ROLE, "sales"))
        claims = {"tenant": "acme", "user": "alice", "roles": ["ops"], "rooms": []}
        answer = await ask(nc, claims)
        assert answer["muted"] == []
        assert answer["counts"]["total"] == 2 and answer["counts"]["unread"] == 2
        assert answer["counts"]["unread_by_severity"]["warning"] == 1

        changes: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        async def collect(msg: Any) -> None:
            changes.put_nowait((msg.subject, orjson.loads(msg.data)))

        await nc.subscribe("tidings.inbox.changed.acme.>", cb=collect)
        await at_server(nc)
        marked = await client.post(
            "/v1/inbox/state", json={"ids": [tenant_wide], "read": True}, headers=ALICE
        )
        assert marked.status_code == 200
        subject, body = await asyncio.wait_for(changes.get(), 5)
        assert subject == "tidings.inbox.changed.acme.alice"
        expected = {"counts": marked.json()["counts"], "ids": [tenant_wide], "set": {"read": True}}
        assert body == expected

        await client.post("/v1/inbox/mark-all", json={"seen": True}, headers=ALICE)
        _, body = await asyncio.wait_for(changes.get(), 5)
        assert (body["ids"], body["set"], body["all"]) == ([], {"seen": True}, True)
        assert body["counts"]["unseen"] == 0

        prefs = {"domains": {"billing": {"in_app": False}}}
        await client.put("/v1/inbox/preferences", json=prefs, headers=ALICE)
        _, body = await asyncio.wait_for(changes.get(), 5)
        assert (body["ids"], body["set"], body["muted"]) == ([], {}, ["billing"])
        assert body["counts"]["total"] == 1
        answer = await ask(nc, claims)
        assert answer["muted"] == ["billing"] and answer["counts"]["total"] == 1

        for bad, code in (
            (b"not json", "malformed"),
            ({"tenant": "acme"}, "invalid_field"),
            ({**claims, "tenant": "a.b"}, "invalid_field"),
            ({**claims, "admin": True}, "invalid_field"),
            ({**claims, "rooms": ["site berlin"]}, "token_claim_invalid"),
        ):
            payload = bad if isinstance(bad, bytes) else orjson.dumps(bad)
            reply = await nc.request(SESSION_SUBJECT, payload, timeout=5)
            assert orjson.loads(reply.data)["error"]["code"] == code, bad
        metrics = (await client.get("/metrics")).text
        assert "tidings_inbox_api_changed_published_total 3.0" in metrics
        assert 'tidings_inbox_api_sessions_total{outcome="answered"} 2.0' in metrics


async def test_session_answers_again_after_nats_restarts(
    tmp_path: Any, nats_server: EmbeddedNats, nats_settings: NatsSettings
) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    async with inbox_api(url, nats_settings) as (client, process):
        await until(lambda: process.responder.armed, what="the session responder", timeout=10)
        nats_server.stop()
        await until(lambda: not process.link.connected, what="the link to notice", timeout=10)
        ident = await Seeder(process.store).add()
        marked = await client.post(
            "/v1/inbox/state", json={"ids": [ident], "read": True}, headers=ALICE
        )
        assert marked.status_code == 200  # HTTP goes on while NATS is down
        nats_server.start()
        await until(lambda: process.responder.armed, what="the responder again", timeout=15)
        nc = NATS()
        await nc.connect(nats_server.url)
        try:
            claims = {"tenant": "acme", "user": "alice", "roles": [], "rooms": []}
            answer = await ask(nc, claims)
            assert answer["counts"]["unread"] == 0 and answer["counts"]["total"] == 1
        finally:
            await nc.close()
        metrics = (await client.get("/metrics")).text
        assert "tidings_inbox_api_changed_dropped_total 1.0" in metrics
