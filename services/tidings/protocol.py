"""The wire protocol between a client (browser, SDK) and the gateway: frames, codes, limits.

The one definition the gateway and the Python client share; ``docs/protocol.md`` is its
normative prose and a test keeps the code tables of both in step. Client frames are parsed with
errors precise enough to put in an ``error`` frame; server frames are encoded with orjson, and a
notification's line is built once per gateway (:func:`encode_notification`) so the same bytes
can be joined into many frames (:func:`join_frames`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from tidings.codes import ErrorCode
from tidings.errors import (
    BadRoom,
    InvalidField,
    Malformed,
    MissingField,
    TidingsError,
    TooLarge,
    TooManyRooms,
    UnknownFrameType,
    error_code_of,
)
from tidings.subjects import Audience, AudienceKind

if TYPE_CHECKING:
    from tidings.envelope import Notification, WireNotification

SUBPROTOCOL = "tidings.v1.json"
PATH = "/ws"
MAX_SAFE_INTEGER = 2**53 - 1  # integers a JavaScript client reads exactly
DEFAULT_MAX_FRAME_BYTES = 16 * 1024  # a client frame; tokens of a few KiB must fit
DEFAULT_MAX_ROOMS = 64  # named rooms per connection
MAX_EPOCH_LENGTH = 64


# --- client frames ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame: the token, the resume point (``since`` + ``epoch``) and named rooms."""

    type: ClassVar[str] = "hello"
    token: str
    since: int | None = None
    epoch: str | None = None
    rooms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "token": self.token}
        if self.since is not None:
            body["since"] = self.since
            body["epoch"] = self.epoch
        if self.rooms:
            body["rooms"] = list(self.rooms)
        return body


@dataclass(frozen=True, slots=True)
class Subscribe:
    type: ClassVar[str] = "subscribe"
    room: str
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_id({"type": self.type, "room": self.room}, self.id)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    type: ClassVar[str] = "unsubscribe"
    room: str
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_id({"type": self.type, "room": self.room}, self.id)


