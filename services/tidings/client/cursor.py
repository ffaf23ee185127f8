"""Where a subscriber stands in the stream: the resume point, the duplicate bar, owed resets.

Kept apart from the socket so the resume rules read (and test) alone: a ``welcome`` with another
epoch starts the count again, one without ``recovered`` moves the point to its ``seq``, and a
gateway that did not replay what was asked for owes a ``reset`` before ``synced``.
"""

from __future__ import annotations

from tidings import protocol as p
from tidings.client.subscriber_events import Recovered, Reset


class Cursor:
    def __init__(self, since: int | None, epoch: str | None) -> None:
        self.epoch = epoch
        self.received = since  # the last seq accepted: the resume point and the duplicate bar
        self._sent_since: int | None = None
        self._expect_reset = False

    def hello(self) -> tuple[int | None, str | None]:
        """``(since, epoch)`` for the next ``hello``: resume when there is a point to resume at."""
        since = self.received if self.epoch is not None else None
        self._sent_since, self._expect_reset = since, False
        return since, self.epoch if since is not None else None

    def accept(self, seq: int) -> bool:
        """False for a seq already seen (a replay overlapping what arrived live)."""
        if self.received is not None and seq <= self.received:
            return False
        self.received = seq
        return True

    def welcomed(self, welcome: p.Welcome) -> Recovered | None:
        """Take the welcome's position; ``Recovered`` when the gateway replays the whole gap."""
        since = self._sent_since
        if welcome.epoch != self.epoch:
            self.epoch = welcome.epoch
            self.received = None  # another stream: old sequence numbers mean nothing in it
        if not welcome.recovered:
            # From here on every notification for our rooms arrives (a reset, if any, follows).
            self.received = max(self.received or 0, welcome.seq)
        self._expect_reset = since is not None and not welcome.recovered
        if welcome.recovered and since is not None:
            return Recovered(since=since, epoch=welcome.epoch, welcome=welcome)
        return None

    def synced(self, seq: int) -> Reset | None:
        """Everything up to ``seq`` was sent; the reset a gateway owed and did not send."""
        owed = None
        if self._expect_reset:
            owed = self.reset(p.Reset(seq=seq, epoch=self.epoch or "", reason="unknown"))
        self.received = max(self.received or 0, seq)  # a quiet connection's point moves on too
        return owed

    def reset(self, reset: p.Reset) -> Reset:
        self._expect_reset = False
        if reset.reason == p.ResetReason.OUT_OF_RANGE and self._sent_since is not None:
            # Also a point beyond the stream's end (forged or from a corrupted store): the
            # gateway's seq replaces it, or every notification up to it would be skipped.
            self._sent_since = None
            self.epoch = reset.epoch or self.epoch
            self.received = reset.seq
        elif reset.epoch and reset.epoch != self.epoch:
            self.epoch = reset.epoch
            self.received = reset.seq
        else:
            self.received = max(self.received or 0, reset.seq)
        return Reset(seq=reset.seq, epoch=reset.epoch, reason=reset.reason)
