"""Operations: probes, Prometheus metrics after real traffic, and the cluster status API.

What an operator checks: ``/healthz`` answers, ``/readyz`` turns 503 when NATS is gone or the
gateway drains, ``/metrics`` counts what happened (and has no per-tenant label), and
``GET /api/notifications/status`` sums connections over every gateway process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.support.gateway_process import gateway_processes
from tests.support.publisher_process import metric
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import until as wait_until
from tests.support.wsclient import RawClient, ws_url
from tidings.auth import mint_token
from tidings.client import Publisher
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway
from tidings.protocol import SUBPROTOCOL

Mint = Callable[..., str]
MAX_OUTBOUND = 4096
TENANTS = ("acme", "globex")
# A small outbound bound, so that a client that stops reading is closed soon.
pytestmark = pytest.mark.settings(gateway={"max_outbound_bytes": MAX_OUTBOUND})


def http(gw: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=5)


async def scrape(gw: Gateway) -> str:
    """``/metrics`` from the gateway's metrics port (the data port answers 404 there)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.metrics_port}") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def histogram(text: str, name: str) -> tuple[float, float]:
    """(count, sum) of a histogram."""
    return metric(text, f"{name}_count"), metric(text, f"{name}_sum")


async def test_probes_and_metrics_after_traffic(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    pub = Publisher(js)
    url = ws_url(gateway)
    async with http(gateway) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"nats": True, "healed": True, "draining": False, "connections": 0}
        before = await scrape(gateway)
        assert metric(before, "tidings_gateway_connections") == 0
        assert metric(before, "tidings_gateway_nats_connected") == 1

        async with (
            RawClient(url) as alice,
            RawClient(url) as bob,
            RawClient(url) as carol,
            RawClient(url) as gina,
        ):
            for c, tenant, user in (
                (alice, "acme", "alice"),
                (bob, "acme", "bob"),
                (carol, "acme", "carol"),
                (gina, "globex", "gina"),
            ):
                await c.hello(token(tenant=tenant, user=user))
                await c.next("synced")
            for i in range(5):
                await pub.to_tenant("acme", "incident.created", title=f"t{i}", message="m")
            for i in range(2):
                await pub.to_user("acme", "alice", "incident.created", title=f"u{i}", message="m")
            await pub.to_tenant("globex", "incident.created", title="g", message="m")
            assert len(await alice.notifications(7)) == 7
            assert len(await bob.notifications(5)) == 5
            last = (await carol.notifications(5))[-1]["seq"]
            assert len(await gina.notifications(1)) == 1

            # Two refused tokens and two resumes (one from memory, one with a stale epoch).
            for bad in (
                mint_token(JWT_SECRET, tenant="acme", user="x", claims={"exp": 1}),
                "garbage",
            ):
                async with RawClient(url) as refused:
                    await refused.send({"type": "hello", "token": bad})
                    await refused.closed()
            async with RawClient(url) as back:
                welcome = await back.hello(token(user="carol"), since=last - 2, epoch=gateway.epoch)
                assert welcome["recovered"] is True
                assert len(await back.notifications(2)) == 2
            async with RawClient(url) as stale:
                welcome = await stale.hello(token(user="carol"), since=last, epoch="other-epoch")
                assert welcome["recovered"] is False

            async def settled() -> bool:
                return metric(await scrape(gateway), "tidings_gateway_connections") == 4

            await wait_until(settled, timeout=5, what="closed connections to leave the gauge")
            text = await scrape(gateway)
            assert (await client.get("/readyz")).json()["connections"] == 4

        assert metric(text, "tidings_gateway_tenants") == 2
        assert 1 <= metric(text, "tidings_gateway_frames_total") <= 8  # batched, never more
        assert metric(text, "tidings_gateway_dropped_messages_total") == 0
        assert metric(text, "tidings_gateway_draining") == 0
        assert metric(text, "tidings_gateway_notifications_total") == 8
        # 5 to acme's 3 connections, 2 to alice, 1 to globex's one: 18 deliveries.
        assert metric(text, "tidings_gateway_deliveries_total") == 5 * 3 + 2 + 1
        count, total = histogram(text, "tidings_gateway_delivery_latency_seconds")
        assert count == 8
        assert 0 < total / count < 2.0  # from the stream's timestamp: loopback, not seconds
        assert metric(text, "tidings_gateway_delivery_latency_seconds_bucket", le="+Inf") == 8
        assert metric(text, "tidings_gateway_resumes_total", outcome="memory") == 1
        assert metric(text, "tidings_gateway_resumes_total", outcome="not_recovered") == 1
        assert metric(text, "tidings_gateway_auth_failures_total", reason="token_expired") == 1
        assert metric(text, "tidings_gateway_auth_failures_total", reason="token_malformed") == 1
        assert "tidings_gateway_slow_consumer_closes_total 0.0" in text
        assert_no_tenant_label(text)

        await slow_consumer_is_counted(gateway, client, pub, token)


