"""The ``notification`` line, built once per gateway and written to every member: the hot path.

Written by hand rather than from :class:`~tidings.protocol.server_frames.NotificationFrame`'s
fields: the payload goes in as an ``orjson.Fragment`` (never parsed) and nothing is built but
one dict. A test keeps the bytes equal to the frame's own encoding.
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
    return orjson.dumps(
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
