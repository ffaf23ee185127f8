"""A protocol-level test client: raw frames over a real WebSocket, no SDK logic in between."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Listening(Protocol):
    """Anything with a data port on loopback: an in-process gateway or a spawned one."""

    @property
    def port(self) -> int: ...


def ws_url(gateway: Listening) -> str:
    """The WebSocket URL of a gateway listening on 127.0.0.1."""
    return f"ws://127.0.0.1:{gateway.port}/ws"


class RawClient:
    """Sends frames as given and splits received text frames into JSON objects."""

    def __init__(self, url: str, *, subprotocol: str | None = "tidings.v1.json") -> None:
        self.url = url
        self.subprotocol = subprotocol
        self.ws: ClientConnection | None = None
        self.inbox: list[dict[str, Any]] = []

    async def __aenter__(self) -> RawClient:
        protocols = [self.subprotocol] if self.subprotocol else None
        self.ws = await connect(self.url, subprotocols=protocols)  # type: ignore[list-item]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def send(self, frame: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def hello(self, token: str, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "hello", "token": token, **fields})
        return await self.next("welcome")

    async def next(self, kind: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
        """The next object (of ``kind``), skipping nothing silently: others stay in the inbox."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, obj in enumerate(self.inbox):
                if kind is None or obj.get("type") == kind:
                    return self.inbox.pop(i)
            await self._read(deadline - loop.time())

    async def _read(self, timeout: float) -> None:
        assert self.ws is not None
        if timeout <= 0:
            raise TimeoutError("nothing arrived in time")
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        text = raw if isinstance(raw, str) else raw.decode()
        self.inbox.extend(orjson.loads(line) for line in text.split("\n"))

    async def notifications(self, count: int, *, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [await self.next("notification", timeout=timeout) for _ in range(count)]

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (to show that nothing else came)."""
        try:
            while True:
                await self._read(seconds)
        except (TimeoutError, ConnectionClosed):
            pass
        got, self.inbox = self.inbox, []
        return got

    async def closed(self, *, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Wait for the server to close; returns (code, reason)."""
        assert self.ws is not None
        try:
            while True:
                await self._read(timeout)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, None)
