"""What a subscriber reports besides notifications: its state, resumes, resets, lost rooms.

An application reads them from ``Subscriber.events()`` or an ``on_event`` callback to know whether
its view is complete (``Recovered``) or needs a refetch (``Reset``); ``Stats`` counts the traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum

from tidings import protocol as p

log = logging.getLogger(__name__)


class State(StrEnum):
    CONNECTING = "connecting"  # opening the socket, hello sent
    CONNECTED = "connected"  # welcome received; replay may still be arriving
    LIVE = "live"  # synced: everything up to now was delivered
    DISCONNECTED = "disconnected"  # waiting (``delay``) before the next attempt
    CLOSED = "closed"  # for good: close() or a refusal


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: State
    url: str
    attempt: int = 0
    delay: float | None = None  # DISCONNECTED: seconds until the next attempt
    close_code: int | None = None  # DISCONNECTED: why the last connection ended
    reason: str | None = None
    welcome: p.Welcome | None = None  # CONNECTED


@dataclass(frozen=True, slots=True)
class Recovered:
    """The gateway replays everything after ``since``: nothing was missed across the gap."""

    since: int
    epoch: str
    welcome: p.Welcome


@dataclass(frozen=True, slots=True)
class Reset:
    """Notifications up to ``seq`` may be missing (gap beyond the replay bound, new epoch):
    refetch history over REST; everything after ``seq`` is delivered as usual."""

    seq: int
    epoch: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoomRemoved:
    """The gateway took a room away (a refreshed token no longer allows it)."""

    room: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` frame that answered nothing in particular and did not close."""

    error: p.ErrorFrame


@dataclass(frozen=True, slots=True)
class InboxChanged:
    """The user's inbox changed on some device (an ``inbox`` frame): new counts, the ids whose
    state changed, and the muted domains when preferences changed."""

    frame: p.InboxFrame


Event = StateChanged | Recovered | Reset | RoomRemoved | ServerError | InboxChanged


@dataclass(slots=True)
class Stats:
    frames: int = 0  # server text frames received
    notifications: int = 0  # notifications accepted (queued for the iterator)
    duplicates: int = 0  # notifications dropped because their seq was already seen
    connects: int = 0  # welcomes received
    reconnects: int = 0  # drops followed by a new attempt


class EventLog:
    """The events kept for ``Subscriber.events()`` (the oldest dropped past ``limit``), each also
    handed to ``on_event``, whose failure is logged: it must not break the connection."""

    def __init__(self, limit: int, on_event: Callable[[Event], None] | None) -> None:
        self._events: deque[Event] = deque(maxlen=limit)
        self._ready = asyncio.Event()
        self._on_event = on_event
        self._ended = False

    def emit(self, event: Event) -> None:
        self._events.append(event)
        self._ready.set()
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def end(self) -> None:
        """No more events: ``follow()`` ends once it has yielded those kept."""
        self._ended = True
        self._ready.set()

    async def follow(self) -> AsyncIterator[Event]:
        while True:
            while self._events:
                yield self._events.popleft()
            if self._ended:
                return
            self._ready.clear()
            await self._ready.wait()