@dataclass(frozen=True, slots=True)
class Refresh:
    """A new token for the same tenant and user, sent before the current one expires."""

    type: ClassVar[str] = "refresh"
    token: str
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_id({"type": self.type, "token": self.token}, self.id)


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level liveness check (browsers cannot send WebSocket pings)."""

    type: ClassVar[str] = "ping"
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_id({"type": self.type}, self.id)


ClientFrame = Hello | Subscribe | Unsubscribe | Refresh | Ping
CLIENT_FRAME_TYPES: tuple[str, ...] = ("hello", "subscribe", "unsubscribe", "refresh", "ping")


def _with_id(body: dict[str, Any], request_id: int | None) -> dict[str, Any]:
    if request_id is not None:
        body["id"] = request_id
    return body


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
        raise Malformed(f"a frame is one JSON object, not {_json_type(body)}")
    kind = body.get("type")
    if kind is None:
        raise MissingField("every frame has a type", field="type")
    if not isinstance(kind, str):
        raise InvalidField(f"must be a string, not {_json_type(kind)}", field="type")
    parser = _CLIENT_PARSERS.get(kind)
    if parser is None:
        expected = ", ".join(CLIENT_FRAME_TYPES)
        raise UnknownFrameType(f"unknown frame type {kind!r}; expected {expected}", field="type")
    return parser(body, max_rooms)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _opt_str(body: dict[str, Any], field: str, *, default: str | None = None) -> str | None:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidField(f"must be a string, not {_json_type(value)}", field=field)
    return value


def _opt_uint(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"must be an integer, not {_json_type(value)}", field=field)
    if not 0 <= value <= MAX_SAFE_INTEGER:
        raise InvalidField(f"must be between 0 and {MAX_SAFE_INTEGER}", field=field)
    return value


def check_named_room(room: object, *, field: str = "room") -> str:
    """``room`` if it is a named room (``room:<name>``), else :class:`BadRoom`.

    Tenant, user, role and broadcast rooms follow from the token and are joined automatically;
    only named rooms are asked for.
    """
    if room is None:
        raise MissingField("a named room such as room:site-berlin is required", field=field)
    if not isinstance(room, str):
        raise InvalidField(f"must be a string, not {_json_type(room)}", field=field)
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


def _parse_hello(body: dict[str, Any], max_rooms: int) -> Hello:
    token = _opt_str(body, "token", default="") or ""
    since = _opt_uint(body, "since")
    epoch = _opt_str(body, "epoch")
    if epoch is not None and not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        raise InvalidField(f"must be 1 to {MAX_EPOCH_LENGTH} characters", field="epoch")
    if (since is None) != (epoch is None):
        missing = "epoch" if epoch is None else "since"
        raise MissingField(
            "since and epoch go together (both from the last session)", field=missing
        )
    raw_rooms = body.get("rooms")
    if raw_rooms is None:
        raw_rooms = []
    if not isinstance(raw_rooms, list):
        raise InvalidField(f"must be an array, not {_json_type(raw_rooms)}", field="rooms")
    rooms = tuple(
        dict.fromkeys(check_named_room(r, field=f"rooms[{i}]") for i, r in enumerate(raw_rooms))
    )
    if len(rooms) > max_rooms:
        raise TooManyRooms(f"{len(rooms)} named rooms; at most {max_rooms}", field="rooms")
    return Hello(token=token, since=since, epoch=epoch, rooms=rooms)


def _parse_subscribe(body: dict[str, Any], _max_rooms: int) -> Subscribe:
    request_id = _opt_uint(body, "id")
    return Subscribe(room=check_named_room(body.get("room")), id=request_id)


def _parse_unsubscribe(body: dict[str, Any], _max_rooms: int) -> Unsubscribe:
    request_id = _opt_uint(body, "id")
    return Unsubscribe(room=check_named_room(body.get("room")), id=request_id)


def _parse_refresh(body: dict[str, Any], _max_rooms: int) -> Refresh:
    request_id = _opt_uint(body, "id")
    return Refresh(token=_opt_str(body, "token", default="") or "", id=request_id)


def _parse_ping(body: dict[str, Any], _max_rooms: int) -> Ping:
    return Ping(id=_opt_uint(body, "id"))


_CLIENT_PARSERS: dict[str, Callable[[dict[str, Any], int], ClientFrame]] = {
    "hello": _parse_hello,
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "refresh": _parse_refresh,
    "ping": _parse_ping,
}


# --- server frames ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
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
    expires_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "connection": self.connection,
            "tenant": self.tenant,
            "user": self.user,
            "roles": list(self.roles),
            "rooms": list(self.rooms),
            "seq": self.seq,
            "epoch": self.epoch,
            "recovered": self.recovered,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class NotificationFrame:
    """One notification as a client receives it (decoded form of :func:`encode_notification`)."""

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "id": self.id,
            "event": self.event,
            "room": self.room,
            "time": self.time,
            "title": self.title,
            "message": self.message,
            "severity": self.severity,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Synced:
    """Every notification for the connection's rooms up to ``seq`` has been sent before this."""

    type: ClassVar[str] = "synced"
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class ErrorFrame:
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
        try:
            return ErrorCode(self.code)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "number": self.number,
            "reason": self.reason,
        }
        for key, value in (("field", self.field), ("id", self.id), ("close", self.close)):
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class ReconnectFrame:
    """The gateway is draining: close and connect again (elsewhere) after ``delay_ms``."""

    type: ClassVar[str] = "reconnect"
    delay_ms: int
    reason: str = "draining"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "delay_ms": self.delay_ms, "reason": self.reason}


class ResetReason(StrEnum):
    EPOCH_CHANGED = "epoch_changed"
    OUT_OF_RANGE = "out_of_range"
    REPLAY_FAILED = "replay_failed"


@dataclass(frozen=True, slots=True)
class Reset:
    """A gap that will not be filled: refetch history over REST, resume from ``seq``."""

    type: ClassVar[str] = "reset"
    seq: int
    epoch: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "epoch": self.epoch, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Subscribed:
    type: ClassVar[str] = "subscribed"
    room: str
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_id({"type": self.type, "room": self.room}, self.id)


class UnsubscribeReason(StrEnum):
    FORBIDDEN = "forbidden"  # a refreshed token no longer allows the room


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """Ack of ``unsubscribe`` or, with ``reason``, a room the gateway took away (refresh)."""

    type: ClassVar[str] = "unsubscribed"
    room: str
    id: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body = _with_id({"type": self.type, "room": self.room}, self.id)
        if self.reason is not None:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True, slots=True)
