"""The notification envelope: the validated request, its protobuf form, and back.

:class:`Notification` is the one in-memory shape every component uses; ``to_bytes`` /
``from_bytes`` are the only places that touch the generated protobuf code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
import uuid_utils
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from tidings.subjects import ID_RE, NAMED_KINDS, Audience, AudienceKind
from tidings.v1 import notification_pb2 as pb


class Severity(StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


_SEVERITY_TO_PB = {s: pb.Severity.Value(f"SEVERITY_{s.name}") for s in Severity}
_SEVERITY_FROM_PB = {v: k for k, v in _SEVERITY_TO_PB.items()}
_KIND_TO_PB = {k: pb.Audience.Kind.Value(f"KIND_{k.name}") for k in AudienceKind}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def new_id() -> str:
    """A time-ordered, unique notification id (UUIDv7, 36 characters)."""
    return str(uuid_utils.uuid7())


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification, validated. ``data`` is the JSON object's UTF-8 encoding."""

    id: str
    tenant: str | None
    event: str
    audience: Audience
    time: datetime
    title: str
    message: str
    severity: Severity = Severity.INFO
    source: str = ""
    data: bytes = b"{}"
    traceparent: str = ""
    tracestate: str = ""

    @property
    def data_object(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.data)
        return value

    def to_bytes(self) -> bytes:
        seconds = (self.time - _EPOCH) // _SECOND  # exact, unlike float timestamp()
        ts = Timestamp(seconds=seconds, nanos=self.time.microsecond * 1000)
        return pb.Notification(
            id=self.id,
            tenant=self.tenant or "",
            event=self.event,
            audience=pb.Audience(kind=_KIND_TO_PB[self.audience.kind], name=self.audience.name),
            time=ts,
            source=self.source,
            title=self.title,
            message=self.message,
            severity=_SEVERITY_TO_PB[self.severity],
            data=self.data,
            trace=pb.TraceContext(traceparent=self.traceparent, tracestate=self.tracestate),
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Notification:
        msg = pb.Notification.FromString(payload)
        return cls(
            id=msg.id,
            tenant=msg.tenant or None,
            event=msg.event,
            audience=Audience(_KIND_FROM_PB[msg.audience.kind], msg.audience.name),
            time=msg.time.ToDatetime(tzinfo=UTC),
            title=msg.title,
            message=msg.message,
            severity=_SEVERITY_FROM_PB.get(msg.severity, Severity.INFO),
            source=msg.source,
            data=msg.data or b"{}",
            traceparent=msg.trace.traceparent,
            tracestate=msg.trace.tracestate,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (the shape the publisher accepts, plus id, time and source)."""
        body: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "event": self.event,
            "audience": self.audience.room,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "title": self.title,
            "message": self.message,
            "severity": self.severity.value,
            "data": self.data_object,
        }
        return body


class WireNotification(NamedTuple):
    """What a client's ``notification`` line needs of a stored envelope (plus its trace
    context), decoded for the gateway's live path: ``time`` is already the RFC 3339 text
    :func:`tidings.protocol.encode_notification` writes, so no ``datetime`` is built."""

    id: str
    event: str
    time: str
    title: str
    message: str
    severity: Severity
    data: bytes
    traceparent: str
    tracestate: str


# The range google.protobuf's Timestamp.ToDatetime accepts (0001-01-01 .. 9999-12-31T23:59:59).
_SECONDS_MIN = -62_135_596_800
_SECONDS_MAX = 253_402_300_799
_NANOS_PER_SECOND = 1_000_000_000
_second_text: dict[int, str] = {}  # seconds -> "YYYY-MM-DDTHH:MM:SS"; live traffic shares few


def rfc3339(seconds: int, nanos: int) -> str:
    """A protobuf Timestamp as orjson writes the ``datetime`` that ``ToDatetime`` makes of it:
    microseconds (truncated) only when not zero, then ``Z``; out of range raises ValueError."""
    text = _second_text.get(seconds)
    if text is None:
        if not _SECONDS_MIN <= seconds <= _SECONDS_MAX:
            raise ValueError(f"timestamp seconds {seconds} out of range")
        t = _EPOCH + timedelta(seconds=seconds)
        text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        if len(_second_text) >= 1024:
            _second_text.clear()
        _second_text[seconds] = text
    if not 0 <= nanos < _NANOS_PER_SECOND:
        raise ValueError(f"timestamp nanos {nanos} out of range")
    micros = nanos // 1000
    return f"{text}.{micros:06d}Z" if micros else text + "Z"


class Rejected(ValueError):
    """A stored message that must not be delivered; ``reason`` is the drop counter's label
    (``envelope``, ``audience``, ``mismatch``, ``data``). The text never quotes the content."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


_EMPTY_OBJECT = b"{}"
_NAMED = frozenset(NAMED_KINDS)
# A NamedTuple's own constructor is a Python function (built by exec) that calls this: once per
# live message, the direct call saves that frame.
_new_wire = tuple.__new__
_KIND_TEXT = {k: k.value for k in AudienceKind}  # an enum's .value is a property call


def decode_wire(payload: bytes, route: tuple[str, str] | None = None) -> WireNotification:
    """The lean twin of :meth:`Notification.from_bytes` for the gateway's hot path: the same
    payloads raise (bad protobuf, unknown audience kind, invalid audience, timestamp out of
    range), at about half the cost, as :class:`Rejected`.

    With ``route`` (the ``(tenant, room)`` its subject routes to) it also refuses an envelope
    whose tenant or audience is not the subject's, and ``data`` that is not a JSON object: a
    service writing to the stream directly is not trusted to have built it right (issue 14).
    """
    try:
        msg = pb.Notification.FromString(payload)
    except DecodeError:
        raise Rejected("envelope", "not a Notification protobuf") from None
    audience = msg.audience
    kind = _KIND_FROM_PB.get(audience.kind)
    if kind is None:
        raise Rejected("audience", f"unknown audience kind {audience.kind}")
    name = audience.name
    # What Audience(kind, name) checks (as from_bytes does), without building one (~7x dearer).
    if (not ID_RE.fullmatch(name)) if kind in _NAMED else bool(name):
        raise Rejected("audience", f"invalid {kind.value} audience")
    data = msg.data or _EMPTY_OBJECT
    if route is not None:
        if msg.tenant != route[0]:
            raise Rejected("mismatch", "the envelope's tenant is not the subject's")
        text = _KIND_TEXT[kind]
        if (f"{text}:{name}" if name else text) != route[1]:
            raise Rejected("mismatch", "the envelope's audience is not the subject's")
        if data != _EMPTY_OBJECT:
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise Rejected("data", "data is not valid JSON") from None
            if type(value) is not dict:
                raise Rejected("data", "data is not a JSON object")
    ts = msg.time
    trace = msg.trace
    try:
        time = rfc3339(ts.seconds, ts.nanos)
    except ValueError as exc:
        raise Rejected("envelope", str(exc)) from None
    return _new_wire(
        WireNotification,
        (
            msg.id,
            msg.event,
            time,
            msg.title,
            msg.message,
            _SEVERITY_FROM_PB.get(msg.severity, Severity.INFO),
            data,
            trace.traceparent,
            trace.tracestate,
        ),
    )
