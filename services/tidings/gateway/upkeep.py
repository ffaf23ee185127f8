"""The gateway's upkeep loops: token expiry and keepalive, one loop each for all connections.

Both are supervised parts (``name``, ``run``); they see connections only through the registry.
"""

from __future__ import annotations

import asyncio
import heapq
import time

from tidings.codes import CloseCode, ErrorCode
from tidings.gateway.connection import Connection, State
from tidings.gateway.registry import Member, Registry


class Expiry:
    """Closes connections whose token expired without a refresh (4401); one heap, one timer."""

    name = "expiry"

    def __init__(self, registry: Registry, *, every: float = 0.5) -> None:
        self.registry = registry
        self.every = every
        self._heap: list[tuple[float, int, Connection]] = []
        self._n = 0

    def watch(self, conn: Connection) -> None:
        if conn.expires_at is not None:
            self._n += 1
            heapq.heappush(self._heap, (conn.expires_at, self._n, conn))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.step(time.time())

    def step(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            at, _, conn = heapq.heappop(self._heap)
            session = self.registry.sessions.get(conn)
            if session is not None and conn.expires_at == at:
                session.refuse(ErrorCode.TOKEN_EXPIRED)


class Keepalive:
    """Pings every connection from one loop, spread over the interval (no task per connection).

    Any frame from a client counts as a sign of life (``Session.seen``); one that stayed silent
    for two intervals — no pong to two pings — is closed (1011).
    """

    name = "keepalive"

    def __init__(self, registry: Registry, *, interval: float) -> None:
        self.registry = registry
        self.interval = interval

    async def run(self) -> None:
        interval = self.interval
        while True:
            sessions = self.registry.members()
            if not sessions:
                await asyncio.sleep(interval)
                continue
            step = interval / len(sessions)
            for session in sessions:
                self.check(session, time.monotonic())
                await asyncio.sleep(step)

    def check(self, session: Member, now: float) -> None:
        if session.conn.state not in (State.LIVE, State.SYNCING):
            return
        if now - session.seen > 2 * self.interval:
            session.close(int(CloseCode.INTERNAL_ERROR), "keepalive ping timeout")
        else:
            session.ping()
