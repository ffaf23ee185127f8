"""The gateway's one keepalive loop: answering clients stay, silent ones are closed."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable

import orjson
import pytest

from tests.support.wsclient import RawClient
from tidings.gateway.service import Gateway

pytestmark = pytest.mark.settings(gateway={"ping_interval": 0.5})


def _masked_text(payload: bytes) -> bytes:
    """A client text frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 1 << 16
    length = (
        bytes((0x80 | len(payload),))
        if len(payload) < 126
        else b"\xfe" + len(payload).to_bytes(2, "big")
    )
    return b"\x81" + length + mask + body


async def test_a_client_that_never_answers_pings_is_closed(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        await _silent_client(gateway, token, reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


async def _silent_client(
    gateway: Gateway,
    token: Callable[..., str],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tidings.v1.json\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(_masked_text(orjson.dumps({"type": "hello", "token": token(ttl=60)})))
    # It reads (so nothing backs up) but never answers a ping: the gateway gives up on it.
    async with asyncio.timeout(5):
        while gateway.registry.sessions:
            if not await reader.read(4096):
                break
    assert not gateway.registry.sessions


async def test_a_client_that_answers_pings_stays(
    gateway: Gateway, token: Callable[..., str]
) -> None:
    async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
        await client.hello(token())
        await asyncio.sleep(2.0)  # four ping intervals
        assert len(gateway.registry.sessions) == 1
        await client.send({"type": "ping", "id": 1})
        assert (await client.next("pong"))["id"] == 1
