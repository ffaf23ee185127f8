"""python-socketio on uvicorn (one process): the Python peer of `tidings bench`.

    python benchmarks/peers/sio_py.py PORT REDIS_PORT

A client connects with auth {"room": R, "user": U} and enters both rooms. Publishers PUBLISH
{"r": room, "d": data} on the Redis channel ``bench``; each message becomes one
``sio.emit("n", data, room=room)``. The Redis feed is read with a few lines of RESP (no extra
client library). Prints {"event":"ready"} once it listens.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import orjson
import socketio
import uvicorn

PORT, REDIS_PORT = int(sys.argv[1]), int(sys.argv[2])
sio = socketio.AsyncServer(
    async_mode="asgi", transports=["websocket"], cors_allowed_origins="*", logger=False
)


async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    auth = auth or {}
    await sio.enter_room(sid, str(auth.get("room")))
    if auth.get("user"):
        await sio.enter_room(sid, str(auth["user"]))


sio.on("connect", connect)  # not as a decorator: socketio has no type information


async def feed() -> None:
    """SUBSCRIBE bench; every pushed message is emitted to its room, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", REDIS_PORT)
    writer.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n")
    await writer.drain()
    while True:
        head = await reader.readuntil(b"\r\n")  # *3
        parts = []
        for _ in range(int(head[1:])):
            kind = await reader.readuntil(b"\r\n")
            if kind[:1] == b"$":
                parts.append((await reader.readexactly(int(kind[1:]) + 2))[:-2])
            else:
                parts.append(kind[1:-2])
        if parts[0] == b"message":
            m = orjson.loads(parts[2])
            await sio.emit("n", m["d"], room=m["r"])


async def main() -> None:
    app = socketio.ASGIApp(sio)
    config = uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.05)
    task = asyncio.ensure_future(feed())
    print(json.dumps({"event": "ready", "port": PORT, "pid": os.getpid()}), flush=True)
    await serving
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
