"""Recent notifications per tenant, in memory: what makes most resumes free.

A window is *complete from* a sequence number: every notification of its tenant stored at or
after ``complete_from`` is in it. A resume from ``since`` is answered from memory when
``since + 1 >= complete_from``; otherwise the window is first backfilled from JetStream, once,
as far back as its bounds allow (``reached``), however many clients ask and from where. Bounded
by count and age: what falls out moves ``complete_from`` forward, and a resume from before it
gets ``recovered: false``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Final

UNARMED = 1 << 62  # complete from "never": the window cannot answer anything yet
# What an empty window holds: one shared tuple, not a deque of its own. A gateway hosting a
# tenant per user has a window per connection, most of them empty (decision 58).
_EMPTY: tuple[()] = ()


# One held notification: (seq, room, body, at, mute) — ``at`` the monotonic time it entered the
# window, ``mute`` its event domain unless critical (never muted), as in fanout.Due. A plain
# tuple, not a NamedTuple: the collector stops tracking a plain tuple of atoms at its first pass,
# while a NamedTuple stays tracked, and a busy gateway holds hundreds of thousands of entries
# that every full collection would walk (decision 60).
Entry = tuple[int, str, bytes, float, str | None]
SEQ: Final = 0
BODY: Final = 2
AT: Final = 3


def entry(seq: int, room: str, body: bytes, at: float, mute: str | None = None) -> Entry:
    """An :data:`Entry` for :meth:`Window.merge` (a backfill's notifications)."""
    return (seq, room, body, at, mute)


class Window:
    """One tenant's (or the broadcast room's) recent notifications, ordered by seq."""

    __slots__ = (
        "complete_from",
        "entries",
        "generation",
        "last_seq",
        "max_age",
        "max_count",
        "reached",
    )

    def __init__(self, *, max_count: int, max_age: float) -> None:
        self.entries: deque[Entry] | tuple[()] = _EMPTY  # a deque from the first add on
        self.complete_from = UNARMED
        self.generation = 0  # bumped by every disarm: a read begun before it is stale
        self.last_seq = 0  # complete up to here: the arm point, or the newest seq added since
        self.reached = False  # backfilled as far back as the bounds allow (since the last arm)
        self.max_count = max_count
        self.max_age = max_age

    @property
    def armed(self) -> bool:
        return self.complete_from != UNARMED

    def arm(self, last_seq: int) -> None:
        """The live subscription is active and the stream's last seq was ``last_seq``."""
        self.complete_from = min(self.complete_from, last_seq + 1)
        self.last_seq = max(self.last_seq, last_seq)

    def disarm(self) -> None:
        """Live messages may have been lost (NATS disconnect): trust nothing held so far."""
        self.entries = _EMPTY
        self.complete_from = UNARMED
        self.generation += 1
        self.last_seq = 0
        self.reached = False

    def add(
        self, seq: int, room: str, body: bytes, now: float | None = None, mute: str | None = None
    ) -> None:
        now = time.monotonic() if now is None else now
        entries = self.entries
        if isinstance(entries, tuple):
            entries = deque()
            self.entries = entries
        elif entries and seq <= entries[-1][SEQ]:
            return  # already held (a backfill got there first)
        if seq > self.last_seq:
            self.last_seq = seq
        entries.append((seq, room, body, now, mute))
        if len(entries) > self.max_count or now - entries[0][AT] > self.max_age:
            self._trim(entries, now)  # once per live message: skip the call when nothing falls out

    def _trim(self, entries: deque[Entry], now: float) -> None:
        while entries and (len(entries) > self.max_count or now - entries[0][AT] > self.max_age):
            gone = entries.popleft()
            self.complete_from = max(self.complete_from, gone[SEQ] + 1)

    def covers(self, since: int) -> bool:
        return self.armed and since + 1 >= self.complete_from

    def merge(
        self, backfill: Iterable[Entry], *, start: int, generation: int, reached: bool = False
    ) -> None:
        """Add what JetStream returned for ``[start, complete_from)``; now complete from start.
        ``reached``: the read went back as far as the bounds allow (no later read can do more).

        ``generation`` is the window's when the read began: if NATS dropped since (even if the
        window was re-armed meanwhile), live messages after the read may be lost, so the read
        must not make the window look complete.
        """
        if not self.armed or generation != self.generation:
            return
        held = {e[SEQ]: e for e in self.entries}
        for e in backfill:
            held.setdefault(e[SEQ], e)
        entries = self.entries = deque(held[s] for s in sorted(held))
        self.complete_from = min(self.complete_from, start)
        self.reached = self.reached or reached
        self._trim(entries, time.monotonic())

    def after(
        self, since: int, rooms: set[str], muted: frozenset[str] | None = None
    ) -> list[tuple[int, bytes]]:
        """Entries newer than ``since`` in any of ``rooms``, oldest first, without those of a
        ``muted`` domain (a connection's :attr:`~tidings.gateway.connection.Connection.muted`)."""
        out: list[tuple[int, bytes]] = []
        for seq, room, body, _, mute in reversed(self.entries):
            if seq <= since:
                break
            if room in rooms and (muted is None or mute is None or mute not in muted):
                out.append((seq, body))
        out.reverse()
        return out
