"""Protection: what a client sends cannot crash the gateway or starve anyone else.

Malformed, unknown, binary, oversized and flooding frames are refused with the documented codes
while a watcher on the same gateway keeps receiving a steady stream without a gap; the
handshake checks Origin, subprotocol and token-in-URL; a tenant's connection quota holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from tests.support.wsclient import RawClient, ws_url
from tidings.client import Publisher
from tidings.gateway.service import Gateway
from tidings.protocol import SUBPROTOCOL

Mint = Callable[..., str]
MAX_FRAME = 4096
RATE, BURST = 20.0, 40
QUOTA = 3
ALLOWED_ORIGIN = "https://app.example.test"
pytestmark = pytest.mark.settings(
    gateway={
        "max_frame_bytes": MAX_FRAME,
        "rate_limit": RATE,
        "rate_burst": BURST,
        "tenant_quota": QUOTA,
        "allowed_origins": [ALLOWED_ORIGIN],
    }
)


async def live_client(url: str, token: str) -> RawClient:
    client = RawClient(url)
    await client.__aenter__()
    await client.hello(token)
    await client.next("synced")
    return client


@contextlib.asynccontextmanager
async def steady_stream(js: JetStreamContext, *, every: float = 0.02) -> AsyncIterator[list[int]]:
    """Publish to acme every ``every`` seconds while the block runs; yields the seqs sent."""
    pub = Publisher(js)
    sent: list[int] = []
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            result = await pub.to_tenant("acme", "incident.created", title="s", message="m")
            assert result.seq is not None
            sent.append(result.seq)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    task = asyncio.ensure_future(run())
    try:
        yield sent
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def ping_pong(client: RawClient, request_id: int) -> None:
    await client.send({"type": "ping", "id": request_id})
    assert await client.next("pong") == {"type": "pong", "id": request_id}


async def test_bad_frames_are_refused_while_others_keep_receiving(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    url = ws_url(gateway)
    watcher = await live_client(url, token(user="watcher"))
    try:
        async with steady_stream(js) as sent:
            # Non-fatal: an error frame with its code, and the connection goes on.
            abuser = await live_client(url, token(user="mallory", tenant="other"))
            assert abuser.ws is not None
            non_fatal: list[tuple[str | bytes, str]] = [
                ("{nope", "malformed"),
                ("[1,2,3]", "malformed"),
                ('"hello"', "malformed"),
                ("", "malformed"),
                ('{"type": "explode", "id": 4}', "unknown_type"),
                ('{"type": 7, "id": 5}', "invalid_field"),
                ('{"id": 6}', "missing_field"),
                ('{"type": "subscribe", "room": "room:a", "id": -1}', "invalid_field"),
                ('{"type": "ping", "id": 9007199254740993}', "invalid_field"),
                (orjson.dumps({"type": "ping", "id": 8}), "malformed"),  # binary frame
                (b"\xff\xfe\x00garbage", "malformed"),  # binary, not even UTF-8
                ('{"type": "hello", "token": "x", "id": 10}', "unexpected_frame"),
            ]
            for i, (frame, code) in enumerate(non_fatal):
                await abuser.ws.send(frame)
                error = await abuser.next("error")
                assert (error["code"], error.get("close")) == (code, None), (frame, error)
                await ping_pong(abuser, 100 + i)
            errors = [e for e in await abuser.quiet(0.05) if e["type"] != "notification"]
            assert errors == []

            # Fatal: too big (1009), flooding (4029).
            async with RawClient(url) as big:
                await big.hello(token(user="big"))
                await big.send({"type": "ping", "pad": "x" * MAX_FRAME})
                assert (await big.closed())[0] == 1009
            async with RawClient(url) as big_hello:
                await big_hello.send({"type": "hello", "token": "x" * (MAX_FRAME + 10)})
                assert (await big_hello.closed())[0] == 1009
            async with RawClient(url) as flood:
                await flood.hello(token(user="flood"))
                assert flood.ws is not None
                began = time.monotonic()
                with contextlib.suppress(ConnectionClosed):  # it may close mid-flood
                    for i in range(BURST * 5):
                        await flood.ws.send(orjson.dumps({"type": "ping", "id": i}).decode())
                error = await flood.next("error")
                assert (error["code"], error["close"]) == ("rate_limited", 4029)
                assert await flood.closed() == (4029, "rate_limited")
                pongs = [o for o in flood.inbox if o["type"] == "pong"]
                # Within the burst (plus what refilled meanwhile) pings were answered.
                assert BURST <= len(pongs) <= BURST + RATE * (time.monotonic() - began) + 1
            # The abuser who only sent bad frames is still connected and served.
            await ping_pong(abuser, 999)
            await abuser.__aexit__(None, None, None)
            await asyncio.sleep(0.3)  # a few more notifications after the abuse
        assert len(sent) >= 10
        got = await watcher.notifications(len(sent), timeout=10)
        assert [g["seq"] for g in got] == sent  # every one, in order, no gap, no duplicate
        assert await watcher.quiet(0.2) == []
        # A fresh connection is served as usual.
        async with RawClient(url) as fresh:
            assert (await fresh.hello(token(user="fresh")))["user"] == "fresh"
    finally:
        await watcher.__aexit__(None, None, None)


async def handshake(
    url: str, *, origin: str | None = None, subprotocols: list[str] | None = None
) -> tuple[int, dict[str, Any] | None]:
    """HTTP status of the WebSocket handshake (101 when it opened) and the refusal's body."""
    protocols = [Subprotocol(s) for s in subprotocols] if subprotocols is not None else None
    try:
        async with connect(
            url, origin=Origin(origin) if origin else None, subprotocols=protocols
        ) as ws:
            assert ws.subprotocol == SUBPROTOCOL
            return 101, None
    except InvalidStatus as exc:
        body = exc.response.body
        return exc.response.status_code, orjson.loads(body) if body else None


