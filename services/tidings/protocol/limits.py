"""The protocol's fixed names and bounds (docs/protocol.md §1, §2 and §11)."""

from __future__ import annotations

from dataclasses import dataclass

SUBPROTOCOL = "tidings.v1.json"
PATH = "/ws"
MAX_SAFE_INTEGER = 2**53 - 1  # integers a JavaScript client reads exactly
DEFAULT_MAX_FRAME_BYTES = 16 * 1024  # a client frame; tokens of a few KiB must fit
DEFAULT_MAX_ROOMS = 64  # named rooms per connection
MAX_EPOCH_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """What a gateway accepts in one client frame; both are gateway settings."""

    max_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_rooms: int = DEFAULT_MAX_ROOMS
