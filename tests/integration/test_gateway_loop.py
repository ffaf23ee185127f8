"""The gateway's own event loop (uvloop) keeps the head guard in front of picows: a request
head over picows's limit is still answered ``431``, a small one still reaches picows."""

from __future__ import annotations

import asyncio
import errno
import socket

import uvloop
from picows import ws_create_server

from tidings.gateway import loop
from tidings.gateway.headguard import MAX_HEAD, guard


async def answer_to(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def test_the_head_guard_works_on_the_gateway_loop() -> None:
    async def main() -> tuple[bool, bytes, bytes]:
        server = await ws_create_server(
            lambda request: None,  # no route: picows answers the upgrade itself
            "127.0.0.1",
            0,
            use_aiofastnet=False,
            start_serving=False,
        )
        await guard(server).start_serving()
        port = server.sockets[0].getsockname()[1]
        try:
            big = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n"
            small = (
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            kind = isinstance(asyncio.get_running_loop(), uvloop.Loop)
            return kind, await answer_to(port, big), await answer_to(port, small)
        finally:
            server.close()

    kind, big, small = loop.run(main())
    assert kind == (loop.name() == "uvloop")
    assert big.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert small.startswith(b"HTTP/1.1 ") and not small.startswith(b"HTTP/1.1 431"), small[:80]


def test_the_gateway_runs_on_uvloop_when_installed() -> None:
    async def which() -> bool:
        return isinstance(asyncio.get_running_loop(), uvloop.Loop)

    assert loop.name() == "uvloop"  # a dependency: installed wherever the gateway is
    assert loop.run(which())


def test_a_port_another_socket_listens_on_first_fails_start_serving_on_the_gateway_loop() -> None:
    """Two sockets may bind one port with SO_REUSEADDR while neither listens; the second to
    listen fails. uvloop drops that error (and closes the socket); the gateway's loop raises
    it as asyncio's does, so a gateway never reports a port it does not serve."""

    async def main() -> OSError | None:
        server = await ws_create_server(
            lambda request: None, "127.0.0.1", 0, use_aiofastnet=False, start_serving=False
        )
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            other.bind(("127.0.0.1", port))
            other.listen()
            try:
                await guard(server).start_serving()
            except OSError as exc:
                return exc
            finally:
                server.close()
        return None

    failed = loop.run(main())
    assert failed is not None and failed.errno == errno.EADDRINUSE
