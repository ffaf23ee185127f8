"""One browser connection: its identity, rooms, lifecycle state and outbound path.

Kept small (``__slots__``, no task of its own for sending) because a gateway holds tens of
thousands of them; the fan-out writes pre-built frames straight to its ``sink``.
"""

from __future__ import annotations

import itertools
from enum import Enum
from typing import Protocol

from tidings.errors import IllegalTransition, SlowConsumer
from tidings.gateway.frames import cuts, frame_buffer


class Sink(Protocol):
    """Where a connection's bytes go: a WebSocket transport that takes pre-built frames
    (:func:`tidings.gateway.frames.frame_buffer`)."""

    def write_frame(self, frame: bytearray) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class _Gone:
    """The sink of a connection whose socket is gone: writes go nowhere."""

    __slots__ = ()

    def write_frame(self, frame: bytearray) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        pass


GONE: Sink = _Gone()


class State(Enum):
    HANDSHAKING = "handshaking"  # waiting for hello
    SYNCING = "syncing"  # in its rooms, live frames buffered while replay runs
    LIVE = "live"  # frames written as they come
    DRAINING = "draining"  # told to reconnect elsewhere
    CLOSED = "closed"


_NEXT = {
    State.HANDSHAKING: {State.SYNCING, State.DRAINING, State.CLOSED},
    State.SYNCING: {State.LIVE, State.DRAINING, State.CLOSED},
    State.LIVE: {State.SYNCING, State.DRAINING, State.CLOSED},
    State.DRAINING: {State.CLOSED},
    State.CLOSED: set(),
}


_ids = itertools.count(1)
# Notifications held for one connection while it syncs (a resume or a heal that takes long);
# beyond this it is closed as a slow consumer and resumes later, instead of growing without end.
MAX_PENDING = 20_000


class Connection:
    """A connection's state; the hub owns the rooms, this owns what reaches the socket."""

    __slots__ = (
        "expires_at",
        "id",
        "last_seq",
        "muted",
        "pending",
        "rooms",
        "sink",
        "state",
        "tenant",
        "user",
    )

    def __init__(self, sink: Sink) -> None:
        self.id = f"c{next(_ids)}"
        self.sink = sink
        self.state = State.HANDSHAKING
        self.tenant = ""
        self.user = ""
        self.rooms: set[str] = set()
        self.last_seq = 0  # last seq written to the socket (or replayed)
        self.pending: list[tuple[int, bytes]] = []  # buffered while SYNCING
        self.expires_at: float | None = None
        # Event domains its user muted in-app (the inbox's preferences); None: nothing muted,
        # and the fan-out pays one check for it (gateway/fanout.py).
        self.muted: frozenset[str] | None = None

    def move(self, new: State) -> None:
        """Change state; an illegal transition is a bug and raises at once."""
        if new is self.state:
            return
        if new not in _NEXT[self.state]:
            raise IllegalTransition(f"{self.id}: {self.state.value} -> {new.value}")
        self.state = new
        if new is State.CLOSED:
            self.pending = []

    def deliver(self, frame: bytearray, items: list[tuple[int, bytes]]) -> None:
        """Hot path: write a shared frame when live, keep the items when syncing."""
        state = self.state
        if state is State.LIVE:
            # A client that stops reading is noticed by its sink (the transport's high-water
            # mark, `Session.pause_writing`), not by a check per write here.
            self.sink.write_frame(frame)
            self.last_seq = items[-1][0]
        elif state is State.SYNCING:
            self.pending.extend(items)
            if len(self.pending) > MAX_PENDING:
                raise SlowConsumer(f"{self.id}: more than {MAX_PENDING} held while syncing")

    def write_items(self, items: list[tuple[int, bytes]]) -> None:
        """Write items not shared with others (replay, buffer flush), skipping seen seqs."""
        fresh = [body for seq, body in items if seq > self.last_seq]
        if not fresh:
            return
        for start, end in cuts([len(body) for body in fresh]):
            self.sink.write_frame(frame_buffer(b"\n".join(fresh[start:end])))
        self.last_seq = items[-1][0]

    def write_control(self, body: bytes) -> None:
        """A frame of its own (welcome, error, reset, reconnect)."""
        if self.state is not State.CLOSED:
            self.sink.write_frame(frame_buffer(body))
