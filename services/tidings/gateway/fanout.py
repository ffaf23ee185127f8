"""The hot path: rooms, their members, and one pre-built frame per room per batch.

Each live notification is encoded once (by the caller) and queued here. Within the batching
window (default 2 ms) everything due is flushed: for every run of consecutive notifications of
one room, one WebSocket frame holding them as newline-delimited JSON is built and the same bytes
are written to every member. Runs are cut per tenant and at broadcasts so that every
connection, whatever rooms it is in, sees notifications in stream order.

A connection whose user muted event domains (the inbox's preferences) gets its own frame
without them; every other connection pays one attribute check for it, so the shared frame
stays the common case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import NamedTuple

from tidings.errors import SlowConsumer
from tidings.gateway.connection import Connection
from tidings.gateway.frames import MAX_PAYLOAD, cuts, frame_buffer
from tidings.gateway.presence import Presence
from tidings.subjects import BROADCAST_TENANT

RoomKey = tuple[str, str]  # (tenant, room name as clients write it)


class Due(NamedTuple):
    seq: int
    tenant: str
    room: str
    body: bytes
    mute: str | None = None  # the event domain a user may mute; None for critical (never)


def mute_key(event: str, critical: bool) -> str | None:
    """What a user mutes a notification by: its event domain; a critical one never is."""
    return None if critical else event.partition(".")[0]


def _by_seq(d: Due) -> int:
    return d.seq


class Hub:
    """Room membership and batched fan-out for one gateway process."""

    def __init__(
        self,
        *,
        window: float,
        on_slow: Callable[[Connection], None],
        on_tenant_added: Callable[[str], None] = lambda t: None,
        on_tenant_removed: Callable[[str], None] = lambda t: None,
        presence: Presence | None = None,
    ) -> None:
        self.window = window
        # Connections per tenant and user (the admin API's presence), counted here: add and
        # remove are the one place a connection enters and leaves, once each.
        self.presence = presence if presence is not None else Presence()
        self.rooms: dict[RoomKey, dict[Connection, None]] = {}
        self.tenants: dict[str, int] = {}  # connections per tenant
        self._due: list[Due] = []
        self._flush_handle: asyncio.Handle | None = None
        self._on_slow = on_slow
        self._on_tenant_added = on_tenant_added
        self._on_tenant_removed = on_tenant_removed
        self.deliveries = 0  # notifications x receiving connections, for metrics
        self.frames = 0
        self.muted = 0  # notifications x connections not sent because that user muted them

    def on_interest(self, added: Callable[[str], None], removed: Callable[[str], None]) -> None:
        """Who follows tenant interest (the live subscriptions): told of a tenant's first
        connection here and of its last one leaving."""
        self._on_tenant_added = added
        self._on_tenant_removed = removed

    # -- membership ------------------------------------------------------------------------

    def add(self, conn: Connection, rooms: Iterable[str]) -> None:
        """Register a connection of ``conn.tenant`` in ``rooms`` (plus broadcast)."""
        count = self.tenants.get(conn.tenant, 0)
        self.tenants[conn.tenant] = count + 1
        self.presence.joined(conn.tenant, conn.user)
        if count == 0:
            self._on_tenant_added(conn.tenant)
        self.join(conn, "broadcast")
        for room in rooms:
            self.join(conn, room)

    def join(self, conn: Connection, room: str) -> None:
        tenant = BROADCAST_TENANT if room == "broadcast" else conn.tenant
        self.rooms.setdefault((tenant, room), {})[conn] = None
        conn.rooms.add(room)

    def leave(self, conn: Connection, room: str) -> None:
        tenant = BROADCAST_TENANT if room == "broadcast" else conn.tenant
        members = self.rooms.get((tenant, room))
        if members is not None:
            members.pop(conn, None)
            if not members:
                del self.rooms[(tenant, room)]
        conn.rooms.discard(room)

    def remove(self, conn: Connection) -> None:
        """Forget a connection entirely (idempotent)."""
        if conn.tenant not in self.tenants or not conn.rooms:
            return
        for room in list(conn.rooms):
            self.leave(conn, room)
        self.presence.left(conn.tenant, conn.user)
        left = self.tenants[conn.tenant] - 1
        if left:
            self.tenants[conn.tenant] = left
        else:
            del self.tenants[conn.tenant]
            self._on_tenant_removed(conn.tenant)

    def connections(self) -> Iterable[Connection]:
        return list(self.rooms.get((BROADCAST_TENANT, "broadcast"), {}))

    def tenant_connections(self, tenant: str) -> list[Connection]:
        return [c for c in self.connections() if c.tenant == tenant]

    # -- fan-out ---------------------------------------------------------------------------

    def publish(
        self, seq: int, tenant: str, room: str, body: bytes, mute: str | None = None
    ) -> None:
        """Queue one encoded notification; it goes out within the batching window."""
        self._due.append(Due(seq, tenant, room, body, mute))
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand, without an event loop: write at once
            self.flush()
            return
        if self.window > 0:
            self._flush_handle = loop.call_later(self.window, self.flush)
        else:
            # Not at once even then: the other subscriptions' callbacks of this loop turn may
            # hold older notifications (see flush), so write after them.
            self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything due, in stream order per connection."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # a no-op when it is the timer calling
            self._flush_handle = None
        due, self._due = self._due, []
        # nats-py runs each subscription's callback in its own task, so a tenant's messages and
        # broadcasts read in one go can be queued out of stream order: restore it (nearly sorted,
        # so this costs a linear pass).
        due.sort(key=_by_seq)
        by_tenant: dict[str, list[Due]] = {}
        for d in due:
            if d.tenant == BROADCAST_TENANT:
                self._write_tenants(by_tenant)  # a broadcast is a barrier for every tenant
                by_tenant = {}
                self._write_run((BROADCAST_TENANT, d.room), [d])
            else:
                by_tenant.setdefault(d.tenant, []).append(d)
        self._write_tenants(by_tenant)

    def _write_tenants(self, by_tenant: dict[str, list[Due]]) -> None:
        single = self.window <= 0  # batching off: one notification per frame
        for tenant, items in by_tenant.items():
            start = 0
            for i in range(1, len(items) + 1):
                if i == len(items) or single or items[i].room != items[start].room:
                    self._write_run((tenant, items[start].room), items[start:i])
                    start = i

    def _write_run(self, key: RoomKey, run: list[Due]) -> None:
        members = self.rooms.get(key)
        if not members:
            return
        if len(run) == 1:  # the common case once rooms are many: one notification per frame
            d = run[0]
            payload, items = d.body, [(d.seq, d.body)]
        elif sum(len(d.body) for d in run) + len(run) > MAX_PAYLOAD:
            for start, end in cuts([len(d.body) for d in run]):
                self._write_run(key, run[start:end])
            return
        else:
            payload, items = b"\n".join([d.body for d in run]), [(d.seq, d.body) for d in run]
        frame = frame_buffer(payload)
        slow: list[Connection] = []
        skipped = 0
        domains: set[str | None] | None = None  # the run's, once a member mutes something
        for conn in members:
            try:
                muted = conn.muted
                if muted is None:
                    conn.deliver(frame, items)
                else:
                    if domains is None:
                        domains = {d.mute for d in run}
                    if muted.isdisjoint(domains):
                        conn.deliver(frame, items)
                    else:
                        skipped += self._deliver_unmuted(conn, run, muted)
            except SlowConsumer:
                slow.append(conn)
        self.frames += 1
        self.deliveries += len(run) * (len(members) - len(slow)) - skipped
        self.muted += skipped
        for conn in slow:
            self._on_slow(conn)

    @staticmethod
    def _deliver_unmuted(conn: Connection, run: list[Due], muted: frozenset[str]) -> int:
        """``conn`` gets the run without what its user muted, in a frame of its own; how many
        were left out. Its ``last_seq`` moves only over what it was sent, and a resume never
        replays the others (the windows filter the same way)."""
        kept = [d for d in run if d.mute is None or d.mute not in muted]
        if kept:
            conn.deliver(
                frame_buffer(b"\n".join([d.body for d in kept])), [(d.seq, d.body) for d in kept]
            )
        return len(run) - len(kept)
