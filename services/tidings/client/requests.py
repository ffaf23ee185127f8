"""Requests on one subscriber awaiting the gateway's answer, matched by ``id``.

A request sent on a connection that drops is failed with ``ConnectionLost`` so the caller can
send it again on the next connection; an ``error`` frame answering it becomes ``RequestRefused``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tidings import protocol as p
from tidings.client.errors import ConnectionLost, gateway_error


class Requests:
    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[p.ServerFrame]] = {}
        self._next_id = 0

    async def send(
        self, ws: ClientConnection, build: Callable[[int], p.ClientFrame]
    ) -> p.ServerFrame:
        """Send the frame ``build(id)`` makes and wait for its answer."""
        self._next_id = self._next_id % p.MAX_SAFE_INTEGER + 1
        request_id = self._next_id
        reply: asyncio.Future[p.ServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            try:
                await ws.send(p.encode_client_frame(build(request_id)))
            except ConnectionClosed:
                raise ConnectionLost("the connection dropped") from None
            return await reply
        finally:
            self._pending.pop(request_id, None)

    def answer(self, request_id: int | None, frame: p.ServerFrame) -> bool:
        """Hand ``frame`` to the request it answers; False when it answers none."""
        reply = self._pending.get(request_id) if request_id is not None else None
        if reply is None:
            return False
        if not reply.done():
            if isinstance(frame, p.ErrorFrame):
                reply.set_exception(gateway_error(frame))
            else:
                reply.set_result(frame)
        return True

    def lost(self) -> None:
        """The connection dropped: every request still waiting fails with ``ConnectionLost``."""
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(ConnectionLost("the connection dropped"))
