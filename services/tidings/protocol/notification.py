"""The ``notification`` line, built once per gateway and written to every member: the hot path.

Written by hand rather than from :class:`~tidings.protocol.server_frames.NotificationFrame`'s
fields: the payload goes in as an ``orjson.Fragment`` (never parsed) and nothing is built but
one dict. A test keeps the bytes equal to the frame's own encoding.

The line is returned as an exact-size copy of what ``orjson.dumps`` returns: orjson writes into
a buffer and hands that allocation back as the ``bytes`` (4 KiB for a 300-byte line with orjson
3.13, tracemalloc says), and the gateway keeps every line in its tenant's window for minutes:
20,000 kept lines cost 3.5 µs each as they came, ~0.8 µs each copied, dumps included
(benchmarks/RESULTS.md, "The live path's CPU per single-user notification").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from tidings.envelope import Notification, WireNotification


def encode_notification(n: Notification | WireNotification, seq: int, room: str) -> bytes:
    """The ``notification`` line for ``n`` at stream ``seq``: built once, sent to many.

    The gateway's live path passes a :class:`~tidings.envelope.WireNotification`, whose time
    is already the text orjson writes for the ``datetime`` (the same bytes, without building it).
    """
    data = n.data
    if b"\n" in data or b"\r" in data:
        # A line must not contain a raw newline; orjson's own output never does.
        data = orjson.dumps(orjson.loads(data))
    line = orjson.dumps(
        {
            "type": "notification",
            "seq": seq,
            "id": n.id,
            "event": n.event,
            "room": room,
            "time": n.time,
            "title": n.title,
            "message": n.message,
            "severity": n.severity,  # a StrEnum: orjson writes its value (no property call)
            "data": orjson.Fragment(data),
        },
        option=orjson.OPT_UTC_Z,
    )
    # An exact-size copy (module doc). Two parts, so join builds a new object (with one it
    # returns the same): ~0.1 µs, half of memoryview(line).tobytes().
    return b"".join((line, b""))
