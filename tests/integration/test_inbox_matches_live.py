"""The inbox lists exactly what the gateway delivers live: one table of cases
(tests/support/visibility_cases.py) published for real, received by WebSocket clients of a
real gateway, stored by the real writer, and read back with each client's claims."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from tests.support.inbox import count, inbox_settings, publish_requests, request, running
from tests.support.visibility_cases import CASES
from tests.support.waiting import until
from tests.support.wsclient import RawClient, ws_url
from tidings.auth.claims import Claims
from tidings.gateway.service import Gateway
from tidings.inbox.visibility import allows
from tidings.settings import NatsSettings
from tidings.subjects import AudienceKind


def _body(i: int, tenant: str, kind: AudienceKind, name: str) -> Any:
    audience = None if kind is AudienceKind.TENANT else {kind.value: name or True}
    return request(i, tenant=tenant or "acme", audience=audience)


async def test_the_inbox_lists_exactly_what_the_gateway_delivers(
    gateway: Gateway,
    js: JetStreamContext,
    nats_settings: NatsSettings,
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    holders = list(dict.fromkeys(case.claims for case in CASES))
    rooms = sorted({c.audience.name for c in CASES if c.audience.kind is AudienceKind.ROOM})
    clients = [RawClient(ws_url(gateway)) for _ in holders]
    async with running(inbox_settings(nats_settings, url)) as inbox:
        for claims, client in zip(holders, clients, strict=True):
            await client.__aenter__()
            minted = token(
                claims.tenant,
                claims.user,
                roles=sorted(claims.roles),
                rooms=list(claims.room_patterns),
            )
            await client.hello(minted)
            for i, room in enumerate(rooms):  # join every room the token allows
                await client.send({"type": "subscribe", "room": f"room:{room}", "id": i})
                answer = await client.next()
                while answer["type"] == "synced":  # the end of the hello's (empty) replay
                    answer = await client.next()
                want = "subscribed" if claims.may_join(room) else "error"
                assert answer["type"] == want, (claims, room, answer)
        try:
            published = [(c.tenant, c.audience) for c in CASES]
            ids = await publish_requests(
                js,
                [_body(i, t, a.kind, a.name) for i, (t, a) in enumerate(published)],
            )
            received: dict[Claims, set[str]] = {}
            for claims, client in zip(holders, clients, strict=True):
                expected = sum(allows(claims, t, a) for t, a in published)
                got = await client.notifications(expected)
                assert await client.quiet(0.3) == []  # and nothing else
                received[claims] = {n["id"] for n in got}

            async def stored() -> bool:
                return await count(url) == len(CASES)

            await until(stored, timeout=20, what="every case stored")
            for claims in holders:
                assert set(await inbox.store.visible_ids(claims)) == received[claims], claims
            wrong = [
                case.name
                for case, ident in zip(CASES, ids, strict=True)
                if (ident in received[case.claims]) != case.delivered
            ]
            assert wrong == []
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)
