"""The hot path: rooms, their members, and one write per connection per batch.

Each live notification is encoded once (by the caller) and queued here. Within the batching
window (default 2 ms) everything due is flushed, **coalesced per connection, not per room**:
every room with news gets one WebSocket frame holding its notifications as newline-delimited
JSON, and the same bytes are written to each member that has nothing else due; a connection
with news from several rooms (its user room and its tenant's, or any room and a broadcast) gets
them merged in stream order into one frame of its own. Either way a connection gets one write
per flush, in stream order (``seq``), whatever rooms it is in.

Flushes are spaced by what they cost: after one ends, the next is not due before
``FLUSH_SPACING`` times its cost has passed, so the writes (one socket send each, the dearest
part of the path on loopback) take at most a third of the loop from the ingest, and under load
each write carries more — the way nats-server's per-client flusher batches without a fixed
window. A notification arriving after that spacing goes out at once (at the end of the loop
turn): after a quiet spell or a cheap flush (one user's notification, a small room) the latency
is the network's, not the window's. One arriving within it waits for the rest of it, at most
``window`` after a flush on time, at most ``window_max`` after a late one (the loop was busy
when its timer was due: it has more to do than write; its cost is then read as CPU time).

A connection whose user muted event domains (the inbox's preferences) gets its own frame
without them; every other connection pays one attribute check for it, so the shared frame
stays the common case. A connection that cannot keep up is reported (:class:`SlowConsumer`,
``on_slow``) after the others got theirs; no frame exceeds ``MAX_PAYLOAD``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Final

from tidings.errors import SlowConsumer
from tidings.gateway.connection import Connection, State
from tidings.gateway.frames import MAX_PAYLOAD, cuts, frame_buffer
from tidings.gateway.presence import Presence
from tidings.subjects import BROADCAST_TENANT

# After a late flush, the next waits at least this many times the flush's own cost: the writes
# take at most a third of a busy loop (decisions: the write path).
FLUSH_SPACING = 2.0
# An event loop's timer resolution: uvloop (the gateway's loop) keeps timers in whole
# milliseconds — it runs a delay under 0.5 ms at once and rounds a longer one to 1 ms or more,
# and its clock (``loop.time()``) moves in milliseconds too. A flush due sooner than this goes at
# the end of the loop turn instead (it takes everything that turn read), and the hub keeps its
# own times on ``time.monotonic()``.
TICK = 0.001
# A flush this much behind its time found the loop busy with other work (the ingest): beyond
# what a timer of TICK resolution may overshoot by.
LATE = 2 * TICK

RoomKey = tuple[str, str]  # (tenant, room name as clients write it)


# One queued notification: (seq, tenant, room, body, mute) — mute is the event domain a user may
# mute, None for a critical one (never). A plain tuple: built once per notification, read by index.
Due = tuple[int, str, str, bytes, str | None]
SEQ: Final = 0
TENANT: Final = 1
ROOM: Final = 2
BODY: Final = 3
MUTE: Final = 4


def mute_key(event: str, critical: bool) -> str | None:
    """What a user mutes a notification by: its event domain; a critical one never is."""
    return None if critical else event.partition(".")[0]


_by_seq = itemgetter(SEQ)
_room_of = itemgetter(TENANT, ROOM)  # a Due's RoomKey
_LIVE = State.LIVE


class Hub:
    """Room membership and batched fan-out for one gateway process."""

    def __init__(
        self,
        *,
        window: float,
        window_max: float | None = None,
        on_slow: Callable[[Connection], None],
        on_tenant_added: Callable[[str], None] = lambda t: None,
        on_tenant_removed: Callable[[str], None] = lambda t: None,
        presence: Presence | None = None,
    ) -> None:
        self.window = window
        # How long the spacing after a costly flush may stretch the window (default: never).
        self.window_max = window if window_max is None else max(window, window_max)
        # Monotonic time before which the next flush is not due: FLUSH_SPACING times the last
        # flush's cost after it ended (its spacing), and how far that spacing may reach from a
        # publish: the window after a flush on time, window_max after a late one.
        self._not_before = 0.0
        self._reach = window
        self._due_at = 0.0  # monotonic time the pending flush was scheduled for
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
        self._due.append((seq, tenant, room, body, mute))
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand, without an event loop: write at once
            self.flush()
            return
        # While the last flush's writes still owe the loop their share (its spacing), wait for
        # the rest of it: under load flushes space out and each write carries more; after a
        # quiet spell, or a cheap flush, at once (see the docstring).
        now = time.monotonic()
        delay = min(self._reach, self._not_before - now)
        if delay >= TICK:
            self._due_at = now + delay
            self._flush_handle = loop.call_later(delay, self.flush)
        else:
            # Sooner than a timer can: at the end of this loop turn (not at once: the rest of
            # what this turn read, and other subscriptions' callbacks, may hold more for the
            # same connections, even older notifications — see flush).
            self._due_at = now
            self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything due: one write per connection, in stream order."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # a no-op when it is the timer calling
            self._flush_handle = None
        due, self._due = self._due, []
        if not due:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand: no timer, no spacing
            loop = None
        # Called by its timer (or by hand, earlier: never late) behind time: the loop is busy.
        late = loop is not None and time.monotonic() - self._due_at > LATE
        # A late flush's cost is CPU time (a gateway descheduled meanwhile is not "costly"); one
        # on time takes the wall clock, a fifth of the price per call.
        clock = time.thread_time if late else time.perf_counter
        began = clock()
        if len(due) == 1:  # the common case at a low rate: one notification, one room
            d = due[0]
            members = self.rooms.get(_room_of(d))
            if members:
                self._write_group(members, due, None)
        else:
            self._write_all(due)
        cost = clock() - began
        if loop is not None:
            self._not_before = time.monotonic() + FLUSH_SPACING * cost
            self._reach = self.window_max if late else self.window

    def _write_all(self, due: list[Due]) -> None:
        """Several notifications: grouped by room, each room's run in stream order."""
        # nats-py runs each subscription's callback in its own task, so a tenant's messages and
        # broadcasts read in one go can be queued out of stream order: restore it (nearly sorted,
        # so this costs a linear pass).
        due.sort(key=_by_seq)
        groups: dict[RoomKey, list[Due]] = {}
        for d in due:
            key = _room_of(d)
            run = groups.get(key)
            if run is None:
                groups[key] = [d]
            else:
                run.append(d)
        rooms = self.rooms
        targets = [(m, run) for key, run in groups.items() if (m := rooms.get(key))]
        if len(targets) == 1:
            self._write_group(*targets[0], None)
        elif targets:
            self._write_groups(targets)

    def _write_groups(self, targets: list[tuple[dict[Connection, None], list[Due]]]) -> None:
        """Several rooms had news: a connection in one of them gets that room's shared frame;
        one in several (a user room and its tenant's, or any room and a broadcast) gets them
        merged in stream order into one frame of its own: one write either way."""
        seen: set[Connection] = set()
        total = 0
        for members, _ in targets:
            seen.update(members)
            total += len(members)
        if len(seen) == total:  # nobody is in two of them: every room's frame is shared
            for members, run in targets:
                self._write_group(members, run, None)
            return
        seen.clear()
        several: set[Connection] = set()
        for members, _ in targets:
            if seen:
                several.update(seen.intersection(members))
            seen.update(members)
        merged: dict[Connection, list[Due]] = {}
        for members, run in targets:
            for conn in several.intersection(members):
                held = merged.get(conn)
                if held is None:
                    merged[conn] = list(run)
                else:
                    held += run
            self._write_group(members, run, several)
        slow: list[Connection] = []
        for conn, items in merged.items():
            items.sort(key=_by_seq)
            try:
                muted = conn.muted
                skipped = 0 if muted is None else self._deliver_unmuted(conn, items, muted)
                if muted is None:
                    self._deliver_own(conn, items)
            except SlowConsumer:
                slow.append(conn)
                continue
            self.deliveries += len(items) - skipped
            self.muted += skipped
        for conn in slow:
            self._on_slow(conn)

    def _write_group(
        self, members: dict[Connection, None], run: list[Due], skip: set[Connection] | None
    ) -> None:
        """One room's news as one frame, the same bytes written to every member (but those in
        ``skip``, written on their own)."""
        if len(run) == 1:  # the common case once rooms are many: one notification per frame
            frame = frame_buffer(run[0][BODY])
        elif sum(len(d[BODY]) for d in run) + len(run) > MAX_PAYLOAD:
            for start, end in cuts([len(d[BODY]) for d in run], MAX_PAYLOAD):
                self._write_group(members, run[start:end], skip)
            return
        else:
            frame = frame_buffer(b"\n".join([d[BODY] for d in run]))
        last = run[-1][SEQ]
        items: list[tuple[int, bytes]] | None = None  # (seq, line) pairs, for deliver: lazily
        slow: list[Connection] = []
        skipped = 0
        sent = len(members)
        domains: set[str | None] | None = None  # the run's, once a member mutes something
        for conn in members:
            # The common case inline: a live connection muting nothing takes the shared frame.
            if conn.state is _LIVE and conn.muted is None:
                if skip is not None and conn in skip:
                    sent -= 1
                    continue
                # A client that stops reading is noticed by its sink (the transport's
                # high-water mark, `Session.pause_writing`), not by a check per write here.
                conn.sink.write_frame(frame)
                conn.last_seq = last
                continue
            if skip is not None and conn in skip:
                sent -= 1
                continue
            if items is None:
                items = [(d[SEQ], d[BODY]) for d in run]
            try:
                muted = conn.muted
                if muted is None:
                    conn.deliver(frame, items)
                else:
                    if domains is None:
                        domains = {d[MUTE] for d in run}
                    if muted.isdisjoint(domains):
                        conn.deliver(frame, items)
                    else:
                        skipped += self._deliver_unmuted(conn, run, muted)
            except SlowConsumer:
                slow.append(conn)
        self.frames += 1
        self.deliveries += len(run) * (sent - len(slow)) - skipped
        self.muted += skipped
        for conn in slow:
            self._on_slow(conn)

    def _deliver_own(self, conn: Connection, items: list[Due]) -> None:
        """``items`` (in stream order) in frames of ``conn``'s own, as few as MAX_PAYLOAD allows."""
        for start, end in cuts([len(d[BODY]) for d in items], MAX_PAYLOAD):
            part = items[start:end]
            conn.deliver(
                frame_buffer(b"\n".join([d[BODY] for d in part])),
                [(d[SEQ], d[BODY]) for d in part],
            )
            self.frames += 1

    def _deliver_unmuted(self, conn: Connection, run: list[Due], muted: frozenset[str]) -> int:
        """``conn`` gets the run without what its user muted, in frames of its own; how many
        were left out. Its ``last_seq`` moves only over what it was sent, and a resume never
        replays the others (the windows filter the same way)."""
        kept = [d for d in run if d[MUTE] is None or d[MUTE] not in muted]
        if kept:
            self._deliver_own(conn, kept)
        return len(run) - len(kept)
