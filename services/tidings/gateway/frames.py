"""Server-side WebSocket frames built once and written verbatim to many transports.

A server frame is never masked (RFC 6455 §5.1), so one text frame's bytes are valid for every
connection that did not negotiate an extension: the fan-out builds it once per batch.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON lines)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload
