"""Hostile bytes at the data port's edge (issue 14 item 7), over raw TCP to a real gateway.

A frame with RSV bits set (no extension is ever negotiated) fails the connection with 1002, as
RFC 6455 §5.2 requires, instead of being processed. A request head over 16 KB is answered
``431`` with the error table's body instead of a reset; heads under it, and heads that arrive
a few bytes at a time, are served as before.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

import orjson
import pytest

from tidings.gateway.headguard import MAX_HEAD
from tidings.gateway.service import Gateway

Mint = Callable[..., str]


async def open_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: tidings.v1.json\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def client_frame(payload: bytes, *, opcode: int = 0x1, rsv: int = 0) -> bytes:
    """One masked client frame; ``rsv`` is the three RSV bits (0..7)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | (rsv << 4) | opcode, 0x80 | len(payload)]) + mask + masked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


async def close_code(reader: asyncio.StreamReader) -> int:
    """The code of the first close frame the server sends (other frames skipped)."""
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == 0x8:
            return int(struct.unpack("!H", payload[:2])[0])


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
async def test_a_frame_with_rsv_bits_is_closed_1002_and_not_processed(
    gateway: Gateway, token: Mint, rsv: int
) -> None:
    reader, writer = await open_ws(gateway.port)
    try:
        hello = orjson.dumps({"type": "hello", "token": token()})
        writer.write(client_frame(hello[:100] if len(hello) < 126 else b"x", rsv=rsv))
        writer.write(client_frame(b'{"type":"ping","id":1}'))  # after the failure: ignored
        assert await close_code(reader) == 1002
    finally:
        writer.close()
    assert len(gateway.registry.sessions) == 0 or all(
        c.state.value == "closed" for c in gateway.registry.sessions
    )


async def test_a_frame_without_rsv_bits_is_processed(gateway: Gateway) -> None:
    reader, writer = await open_ws(gateway.port)
    try:
        writer.write(client_frame(b'{"type":"ping","id":1}'))  # before hello: refused, 4xxx
        code = await close_code(reader)
        assert code != 1002 and code >= 4000
    finally:
        writer.close()


async def request(port: int, head: bytes, *, piece: int = 0) -> bytes:
    """Send a request head (all at once, or ``piece`` bytes at a time); the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if piece:
            for i in range(0, len(head), piece):
                writer.write(head[i : i + piece])
                await writer.drain()
                await asyncio.sleep(0)
        else:
            writer.write(head)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("size", [MAX_HEAD, 64 * 1024], ids=["16k", "64k"])
async def test_a_request_head_over_the_limit_is_answered_431(gateway: Gateway, size: int) -> None:
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    answer = await request(gateway.port, head)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    body = orjson.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "too_large"


@pytest.mark.parametrize("piece", [0, 3], ids=["at-once", "3-bytes-at-a-time"])
async def test_a_head_under_the_limit_is_served(gateway: Gateway, piece: int) -> None:
    filler = b"a" * (MAX_HEAD - 200) if piece == 0 else b"a" * 300
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + filler + b"\r\n\r\n"
    answer = await request(gateway.port, head, piece=piece)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
