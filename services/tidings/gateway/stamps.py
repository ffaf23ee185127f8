"""The stored time of a stream message (its ``Nats-Time-Stamp``) as POSIX seconds."""

from __future__ import annotations

import time
from datetime import datetime

_second_of: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM:SS" -> POSIX seconds (few in use at once)


def stored_at(stamp: str) -> float | None:
    """POSIX time of a ``Nats-Time-Stamp`` (RFC 3339, UTC, ns precision); None if unreadable.

    The whole seconds are parsed once per second of stamps, not once per message.
    """
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        second = _second_of.get(head)
        if second is None:
            second = datetime.fromisoformat(head + "+00:00").timestamp()
            if len(_second_of) >= 64:
                _second_of.clear()
            _second_of[head] = second
        return second + float(f"0.{frac or 0}")
    except ValueError:
        return None


def lag(stamp: str) -> float:
    """Seconds from the stream's timestamp to now (0 when the stamp is unreadable)."""
    stored = stored_at(stamp)
    return 0.0 if stored is None else max(0.0, time.time() - stored)
