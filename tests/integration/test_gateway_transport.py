"""The data port's WebSocket and HTTP edges (picows): what a client may send and what it gets."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from nats.js import JetStreamContext

from tests.support.gateway_process import DEFAULT_SECRET, gateway_processes
from tests.support.wsclient import RawClient
from tidings.auth import mint_token
from tidings.client import Publisher
from tidings.dev.embedded import EmbeddedNats
from tidings.errors import Unavailable
from tidings.gateway.service import Gateway
from tidings.settings import Settings


async def test_frames_sent_right_behind_hello_are_answered_in_order(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    """The hello waits on the token check and the resume; what follows it waits its turn."""
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        assert client.ws is not None
        for frame in (
            {"type": "hello", "token": token(rooms=["ops"])},
            {"type": "subscribe", "room": "room:ops", "id": 1},
            {"type": "ping", "id": 2},
            {"type": "unsubscribe", "room": "room:ops", "id": 3},
        ):
            await client.ws.send(orjson.dumps(frame).decode())
        kinds = [(await client.next())["type"] for _ in range(5)]
        assert kinds == ["welcome", "synced", "subscribed", "pong", "unsubscribed"]


async def test_a_fragmented_message_is_put_together(
    gateway: Gateway, js: JetStreamContext, token: Callable[..., str]
) -> None:
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        assert client.ws is not None
        hello = orjson.dumps({"type": "hello", "token": token()}).decode()
        await client.ws.send([hello[:10], hello[10:20], hello[20:]])  # three frames, one message
        welcome = await client.next("welcome")
        assert welcome["tenant"] == "acme"
        await client.next("synced")
        await Publisher(js).to_tenant("acme", "incident.created", title="after", message="m")
        assert (await client.next("notification"))["title"] == "after"


async def test_a_fragmented_message_over_the_limit_is_closed_1009(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    limit = 4 * gateway.settings.gateway.max_frame_bytes
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        assert client.ws is not None
        await client.hello(token())
        chunk = "x" * (limit // 4)
        await client.ws.send([chunk] * 5)
        code, _ = await client.closed()
        assert code == 1009


async def test_a_post_to_the_data_port_is_refused_with_a_reason(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as http:
        answer = await http.post("/readyz", content=b"{}")
        assert answer.status_code == 400
        assert b"Unsupported HTTP method" in answer.content
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()["nats"]) == (200, True)


async def test_the_api_port_answers_status_and_the_data_port_points_to_it(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {token()}"}
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        await client.hello(token())
        await client.next("synced")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.api_port}") as api:
            status = await api.get("/api/notifications/status", headers=headers)
            assert status.status_code == 200, status.text
            body = status.json()
            assert (body["tenant_connections"], body["gateways"]) == (1, 1)
            assert (await api.get("/healthz")).status_code == 200
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as data:
            moved = await data.get("/api/notifications/status", headers=headers)
            assert moved.status_code == 404
            assert f"({gateway.api_port})" in moved.json()["error"]["reason"]


async def test_a_client_close_is_answered_and_forgets_the_connection(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        assert client.ws is not None
        await client.hello(token())
        await client.next("synced")
        assert len(gateway.registry.sessions) == 1
        await client.ws.close(code=4321, reason="bye")
        assert client.ws.close_code == 4321  # the gateway echoed the client's code
    async with asyncio.timeout(5):
        while gateway.registry.sessions or gateway.hub.tenants:
            await asyncio.sleep(0.02)


async def test_a_closed_connection_is_freed_without_the_cyclic_collector(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    """Its objects form no cycle once the socket is gone, so refcounting frees them at once:
    the gateway may freeze the collector's view of long-lived objects (collector.py) safely."""
    gc.collect()
    gc.disable()
    try:
        async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
            await client.hello(token())
            await client.next("synced")
            (session,) = gateway.registry.sessions.values()
            ref = weakref.ref(session)
            del session
        async with asyncio.timeout(5):
            while gateway.registry.sessions:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # the transport's own close callbacks
        assert ref() is None, gc.get_referrers(ref())
    finally:
        gc.enable()


async def test_connections_do_not_log_at_info_but_the_gateway_does(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    """picows logs every connect and disconnect at INFO; a gateway at INFO keeps that out."""
    env = {"TIDINGS_LOG_LEVEL": "INFO"}
    async with gateway_processes(1, nats_server.url, tmp_path, env=env) as (gw,):
        for _ in range(3):
            async with RawClient(gw.ws_url) as client:
                await client.hello(mint_token(DEFAULT_SECRET, tenant="acme", user="alice"))
                await client.next("synced")
    lines = [orjson.loads(ln) for ln in gw.log_file.read_text().splitlines() if ln.startswith("{")]
    messages = [line["message"] for line in lines if isinstance(line, dict)]
    assert "gateway listening" in messages
    assert not [m for m in messages if "connection" in m.lower() or m == "Disconnected"], messages


@pytest.mark.parametrize(
    ("setting", "variable"),
    [("api_port", "TIDINGS_GATEWAY_API_PORT"), ("port", "TIDINGS_GATEWAY_PORT")],
)
async def test_a_taken_port_is_a_clear_error_and_lets_go_of_the_rest(
    js: JetStreamContext, gateway_settings: Settings, setting: str, variable: str
) -> None:
    """The data port, or the API port, taken by another process: the start fails naming the
    variable and the address, with NATS closed and no port left serving."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setattr(gateway_settings.gateway, setting, port)
        gw = Gateway(gateway_settings)
        with pytest.raises(Unavailable) as info:
            await gw.start()
        assert info.value.field == variable
        assert f"cannot listen on 127.0.0.1:{port}" in info.value.reason
        assert gw.server is None or not gw.server.is_serving()
        assert not gw.link.connected and gw.link.state.value == "closed"