async def test_the_handshake_checks_origin_subprotocol_and_token_in_url(
    gateway: Gateway, token: Mint
) -> None:
    url, sub = ws_url(gateway), [SUBPROTOCOL]
    assert (await handshake(url, origin=ALLOWED_ORIGIN, subprotocols=sub))[0] == 101
    assert (await handshake(url, subprotocols=sub))[0] == 101  # no Origin: not a browser
    for origin in (
        "https://evil.example",
        "https://app.example.test.evil.example",
        "http://app.example.test",  # the scheme counts
        "null",
    ):
        status, body = await handshake(url, origin=origin, subprotocols=sub)
        assert status == 403, origin
        assert body is not None and body["error"]["code"] == "origin_forbidden"
    for offered in (None, ["chat"], ["tidings.v2.json"]):
        status, body = await handshake(url, origin=ALLOWED_ORIGIN, subprotocols=offered)
        assert status == 400, offered
        assert body is not None and body["error"]["code"] == "subprotocol_required"
    for query in (f"?token={token()}", f"?access_token={token()}"):
        status, body = await handshake(url + query, subprotocols=sub)
        assert status == 400
        assert body is not None and body["error"]["code"] == "token_in_url"
    # After every refusal the gateway serves an allowed browser as usual.
    async with connect(
        url, origin=Origin(ALLOWED_ORIGIN), subprotocols=[Subprotocol(SUBPROTOCOL)]
    ) as ws:
        await ws.send(orjson.dumps({"type": "hello", "token": token()}).decode())
        first = await asyncio.wait_for(ws.recv(decode=True), 5)
        welcome = orjson.loads(first.split("\n")[0])
        assert welcome["type"] == "welcome" and welcome["tenant"] == "acme"


async def test_a_tenant_over_its_connection_quota_is_refused(gateway: Gateway, token: Mint) -> None:
    url = ws_url(gateway)
    members = [await live_client(url, token(tenant="busy", user=f"u{i}")) for i in range(QUOTA)]
    try:
        async with RawClient(url) as extra:
            await extra.send({"type": "hello", "token": token(tenant="busy", user="late")})
            error = await extra.next("error")
            assert (error["code"], error["close"]) == ("quota_exceeded", 4029)
            assert await extra.closed() == (4029, "quota_exceeded")
        # Other tenants are not affected by busy's quota.
        async with RawClient(url) as other:
            assert (await other.hello(token(tenant="calm")))["tenant"] == "calm"
        # A place freed by a closed connection can be taken again.
        await members.pop().__aexit__(None, None, None)
        deadline = time.monotonic() + 5
        while True:
            async with RawClient(url) as again:
                await again.send({"type": "hello", "token": token(tenant="busy", user="late")})
                first = await again.next()
                if first["type"] == "welcome":
                    break
                assert first["code"] == "quota_exceeded"
            assert time.monotonic() < deadline, "the freed place was never given back"
            await asyncio.sleep(0.05)
    finally:
        for member in members:
            await member.__aexit__(None, None, None)
