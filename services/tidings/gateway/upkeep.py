"""The gateway's upkeep loops: token expiry and keepalive, one loop each for all connections.

Both are supervised parts (``name``, ``run``); they see connections only through the registry.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any

from tidings.codes import CloseCode, ErrorCode
from tidings.gateway.connection import Connection, State
from tidings.gateway.registry import Member, Registry

# A heap entry: [expires_at, order, connection or None once forgotten]. The order is unique,
# so entries never compare their connections.
_Entry = list[Any]


class Expiry:
    """Closes connections whose token expired without a refresh (4401); one heap, one timer.

    A closed or refreshed connection's entry is forgotten at once (marked, and the heap rebuilt
    when most of it is forgotten), so memory follows the open connections, not every token
    ever seen: churn with long-lived tokens would otherwise grow the heap without bound.
    """

    name = "expiry"

    def __init__(self, registry: Registry, *, every: float = 0.5) -> None:
        self.registry = registry
        self.every = every
        self._heap: list[_Entry] = []
        self._entries: dict[Connection, _Entry] = {}
        self._forgotten = 0
        self._n = 0

    def __len__(self) -> int:
        """Connections watched (open ones with an expiry)."""
        return len(self._entries)

    @property
    def heap_size(self) -> int:
        return len(self._heap)

    def watch(self, conn: Connection) -> None:
        """Watch ``conn`` until its ``expires_at`` (a refresh replaces the previous entry)."""
        self.forget(conn)
        if conn.expires_at is not None:
            self._n += 1
            entry: _Entry = [conn.expires_at, self._n, conn]
            self._entries[conn] = entry
            heapq.heappush(self._heap, entry)

    def forget(self, conn: Connection) -> None:
        entry = self._entries.pop(conn, None)
        if entry is None:
            return
        entry[2] = None
        self._forgotten += 1
        if self._forgotten > 64 and 2 * self._forgotten > len(self._heap):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._forgotten = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.step(time.time())

    def step(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, conn = heapq.heappop(self._heap)
            if conn is None:
                self._forgotten -= 1
                continue
            del self._entries[conn]
            session = self.registry.sessions.get(conn)
            if session is not None:
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
