"""Server-side WebSocket frames built once and written verbatim to many connections.

A server frame is never masked (RFC 6455 §5.1), so one text frame is valid for every connection
that did not negotiate an extension: the fan-out builds its payload once per batch, with room
in front for the header, and picows writes the header in place and sends the same buffer to
every member (no copy per member).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

HEADROOM = 14  # the longest frame header (RFC 6455 §5.2); picows needs this much in front
MAX_PAYLOAD = 1 << 20  # per frame; every client accepts 4 MiB (docs/protocol.md §11)


def frame_buffer(payload: bytes) -> bytearray:
    """A text frame's payload with ``HEADROOM`` bytes in front for its header."""
    buf = bytearray(HEADROOM)
    buf += payload
    return buf


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
