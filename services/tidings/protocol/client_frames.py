"""The frames a client sends (docs/protocol.md §4), and how the gateway reads them.

Every integer a client sends is a *seq* or a *request id*: an integer in ``[0, 2^53-1]``. A
frame is refused with the code and ``field`` a client can act on (``missing_field``,
``invalid_field``, ``bad_room``, …); unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import orjson

from tidings.errors import (
    BadRoom,
    InvalidField,
    Malformed,
    MissingField,
    TidingsError,
    TooLarge,
    TooManyRooms,
    UnknownFrameType,
)
from tidings.protocol.limits import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_ROOMS,
    MAX_EPOCH_LENGTH,
    Limits,
)
from tidings.protocol.schema import Frame, from_client, json_type, read_texts, wire
from tidings.subjects import Audience, AudienceKind


def check_named_room(room: object, *, field: str = "room") -> str:
    """``room`` if it is a named room (``room:<name>``), else :class:`BadRoom`.

    Tenant, user, role and broadcast rooms follow from the token and are joined automatically;
    only named rooms are asked for.
    """
    if room is None:
        raise MissingField("a named room such as room:site-berlin is required", field=field)
    if not isinstance(room, str):
        raise InvalidField(f"must be a string, not {json_type(room)}", field=field)
    try:
        audience = Audience.from_room(room, field=field)
    except TidingsError as exc:
        raise BadRoom(exc.reason, field=field) from None
    if audience.kind is not AudienceKind.ROOM:
        raise BadRoom(
            f"{room!r} is joined automatically from the token; only named rooms "
            "(room:<name>) can be subscribed",
            field=field,
        )
    return audience.room


def _named_room(value: object, name: str, _limits: Limits) -> str:
    return check_named_room(value, field=name)


def _named_rooms(value: object, name: str, limits: Limits) -> tuple[str, ...]:
    """Named rooms without duplicates, in the order asked, at most ``max_rooms``."""
    if value is None:
        return ()
    rooms = tuple(dict.fromkeys(read_texts(value, name, lambda v, f: check_named_room(v, field=f))))
    if len(rooms) > limits.max_rooms:
        raise TooManyRooms(f"{len(rooms)} named rooms; at most {limits.max_rooms}", field=name)
    return rooms


@dataclass(frozen=True, slots=True)
class Hello(Frame):
    """First frame: the token, the resume point (``since`` + ``epoch``) and named rooms."""

    type: ClassVar[str] = "hello"
    token: str = ""  # absent or null reads as "", so the verifier can say token_missing
    since: int | None = None
    epoch: str | None = field(
        default=None, metadata=wire(pair="since", length=(1, MAX_EPOCH_LENGTH))
    )
    rooms: tuple[str, ...] = field(default=(), metadata=wire(omit_empty=True, read=_named_rooms))


@dataclass(frozen=True, slots=True)
class Subscribe(Frame):
    type: ClassVar[str] = "subscribe"
    room: str = field(metadata=wire(read=_named_room))
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe(Frame):
    type: ClassVar[str] = "unsubscribe"
    room: str = field(metadata=wire(read=_named_room))
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Refresh(Frame):
    """A new token for the same tenant and user, sent before the current one expires."""

    type: ClassVar[str] = "refresh"
    token: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Ping(Frame):
    """Application-level liveness check (browsers cannot send WebSocket pings)."""

    type: ClassVar[str] = "ping"
    id: int | None = None


ClientFrame = Hello | Subscribe | Unsubscribe | Refresh | Ping
_CLIENT_FRAMES: dict[str, type[ClientFrame]] = {
    f.type: f for f in (Hello, Subscribe, Unsubscribe, Refresh, Ping)
}
CLIENT_FRAME_TYPES: tuple[str, ...] = tuple(_CLIENT_FRAMES)


def encode_client_frame(frame: ClientFrame) -> str:
    """The text a client sends for ``frame``."""
    return orjson.dumps(frame.to_dict()).decode()


def parse_client_frame(
    data: str | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_rooms: int = DEFAULT_MAX_ROOMS,
) -> ClientFrame:
    """Parse one client frame; raise a :class:`TidingsError` whose code goes on the wire."""
    size = len(data)
    if isinstance(data, str) and size * 4 > max_bytes:
        size = len(data.encode())  # at most 4 bytes a character: count only when it matters
    if size > max_bytes:
        raise TooLarge(f"frame is {size} bytes; at most {max_bytes} are allowed")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Malformed(f"a frame is one JSON object, not {json_type(body)}")
    kind = body.get("type")
    if kind is None:
        raise MissingField("every frame has a type", field="type")
    if not isinstance(kind, str):
        raise InvalidField(f"must be a string, not {json_type(kind)}", field="type")
    frame_class = _CLIENT_FRAMES.get(kind)
    if frame_class is None:
        expected = ", ".join(CLIENT_FRAME_TYPES)
        raise UnknownFrameType(f"unknown frame type {kind!r}; expected {expected}", field="type")
    return from_client(frame_class, body, Limits(max_bytes, max_rooms))
