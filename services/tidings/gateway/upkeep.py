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
    for two intervals and has not answered the last ping sent to it is closed (1011). The
    ping's answer is what counts, not the pass's timing: a loaded gateway walks its
    connections late (each per-connection sleep ran late, so a pass over thousands stretched
    past two intervals), and a client that had answered every ping it got was closed only
    because the next ping came late. Seen in the 10,000-client storm's fill on a machine at
    load ~10: the light clients (picows, answering pings) got 1011 from 55 s on, 950 of 5,000
    in one process by 137 s, and the fill never completed; passes are now also paced on the
    clock.
    """

    name = "keepalive"

    def __init__(self, registry: Registry, *, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self._pinged: dict[Member, float] = {}  # the last ping sent to each, monotonic

    async def run(self) -> None:
        interval = self.interval
        while True:
            sessions = self.registry.members()
            pinged = self._pinged
            self._pinged = {s: pinged[s] for s in sessions if s in pinged}  # the gone dropped
            if not sessions:
                await asyncio.sleep(interval)
                continue
            step = interval / len(sessions)
            began = time.monotonic()
            for i, session in enumerate(sessions):
                now = time.monotonic()
                self.check(session, now)
                # Paced on the clock, not by one sleep per connection: a busy loop runs each
                # sleep late, and the pass would stretch with the number of connections.
                behind = began + (i + 1) * step - now
                if behind > 0:
                    await asyncio.sleep(behind)
                elif i % 256 == 255:
                    await asyncio.sleep(0)  # late: catch up, but let the rest run

    def check(self, session: Member, now: float) -> None:
        if session.conn.state not in (State.LIVE, State.SYNCING):
            return
        last_ping = self._pinged.get(session)
        unanswered = last_ping is not None and session.seen < last_ping
        if unanswered and now - session.seen > 2 * self.interval:
            self._pinged.pop(session, None)
            session.close(int(CloseCode.INTERNAL_ERROR), "keepalive ping timeout")
        else:
            self._pinged[session] = now
            session.ping()
