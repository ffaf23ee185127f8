"""The live path's lean decode gives the same wire line as the full envelope, byte for byte,
and refuses the same payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import example, given
from hypothesis import strategies as st

from tidings.envelope import Notification, Severity, decode_wire, rfc3339
from tidings.protocol import encode_notification
from tidings.subjects import Audience, AudienceKind
from tidings.v1 import notification_pb2 as pb

SECONDS_MIN = -62_135_596_800  # 0001-01-01T00:00:00Z, the first second a datetime holds
SECONDS_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z
NANOS_MAX = 999_999_999


def payload(
    seconds: int = 1_764_000_000,
    nanos: int = 123_456_000,
    *,
    kind: int = pb.Audience.Kind.KIND_TENANT,
    name: str = "",
    severity: int = pb.Severity.SEVERITY_WARNING,
    data: bytes = b'{"incident":42}',
    title: str = "Fire alarm",
    message: str = "Building 3",
    traceparent: str = "",
    tracestate: str = "",
) -> bytes:
    """A stored envelope, built field by field so any timestamp the wire allows can be tried."""
    return pb.Notification(
        id="01JZ0000000000000000000000",
        tenant="acme",
        event="incident.created",
        audience=pb.Audience(kind=pb.Audience.Kind.ValueType(kind), name=name),
        time=Timestamp(seconds=seconds, nanos=nanos),
        source="svc",
        title=title,
        message=message,
        severity=pb.Severity.ValueType(severity),
        data=data,
        trace=pb.TraceContext(traceparent=traceparent, tracestate=tracestate),
    ).SerializeToString()


def lines(raw: bytes, seq: int = 42, room: str = "tenant") -> tuple[bytes, bytes]:
    """(line from the full envelope, line from the lean decode)."""
    return (
        encode_notification(Notification.from_bytes(raw), seq, room),
        encode_notification(decode_wire(raw), seq, room),
    )


@given(
    st.integers(SECONDS_MIN, SECONDS_MAX),
    st.integers(0, NANOS_MAX) | st.integers(0, 999_999).map(lambda us: us * 1000),
)
@example(SECONDS_MIN, 0)
@example(SECONDS_MAX, NANOS_MAX)
@example(0, 0)  # the epoch, and an unset time
@example(-1, 999_999_999)  # just before the epoch
@example(1_764_000_000, 999)  # below one microsecond: no fraction, like ToDatetime
@example(1_764_000_000, 1000)  # one microsecond
@example(1_764_000_000, 500_000_000)  # trailing zeros are kept (.500000)
@example(-59_011_459_200, 0)  # year 0100: four digits, zero-padded
def test_every_representable_time_gives_the_same_line(seconds: int, nanos: int) -> None:
    full, lean = lines(payload(seconds, nanos))
    assert lean == full


def test_the_time_text_is_what_orjson_writes_for_the_datetime() -> None:
    assert rfc3339(0, 0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_772_600_767, 890_123_000) == "2026-03-04T05:06:07.890123Z"
    assert rfc3339(1_772_600_767, 890_123_999) == "2026-03-04T05:06:07.890123Z"  # truncated
    assert rfc3339(SECONDS_MIN, 0) == "0001-01-01T00:00:00Z"
    assert rfc3339(SECONDS_MAX, NANOS_MAX) == "9999-12-31T23:59:59.999999Z"
    dt = datetime(2026, 3, 4, 5, 6, 7, 10, tzinfo=UTC)
    written = orjson.dumps(dt, option=orjson.OPT_UTC_Z)
    assert written == f'"{rfc3339(1_772_600_767, 10_000)}"'.encode()


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"kind": pb.Audience.Kind.KIND_USER, "name": "alice"},
        {"kind": pb.Audience.Kind.KIND_ROOM, "name": "site-berlin"},
        {"kind": pb.Audience.Kind.KIND_BROADCAST},
        {"severity": pb.Severity.SEVERITY_CRITICAL},
        {"severity": 77},  # a severity this gateway does not know reads as info
        {"data": b""},  # absent data is an empty object
        {"data": b'{\n  "pretty": "printed"\r\n}'},  # re-encoded: a line holds no raw newline
        {"title": "two\nlines", "message": 'quote " and \u2028 and ✓'},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    ],
)
def test_every_field_gives_the_same_line(fields: dict[str, object]) -> None:
    full, lean = lines(payload(**fields))  # type: ignore[arg-type]
    assert lean == full
    assert b"\n" not in lean


def test_the_trace_context_and_severity_come_through() -> None:
    raw = payload(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    n = decode_wire(raw)
    assert n.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert n.tracestate == ""
    assert n.severity is Severity.WARNING
    assert n.id == Notification.from_bytes(raw).id


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xff\xff",  # no protobuf
        payload(SECONDS_MIN - 1, 0),
        payload(SECONDS_MAX + 1, 0),
        payload(nanos=-1),
        payload(nanos=NANOS_MAX + 1),
        payload(kind=99),  # an audience kind this gateway does not know
        payload(kind=pb.Audience.Kind.KIND_USER, name=""),
        payload(kind=pb.Audience.Kind.KIND_USER, name="not an id!"),
        payload(kind=pb.Audience.Kind.KIND_TENANT, name="alice"),
    ],
    ids=[
        "not-protobuf",
        "before-year-1",
        "after-year-9999",
        "negative-nanos",
        "nanos-of-a-whole-second",
        "unknown-audience-kind",
        "user-without-name",
        "user-with-bad-id",
        "tenant-with-name",
    ],
)
def test_a_payload_the_envelope_refuses_is_refused_too(raw: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the envelope raises, both raise
        Notification.from_bytes(raw)
    with pytest.raises(Exception):  # noqa: B017, PT011
        decode_wire(raw)


def test_a_round_trip_through_the_publisher_shape() -> None:
    n = Notification(
        id="x1",
        tenant="acme",
        event="incident.created",
        audience=Audience(AudienceKind.ROLE, "admin"),
        time=datetime.now(UTC),
        title="t",
        message="m",
    )
    raw = n.to_bytes()
    assert encode_notification(decode_wire(raw), 1, "role:admin") == encode_notification(
        n, 1, "role:admin"
    )
