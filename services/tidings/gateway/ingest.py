"""What the stream holds is input too: each message is checked once before any client sees it.

A service may publish to JetStream directly (docs/publisher.md), so a stored message may be
anything: no envelope, an audience kind this gateway does not know (stored, and never
deliverable), a tenant or audience that is not its subject's (delivered by the subject before:
a cross-tenant write), ``data`` that is not a JSON object (every client of the tenant got a line
it could not parse). Such a message is dropped, counted by reason and logged, and the others
around it are delivered (issue 14 item 6). The check runs once per message, live or read back,
never once per connection.

The log line names the subject and the sequence, never the content, and comes at most once per
:data:`LOG_EVERY` seconds per reason (a producer gone wrong must not flood the log): the lines
skipped meanwhile are counted in the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tidings.envelope import Rejected, WireNotification, decode_wire
from tidings.protocol import encode_notification
from tidings.subjects import room_of

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two log lines of one reason

# Labels of tidings_gateway_dropped_messages_total, all exported from the start (at 0).
REASONS = ("subject", "sequence", "envelope", "audience", "mismatch", "data", "other")


def wire_line(subject: str, payload: bytes, seq: int) -> tuple[str, str, WireNotification, bytes]:
    """(tenant, room, notification, encoded line) of a stored message, live or read back;
    raises :class:`Rejected` on anything that must not be delivered."""
    route = room_of(subject)
    if route is None:
        raise Rejected("subject", "not a notification subject")
    n = decode_wire(payload, route)
    return route[0], route[1], n, encode_notification(n, seq, route[1])


class Drops:
    """Dropped messages by reason, with a rate-limited log line per reason."""

    def __init__(
        self, *, log_every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.counts = dict.fromkeys(REASONS, 0)
        self._log_every = log_every
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def drop(self, reason: str, *, subject: str, seq: int | None, why: str, path: str) -> None:
        """Count one dropped message; log it unless this reason was logged less than
        ``log_every`` seconds ago. ``path`` says where it was read (``live`` or ``replay``)."""
        if reason not in self.counts:
            reason = "other"
        self.counts[reason] += 1
        now = self._clock()
        last = self._logged_at.get(reason)
        if last is not None and now - last < self._log_every:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._logged_at[reason] = now
        skipped = self._unlogged.pop(reason, 0)
        log.warning(
            "dropped a stored message: %s",
            why,
            extra={
                "reason": reason,
                "subject": subject,
                "seq": seq,
                "path": path,
                "not_logged_since": skipped,
            },
        )
