"""Per-user connection limit across gateways (TIDINGS_GATEWAY_USER_CONNECTIONS).

Three gateway processes on a real nats-server, configured only through ``TIDINGS_*`` variables.
One user's connections spread over the gateways are refused beyond the limit on every gateway
(``user_connections_full``, close 4029: the client backs off), other users are not affected, a
closed connection frees its slot within the sharing window, and a gateway that dies (SIGKILL: no
``bye``) stops counting once its share expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tests.support.wsclient import RawClient
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway
from tidings.gateway.user_limit import EXPIRE, TICK

Mint = Callable[..., str]
LIMIT = 3
ENV = {"TIDINGS_GATEWAY_USER_CONNECTIONS": str(LIMIT)}
# How long a change may take to count on another gateway: one tick, NATS, and a loaded machine.
WINDOW = 1.0
assert TICK < WINDOW


async def connect(gw: GatewayProcess, token: str) -> RawClient | None:
    """A connection that was welcomed, or None after checking the precise refusal."""
    client = RawClient(gw.ws_url)
    await client.__aenter__()
    await client.send({"type": "hello", "token": token})
    first = await client.next()
    if first["type"] == "welcome":
        await client.next("synced")
        return client
    assert (first["type"], first["code"], first["close"]) == (
        "error",
        "user_connections_full",
        4029,
    ), first
    assert await client.closed() == (4029, "user_connections_full")
    return None


async def refused_within(gw: GatewayProcess, token: str, seconds: float) -> float:
    """Seconds until a hello on ``gw`` is refused; a welcome meanwhile is closed again."""
    began = time.monotonic()
    while True:
        client = await connect(gw, token)
        if client is None:
            return time.monotonic() - began
        await client.__aexit__(None, None, None)
        assert time.monotonic() - began < seconds, f"{gw.ws_url} still admits beyond the limit"
        await asyncio.sleep(0.02)


async def admitted_within(gw: GatewayProcess, token: str, seconds: float) -> RawClient:
    began = time.monotonic()
    while True:
        client = await connect(gw, token)
        if client is not None:
            return client
        assert time.monotonic() - began < seconds, f"{gw.ws_url} never freed a slot"
        await asyncio.sleep(0.02)


async def test_one_users_connections_are_limited_over_every_gateway(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Mint, tmp_path: Path
) -> None:
    alice = token(tenant="acme", user="alice")
    held: list[RawClient] = []
    async with gateway_processes(3, nats_server.url, tmp_path, env=ENV) as (gw1, gw2, gw3):
        try:
            # Up to the limit, one connection on each gateway: every one admitted.
            for gw in (gw1, gw2, gw3):
                client = await connect(gw, alice)
                assert client is not None, f"{gw.ws_url} refused alice below the limit"
                held.append(client)
            # Beyond it: refused on every gateway, although each holds only one of hers.
            for gw in (gw1, gw2, gw3):
                await refused_within(gw, alice, WINDOW)

            # Other users, of this tenant and another, are not affected.
            others = ((gw1, "acme", "bob"), (gw2, "acme", "bob"), (gw3, "x", "alice"))
            for gw, tenant, user in others:
                client = await connect(gw, token(tenant=tenant, user=user))
                assert client is not None, f"{tenant}/{user} refused on {gw.ws_url}"
                held.append(client)

            # Closing one of hers (on gw2) frees a slot on another gateway within the window.
            on_gw2 = held.pop(1)
            await on_gw2.__aexit__(None, None, None)
            began = time.monotonic()
            held.append(await admitted_within(gw1, alice, WINDOW))
            print(f"a slot freed on gw2 was taken on gw1 after {time.monotonic() - began:.2f}s")
            await refused_within(gw3, alice, WINDOW)

            # gw1 dies without a word (two of alice's connections there): once its share
            # expires, gw2 and gw3 admit her again, up to the limit and no further.
            await gw1.kill()
            killed = time.monotonic()
            # Right after: gw1's share still counts (its last message is under EXPIRE old).
            assert await connect(gw2, alice) is None
            held.append(await admitted_within(gw2, alice, EXPIRE + 2 * WINDOW))
            print(f"gw1's share expired {time.monotonic() - killed:.2f}s after SIGKILL")
            held.append(await admitted_within(gw3, alice, WINDOW))
            await refused_within(gw2, alice, WINDOW)
        finally:
            for client in held:
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)


@pytest.mark.settings(gateway={"user_connections": 2})
async def test_on_one_gateway_the_limit_is_exact_for_concurrent_hellos(
    gateway: Gateway, token: Mint
) -> None:
    """Hellos of one user racing on one gateway: the check and the count happen with no await
    between them, so exactly ``limit`` are welcomed, however they interleave."""
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    clients = [RawClient(url) for _ in range(6)]
    try:
        for client in clients:
            await client.__aenter__()
        alice = token(tenant="acme", user="alice")
        await asyncio.gather(*(c.send({"type": "hello", "token": alice}) for c in clients))
        firsts = await asyncio.gather(*(c.next() for c in clients))
        kinds = sorted(f["type"] if f["type"] == "welcome" else f["code"] for f in firsts)
        assert kinds == ["user_connections_full"] * 4 + ["welcome"] * 2
        assert gateway.registry.presence.user("acme", "alice") == 2
        refused = gateway.metrics.connects_refused.labels("user")._value.get()
        assert refused == 4
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
