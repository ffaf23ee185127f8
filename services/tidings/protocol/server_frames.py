"""The frames the gateway sends (docs/protocol.md §5), and how a client reads them.

A field left at ``None`` is not written unless it is declared ``null`` (``expires_at``: the
token has no expiry). A client reads every line of a text frame and skips frame types and fields
it does not know, so a newer gateway does not break an older client.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from tidings.codes import ErrorCode
from tidings.errors import Malformed, TidingsError, error_code_of
from tidings.protocol.schema import Frame, from_server, wire


@dataclass(frozen=True, slots=True)
class Welcome(Frame):
    """Answer to ``hello``: who the client is, its rooms, and where the stream stands."""

    type: ClassVar[str] = "welcome"
    connection: str
    tenant: str
    user: str
    roles: tuple[str, ...]
    rooms: tuple[str, ...]
    seq: int
    epoch: str
    recovered: bool
    expires_at: float | None = dataclasses.field(default=None, metadata=wire(null=True))
    inbox: dict[str, Any] | None = None  # the inbox's counts, when it answered in time


@dataclass(frozen=True, slots=True)
class NotificationFrame(Frame):
    """One notification as a client receives it (decoded form of ``encode_notification``)."""

    type: ClassVar[str] = "notification"
    seq: int
    id: str
    event: str
    room: str
    time: str
    title: str
    message: str
    severity: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Synced(Frame):
    """Every notification for the connection's rooms up to ``seq`` has been sent before this."""

    type: ClassVar[str] = "synced"
    seq: int


@dataclass(frozen=True, slots=True)
class ErrorFrame(Frame):
    """A refusal with its code; ``close`` is set when the gateway closes right after."""

    type: ClassVar[str] = "error"
    code: str
    number: int
    reason: str
    field: str | None = None
    id: int | None = None
    close: int | None = None

    @property
    def error_code(self) -> ErrorCode | None:
        """The code as an enum member; ``None`` for a code newer than this client."""
        return ErrorCode.lookup(self.code)


@dataclass(frozen=True, slots=True)
class ReconnectFrame(Frame):
    """The gateway is draining: close and connect again (elsewhere) after ``delay_ms``."""

    type: ClassVar[str] = "reconnect"
    delay_ms: int
    reason: str = "draining"


class ResetReason(StrEnum):
    EPOCH_CHANGED = "epoch_changed"
    OUT_OF_RANGE = "out_of_range"
    REPLAY_FAILED = "replay_failed"


@dataclass(frozen=True, slots=True)
class Reset(Frame):
    """A gap that will not be filled: refetch history over REST, resume from ``seq``."""

    type: ClassVar[str] = "reset"
    seq: int
    epoch: str
    reason: str


@dataclass(frozen=True, slots=True)
class Subscribed(Frame):
    type: ClassVar[str] = "subscribed"
    room: str
    id: int | None = None


class UnsubscribeReason(StrEnum):
    FORBIDDEN = "forbidden"  # a refreshed token no longer allows the room


@dataclass(frozen=True, slots=True)
class Unsubscribed(Frame):
    """Ack of ``unsubscribe`` or, with ``reason``, a room the gateway took away (refresh)."""

    type: ClassVar[str] = "unsubscribed"
    room: str
    id: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Refreshed(Frame):
    """The new token is in force: its expiry and the rooms it leaves the connection in."""

    type: ClassVar[str] = "refreshed"
    expires_at: float | None = dataclasses.field(metadata=wire(null=True))
    rooms: tuple[str, ...] = ()
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Pong(Frame):
    type: ClassVar[str] = "pong"
    id: int | None = None


@dataclass(frozen=True, slots=True)
class InboxFrame(Frame):
    """The user's inbox changed (on any device): its counts now, the notifications whose state
    changed and how; ``all`` for a mark-all, ``muted`` (the whole set) when preferences changed."""

    type: ClassVar[str] = "inbox"
    counts: dict[str, Any]
    ids: tuple[str, ...]
    set: dict[str, Any]
    all: bool | None = None
    muted: tuple[str, ...] | None = None


ServerFrame = (
    Welcome
    | NotificationFrame
    | Synced
    | ErrorFrame
    | ReconnectFrame
    | Reset
    | Subscribed
    | Unsubscribed
    | Refreshed
    | Pong
    | InboxFrame
)
_SERVER_FRAMES: dict[str, type[ServerFrame]] = {
    f.type: f
    for f in (
        Welcome,
        NotificationFrame,
        Synced,
        ErrorFrame,
        ReconnectFrame,
        Reset,
        Subscribed,
        Unsubscribed,
        Refreshed,
        Pong,
        InboxFrame,
    )
}
SERVER_FRAME_TYPES: tuple[str, ...] = tuple(_SERVER_FRAMES)


def encode(frame: ServerFrame) -> bytes:
    """One server frame as one JSON line (no trailing newline)."""
    return orjson.dumps(frame.to_dict())


def error_frame(
    error: ErrorCode | BaseException,
    reason: str | None = None,
    *,
    field: str | None = None,
    id: int | None = None,
    close: bool = False,
) -> ErrorFrame:
    """The ``error`` frame for a code or an exception; ``close`` adds the close code."""
    if isinstance(error, ErrorCode):
        code, text = error, reason or error.meaning
    else:
        code = error_code_of(error)
        if isinstance(error, TidingsError):
            text, field = reason or error.reason, field or error.field
        else:
            text = reason or code.meaning  # never leak an unexpected exception's text
    return ErrorFrame(
        code=code.value,
        number=code.number,
        reason=text,
        field=field,
        id=id,
        close=int(code.close_code) if close else None,
    )


def parse_server_frames(data: str | bytes) -> list[ServerFrame]:
    """Every frame in one server text frame (one JSON object per line).

    Unknown frame types and unknown fields are skipped, so a newer gateway does not break an
    older client; a known frame with a missing or mistyped field raises :class:`Malformed`.
    """
    raw = data.encode() if isinstance(data, str) else data
    frames: list[ServerFrame] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"server sent a line that is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Malformed("server sent a line that is not a JSON object")
        kind = body.get("type")
        frame_class = _SERVER_FRAMES.get(kind) if isinstance(kind, str) else None
        if frame_class is not None:
            frames.append(from_server(frame_class, body))
    return frames
