"""Server-side WebSocket frames built once and written verbatim to many transports.

A server frame is never masked (RFC 6455 §5.1), so one text frame's bytes are valid for every
connection that did not negotiate an extension: the fan-out builds it once per batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

_FIN_TEXT = 0x81
MAX_PAYLOAD = 1 << 20  # per frame; every client accepts 4 MiB (docs/protocol.md §11)


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON lines)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload


def cuts(sizes: Sequence[int], limit: int = MAX_PAYLOAD) -> Iterator[tuple[int, int]]:
    """``[start, end)`` ranges of consecutive lines whose newline-joined payload stays within
    ``limit``, so a long replay or burst never makes a frame a client may refuse (a single
    line over the limit goes alone)."""
    start, size = 0, -1
    for i, n in enumerate(sizes):
        if i > start and size + 1 + n > limit:
            yield start, i
            start, size = i, -1
        size += 1 + n
    if sizes:
        yield start, len(sizes)
