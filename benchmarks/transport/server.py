"""Fan-out server for the transport benchmark: one room, one candidate send path.

Run by ``benchmarks.transport.run`` (pinned to its own core), controlled by JSON lines on
stdin, answering with JSON lines on stdout. Every candidate shares the same room logic
(coalescing window, notification source, frame payload), so only the send path differs.

Commands: ``{"cmd":"members"}`` -> ``{"members": n}``;
``{"cmd":"step","step":k,"rate":R,"seconds":S}`` -> runs the source at R notifications/s for
S seconds, waits until the room has flushed, answers with counters;
``{"cmd":"quit"}`` -> exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

SUBPROTOCOL = "tidings.v1.json"
WINDOW_S = 0.002  # coalescing window, as in the design brief
SLOW_LIMIT = 4 * 1024 * 1024  # write-buffer bytes past which a member counts as a slow consumer
PAD = b"x" * 400

# candidate name -> short description (README and results)
CANDIDATES: dict[str, str] = {
    "starlette-sansio": "Starlette WebSocket.send_text on uvicorn ws=websockets-sansio "
    "(uvicorn's default), one await per member per frame",
    "starlette-websockets": "Starlette WebSocket.send_text on uvicorn ws=websockets (legacy impl)",
    "starlette-wsproto": "Starlette WebSocket.send_text on uvicorn ws=wsproto",
    "websockets-broadcast": "websockets.asyncio.server.serve + websockets.broadcast(text=True)",
    "websockets-prebuilt": "websockets.asyncio.server.serve, frame built once per batch, "
    "connection.transport.write(frame) to every member",
    "picows": "picows server, WSTransport.send_reuse_external_bytearray of one prepared buffer",
    "picows-send": "picows server, WSTransport.send(TEXT, payload) per member (copies payload)",
}


def text_frame(payload: bytes) -> bytes:
    """One unmasked FIN text frame: what a server sends, identical for every member."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def notification(seq: int, ts_ns: int, step: int) -> bytes:
    """~300 bytes of JSON; seq/ts/step first so the C client parses them without a JSON parser."""
    head = (
        b'{"seq":%d,"ts":%d,"step":%d,"type":"notification","id":"01JBENCH%018d",'
        b'"event":"incident.created","room":"tenant","time":"2026-01-01T00:00:00Z",'
        b'"title":"Incident created","severity":"warning","message":"' % (seq, ts_ns, step, seq)
    )
    return head + PAD[: max(0, 290 - len(head))] + b'"}'


class Room:
    """Members plus a coalescing buffer; one sender task flushes what is due every window."""

    def __init__(self, send_all: Callable[[Room, bytes], Awaitable[None] | None]) -> None:
        self.members: dict[Any, None] = {}
        self.pending: list[bytes] = []
        self.first_pending = 0.0
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self._send_all = send_all
        self.frames = 0
        self.writes = 0
        self.slow = 0
        self.max_batch = 0
        self.max_buffer = 0
        self.send_time = 0.0

    def push(self, data: bytes) -> None:
        if not self.pending:
            self.first_pending = time.monotonic()
            self.idle.clear()
            self.wake.set()
        self.pending.append(data)

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            delay = self.first_pending + WINDOW_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            batch, self.pending = self.pending, []
            if not batch:
                continue
            payload = b"\n".join(batch)
            self.max_batch = max(self.max_batch, len(batch))
            t0 = time.perf_counter()
            res = self._send_all(self, payload)
            if res is not None:
                await res
            self.send_time += time.perf_counter() - t0
            self.frames += 1
            self.writes += len(self.members)
            if not self.pending:
                self.idle.set()


# ---------------------------------------------------------------- send paths


async def send_starlette(room: Room, payload: bytes) -> None:
    text = payload.decode()
    for ws in tuple(room.members):
        try:
            await ws.send_text(text)
        except Exception:
            room.members.pop(ws, None)


def send_broadcast(room: Room, payload: bytes) -> None:
    from websockets.asyncio.server import broadcast

    broadcast(room.members, payload, text=True)


def send_prebuilt(room: Room, payload: bytes) -> None:
    frame = text_frame(payload)
    limit = SLOW_LIMIT
    for conn in room.members:
        transport = conn.transport
        size = transport.get_write_buffer_size()
        if size > limit:
            room.slow += 1  # a gateway would close it with 1013; here the loss shows up
            continue
        if size > room.max_buffer:
            room.max_buffer = size
        transport.write(frame)


def send_picows(room: Room, payload: bytes) -> None:
    from picows import WSMsgType

    buf = bytearray(14) + payload  # 14 bytes of headroom for the header picows writes in place
    text = WSMsgType.TEXT
    limit = SLOW_LIMIT
    for t in room.members:
        size = t.underlying_transport.get_write_buffer_size()
        if size > limit:
            room.slow += 1
            continue
        if size > room.max_buffer:
            room.max_buffer = size
        t.send_reuse_external_bytearray(text, buf, 14)


def send_picows_copy(room: Room, payload: bytes) -> None:
    from picows import WSMsgType

    text = WSMsgType.TEXT
    for t in room.members:
        t.send(text, payload)


# ---------------------------------------------------------------- servers


async def start_starlette(room: Room, port: int, ws_impl: str) -> Callable[[], Awaitable[None]]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept(subprotocol=SUBPROTOCOL)
        await ws.receive_text()  # the hello
        room.members[ws] = None
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            room.members.pop(ws, None)

    async def healthz(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/healthz", healthz), WebSocketRoute("/ws", ws_endpoint)])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=ws_impl,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        await task

    return stop


async def start_websockets(
    room: Room, port: int, *, keepalive: bool
) -> Callable[[], Awaitable[None]]:
    from http import HTTPStatus

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response

    async def handler(conn: ServerConnection) -> None:
        try:
            await conn.recv()  # the hello
            room.members[conn] = None
            async for _ in conn:
                pass
        except ConnectionClosed:
            pass
        finally:
            room.members.pop(conn, None)

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return conn.respond(HTTPStatus.OK, "ok\n")
        return None

    server = await serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
        process_request=process_request,
        # the default keepalive is a second task per connection; +noping measures without it
        ping_interval=20 if keepalive else None,
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


async def start_picows(room: Room, port: int, *, aiofastnet: bool) -> Callable[[], Awaitable[None]]:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        WSUpgradeResponse,
        WSUpgradeResponseWithListener,
        ws_create_server,
    )

    class Member(WSListener):
        __slots__ = ("joined",)

        def __init__(self) -> None:
            self.joined = False

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT and not self.joined:
                self.joined = True
                room.members[transport] = None
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            room.members.pop(transport, None)

    def factory(request: WSUpgradeRequest) -> Any:
        if request.path == b"/healthz":
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_ok_response(b"ok\n"), None
            )
        if request.path != b"/ws":
            return None
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL} if SUBPROTOCOL in offered else {}
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(extra_headers=headers), Member()
        )

    server = await ws_create_server(
        factory,
        "127.0.0.1",
        port,
        # client frames (hello, subscribe, refresh) are small; the 16 KiB default costs
        # 15 KB per idle connection and the buffer grows on demand anyway
        read_buffer_init_size=1024,
        use_aiofastnet=aiofastnet,
    )

    async def stop() -> None:
        server.close()

    return stop


# ---------------------------------------------------------------- control


class Source:
    """The in-process stand-in for NATS: notifications due at a fixed rate, by the clock."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.seq = 0

    async def run(self, step: int, rate: float, seconds: float) -> int:
        total = int(rate * seconds)
        t0 = time.monotonic_ns()
        period_ns = 1e9 / rate
        i = 0
        while i < total:
            now = time.monotonic_ns()
            due = min(total, int((now - t0) / period_ns) + 1)
            while i < due:
                # ts is the scheduled time, so a server that falls behind shows it as latency
                self.room.push(notification(self.seq, t0 + int(i * period_ns), step))
                self.seq += 1
                i += 1
            wait = (t0 + i * period_ns - time.monotonic_ns()) / 1e9
            await asyncio.sleep(max(0.0, wait))
        return total


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


async def main_async(candidate: str, port: int) -> None:
    base, *flags = candidate.split("+")
    senders: dict[str, Callable[[Room, bytes], Awaitable[None] | None]] = {
        "starlette-sansio": send_starlette,
        "starlette-websockets": send_starlette,
        "starlette-wsproto": send_starlette,
        "websockets-broadcast": send_broadcast,
        "websockets-prebuilt": send_prebuilt,
        "picows": send_picows,
        "picows-send": send_picows_copy,
    }
    room = Room(senders[base])
    if base.startswith("starlette-"):
        impl = {"sansio": "websockets-sansio"}.get(base.removeprefix("starlette-"))
        stop = await start_starlette(room, port, impl or base.removeprefix("starlette-"))
    elif base.startswith("websockets-"):
        stop = await start_websockets(room, port, keepalive="noping" not in flags)
    else:
        stop = await start_picows(room, port, aiofastnet="noafn" not in flags)
    sender = asyncio.create_task(room.run())
    source = Source(room)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"event": "ready", "port": port, "pid": os.getpid(), "loop": type(loop).__module__})
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "members":
            reply({"members": len(room.members)})
        elif cmd["cmd"] == "step":
            for k in ("frames", "writes", "slow", "max_batch", "max_buffer"):
                setattr(room, k, 0)
            room.send_time = 0.0
            c0, w0 = cpu_seconds(), time.monotonic()
            generated = await source.run(cmd["step"], cmd["rate"], cmd["seconds"])
            gen_wall = time.monotonic() - w0
            await asyncio.wait_for(room.idle.wait(), timeout=60)
            c1, w1 = cpu_seconds(), time.monotonic()
            reply(
                {
                    "event": "step_done",
                    "step": cmd["step"],
                    "generated": generated,
                    "members": len(room.members),
                    "frames": room.frames,
                    "writes": room.writes,
                    "slow_skipped": room.slow,
                    "max_batch": room.max_batch,
                    "max_write_buffer": room.max_buffer,
                    "send_time_s": round(room.send_time, 4),
                    "gen_wall_s": round(gen_wall, 4),
                    "wall_s": round(w1 - w0, 4),
                    "cpu_pct": round(100 * (c1 - c0) / (w1 - w0), 1),
                }
            )
        elif cmd["cmd"] == "quit":
            break
    sender.cancel()
    await stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--candidate", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    base = args.candidate.split("+")[0]
    if base not in CANDIDATES:
        raise SystemExit(f"unknown candidate {args.candidate!r}; choose from {sorted(CANDIDATES)}")
    if "uvloop" in args.candidate.split("+")[1:]:
        import uvloop

        uvloop.run(main_async(args.candidate, args.port))
    else:
        asyncio.run(main_async(args.candidate, args.port))


if __name__ == "__main__":
    main()