def assert_no_tenant_label(text: str) -> None:
    """Cardinality stays bounded: no label is a tenant, and no value names one."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert "tenant" not in sample.labels, sample
            assert not set(sample.labels.values()) & set(TENANTS), sample


async def slow_consumer_is_counted(
    gateway: Gateway, client: httpx.AsyncClient, pub: Publisher, token: Mint
) -> None:
    """A client that stops reading is closed as a slow consumer, counted once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gateway.port))
    except OSError:
        sock.close()
        raise
    ws = await connect(
        ws_url(gateway), sock=sock, subprotocols=[Subprotocol(SUBPROTOCOL)], max_queue=1
    )
    try:
        await ws.send(orjson.dumps({"type": "hello", "token": token(user="sloth")}).decode())
        assert b'"welcome"' in (await asyncio.wait_for(ws.recv(decode=False), 5))
        padding = {"blob": "x" * 250_000}
        for i in range(40):  # 10 MB at most: the socket buffers fill long before
            await pub.to_tenant(
                "acme", "incident.created", title=f"s{i}", message="m", data=padding
            )
            if i % 2 and metric(
                await scrape(gateway), "tidings_gateway_slow_consumer_closes_total"
            ):
                break
        text = await scrape(gateway)
        assert metric(text, "tidings_gateway_slow_consumer_closes_total") == 1
        assert metric(text, "tidings_gateway_tenants") == 0  # it left the hub at once
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 3)
        ws.transport.abort()  # the gateway may have given up on the closing handshake
        await asyncio.wait_for(ws.connection_lost_waiter, 3)


