"""The gateway's open sessions and process flags: what its parts share instead of the gateway.

Sessions add and remove themselves; the routes, the upkeep loops, the resume step, the metrics
and the drain read it. It imports nothing above the connection, so every part can be built (and
tested) with a registry alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from tidings.auth import Claims
from tidings.codes import CloseCode, ErrorCode
from tidings.gateway.connection import Connection
from tidings.gateway.presence import Presence


class Member(Protocol):
    """What the gateway's parts need of a session (:class:`tidings.gateway.session.Session`)."""

    conn: Connection
    claims: Claims | None
    seen: float  # monotonic time of the last frame from the client

    def ping(self) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def refuse(
        self, error: ErrorCode | BaseException, *, code: CloseCode | None = None
    ) -> None: ...

    def cut(self) -> None: ...


class Registry:
    """Open sessions by connection, the accepted count, and the gateway's flags."""

    def __init__(self) -> None:
        self.sessions: dict[Connection, Member] = {}
        self.accepted = 0  # WebSocket connections accepted so far
        self.draining = False
        self.stopping = False
        self.nats_connected = False
        # Healed: every hosted tenant re-armed after the current connection came up, so what
        # the gateway holds and delivers is complete; False from a NATS loss until the heal.
        self.healed = False
        self.heal_changed = asyncio.Event()  # set (and replaced) whenever `healed` changes
        self.lost_at: float | None = None  # monotonic time of the NATS loss not healed yet
        self.generation = 0  # bumped on every NATS loss: a resume begun before it is stale
        self.drained = asyncio.Event()  # set when the last session ends draining/stopping
        self.presence = Presence()  # connections per tenant and user (the hub counts them)

    def set_healed(self, healed: bool, *, now: float | None = None) -> None:
        """Record the heal state (``now``: when it was lost); wake whoever waits on it."""
        if not healed and self.lost_at is None:
            self.lost_at = time.monotonic() if now is None else now
        if healed:
            self.lost_at = None
        if healed != self.healed:
            self.healed = healed
            changed, self.heal_changed = self.heal_changed, asyncio.Event()
            changed.set()

    async def wait_healed(self, timeout: float) -> bool:
        """Until the gateway is healed (True), or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while not self.healed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heal_changed.wait(), left)
        return True

    def add(self, member: Member) -> None:
        self.sessions[member.conn] = member
        self.accepted += 1

    def remove(self, conn: Connection) -> None:
        self.sessions.pop(conn, None)
        if (self.draining or self.stopping) and not self.sessions:
            self.drained.set()

    def members(self) -> list[Member]:
        """A snapshot, safe to walk while sessions come and go."""
        return list(self.sessions.values())