class Refreshed:
    """The new token is in force: its expiry and the rooms it leaves the connection in."""

    type: ClassVar[str] = "refreshed"
    expires_at: float | None
    rooms: tuple[str, ...] = ()
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {"type": self.type, "expires_at": self.expires_at, "rooms": list(self.rooms)}
        return _with_id(body, self.id)


@dataclass(frozen=True, slots=True)
class Pong:
    type: ClassVar[str] = "pong"
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _with_id({"type": self.type}, self.id)


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
)
SERVER_FRAME_TYPES: tuple[str, ...] = (
    "welcome",
    "notification",
    "synced",
    "error",
    "reconnect",
    "reset",
    "subscribed",
    "unsubscribed",
    "refreshed",
    "pong",
)


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
            "severity": n.severity.value,
            "data": orjson.Fragment(data),
        },
        option=orjson.OPT_UTC_Z,
    )


def join_frames(lines: Iterable[bytes]) -> bytes:
    """Several encoded lines as one text frame (newline-delimited JSON, in the given order)."""
    return b"\n".join(lines)


# --- parsing server frames (the client side) ----------------------------------------------


def _req(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(field)
    if value is None or isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise Malformed(f"server frame {body.get('type')!r}: bad {field}", field=field)
    return value


def _opt(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    return None if body.get(field) is None else _req(body, field, kind)


def _str_tuple(body: dict[str, Any], field: str) -> tuple[str, ...]:
    values = _req(body, field, list)
    if not all(isinstance(v, str) for v in values):
        raise Malformed(f"server frame {body.get('type')!r}: bad {field}", field=field)
    return tuple(values)


_NUMBER = (int, float)

_SERVER_PARSERS: dict[str, Callable[[dict[str, Any]], ServerFrame]] = {
    "welcome": lambda b: Welcome(
        connection=_req(b, "connection", str),
        tenant=_req(b, "tenant", str),
        user=_req(b, "user", str),
        roles=_str_tuple(b, "roles"),
        rooms=_str_tuple(b, "rooms"),
        seq=_req(b, "seq", int),
        epoch=_req(b, "epoch", str),
        recovered=_req(b, "recovered", bool),
        expires_at=_opt(b, "expires_at", _NUMBER),
    ),
    "notification": lambda b: NotificationFrame(
        seq=_req(b, "seq", int),
        id=_req(b, "id", str),
        event=_req(b, "event", str),
        room=_req(b, "room", str),
        time=_req(b, "time", str),
        title=_req(b, "title", str),
        message=_req(b, "message", str),
        severity=_req(b, "severity", str),
        data=_req(b, "data", dict),
    ),
    "synced": lambda b: Synced(seq=_req(b, "seq", int)),
    "error": lambda b: ErrorFrame(
        code=_req(b, "code", str),
        number=_req(b, "number", int),
        reason=_req(b, "reason", str),
        field=_opt(b, "field", str),
        id=_opt(b, "id", int),
        close=_opt(b, "close", int),
    ),
    "reconnect": lambda b: ReconnectFrame(
        delay_ms=_req(b, "delay_ms", int), reason=_opt(b, "reason", str) or "draining"
    ),
    "reset": lambda b: Reset(
        seq=_req(b, "seq", int), epoch=_req(b, "epoch", str), reason=_req(b, "reason", str)
    ),
    "subscribed": lambda b: Subscribed(room=_req(b, "room", str), id=_opt(b, "id", int)),
    "unsubscribed": lambda b: Unsubscribed(
        room=_req(b, "room", str), id=_opt(b, "id", int), reason=_opt(b, "reason", str)
    ),
    "refreshed": lambda b: Refreshed(
        expires_at=_opt(b, "expires_at", _NUMBER),
        rooms=_str_tuple(b, "rooms") if b.get("rooms") is not None else (),
        id=_opt(b, "id", int),
    ),
    "pong": lambda b: Pong(id=_opt(b, "id", int)),
}


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
        parser = _SERVER_PARSERS.get(body.get("type"))  # type: ignore[arg-type]
        if parser is not None:
            frames.append(parser(body))
    return frames