async def test_readyz_is_503_while_nats_is_down(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with http(gateway) as client:
        assert (await client.get("/readyz")).status_code == 200
        await asyncio.to_thread(nats_server.stop)

        async def status(code: int) -> bool:
            return (await client.get("/readyz")).status_code == code

        await wait_until(lambda: status(503), timeout=10, what="/readyz to say 503")
        body = (await client.get("/readyz")).json()
        assert body["nats"] is False
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
        assert metric(await scrape(gateway), "tidings_gateway_nats_connected") == 0
        assert metric(await scrape(gateway), "tidings_gateway_nats_healed") == 0
        await asyncio.to_thread(nats_server.start)
        await wait_until(lambda: status(200), timeout=15, what="/readyz to recover")
        assert metric(await scrape(gateway), "tidings_gateway_nats_connected") == 1
        assert metric(await scrape(gateway), "tidings_gateway_nats_healed") == 1


async def handshake_status(url: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of a refused WebSocket upgrade."""
    try:
        async with connect(url, subprotocols=[Subprotocol(SUBPROTOCOL)]):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code, orjson.loads(exc.response.body)
    raise AssertionError(f"the upgrade to {url} was accepted")


async def status_of(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.get(
        "/api/notifications/status", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_status_sums_two_gateway_processes_and_drain_turns_readyz_503(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Mint, tmp_path: Path
) -> None:
    env = {"TIDINGS_GATEWAY_DRAIN_SECONDS": "3", "TIDINGS_GATEWAY_STATUS_TIMEOUT": "0.5"}
    async with gateway_processes(2, nats_server.url, tmp_path, env=env) as (gw1, gw2):
        placement = [
            (gw1, "acme", "alice"),
            (gw1, "acme", "alice"),
            (gw2, "acme", "alice"),
            (gw2, "acme", "bob"),
            (gw1, "globex", "alice"),
        ]
        clients = [RawClient(gw.ws_url) for gw, _, _ in placement]
        try:
            for c, (_, tenant, user) in zip(clients, placement, strict=True):
                await c.__aenter__()
                await c.hello(token(tenant=tenant, user=user))
                await c.next("synced")
            async with (
                gw1.http(api=True) as one,
                gw2.http(api=True) as two,
                gw2.http() as two_data,
            ):
                expected = {
                    "tenant": "acme",
                    "user": "alice",
                    "tenant_connections": 4,
                    "user_connections": 3,
                    "gateways": 2,
                }
                assert await status_of(one, token(tenant="acme", user="alice")) == expected
                assert await status_of(two, token(tenant="acme", user="alice")) == expected
                bob = await status_of(two, token(tenant="acme", user="bob"))
                assert (bob["tenant_connections"], bob["user_connections"]) == (4, 1)
                globex = await status_of(one, token(tenant="globex", user="alice"))
                assert (globex["tenant"], globex["tenant_connections"]) == ("globex", 1)
                assert (globex["user_connections"], globex["gateways"]) == (1, 2)
                nobody = await status_of(one, token(tenant="quiet", user="zed"))
                assert (nobody["tenant_connections"], nobody["user_connections"]) == (0, 0)

                # Without a valid token: 401, and the answer says why.
                for headers in (
                    {},
                    {"Authorization": "Basic YWxpY2U6cHc="},
                    {"Authorization": "Bearer"},
                    {"Authorization": "Bearer garbage"},
                    {"Authorization": f"Bearer {token(ttl=-60)}"},
                ):
                    response = await one.get("/api/notifications/status", headers=headers)
                    assert response.status_code == 401, headers
                    assert response.json()["error"]["code"].startswith("token_"), headers
                assert (await one.get("/api/notifications/status")).headers[
                    "WWW-Authenticate"
                ] == "Bearer"

                # SIGTERM gw2: not ready while it drains, its clients are told to move.
                # The data port says where the status API is.
                moved = await two_data.get("/api/notifications/status")
                assert moved.status_code == 404
                assert str(gw2.api_port) in moved.json()["error"]["reason"]

                # SIGTERM gw2: not ready while it drains, its clients are told to move.
                assert (await two_data.get("/readyz")).status_code == 200
                gw2.send_signal()  # SIGTERM

                async def draining() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        response = await two_data.get("/readyz")
                        return response.status_code == 503 and response.json()["draining"]
                    return False

                await wait_until(draining, timeout=5, what="gw2's /readyz to say 503")
                status, body = await handshake_status(gw2.ws_url)
                assert (status, body["error"]["code"]) == (503, "restarting")
                for c, (gw, _, _) in zip(clients, placement, strict=True):
                    if gw is gw2:
                        assert (await c.next("reconnect", timeout=5))["type"] == "reconnect"
                        assert (await c.closed())[0] == 1012
                assert await gw2.wait_exit(timeout=5) == 0
                after = await status_of(one, token(tenant="acme", user="alice"))
                assert (after["tenant_connections"], after["user_connections"]) == (2, 2)
                assert after["gateways"] == 1
        finally:
            for c in clients:
                await c.__aexit__(None, None, None)


def listen_backlog(port: int) -> int:
    """The accept queue's size of the socket listening on ``port`` (``ss``: Send-Q)."""
    import subprocess

    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[2])


@pytest.mark.settings(gateway={"backlog": 1234})
async def test_the_data_port_listens_with_the_configured_backlog(gateway: Gateway) -> None:
    """asyncio's default (100) overflows when a gateway's clients all land on another at once:
    ``TIDINGS_GATEWAY_BACKLOG`` reaches the socket."""
    assert listen_backlog(gateway.port) == 1234
