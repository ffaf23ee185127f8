"""The wire protocol: round trips, a precise error for every malformed frame, batching, codes."""

from __future__ import annotations

import re
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tidings.codes import ERROR_TABLE, CloseCode, ErrorCode, Reconnect
from tidings.envelope import Notification, Severity, WireNotification, decode_wire
from tidings.errors import Malformed, TidingsError, TooLarge
from tidings.gateway.frames import HEADROOM, frame_buffer
from tidings.protocol import (
    CLIENT_FRAME_TYPES,
    DEFAULT_MAX_FRAME_BYTES,
    SERVER_FRAME_TYPES,
    ClientFrame,
    ErrorFrame,
    Hello,
    InboxFrame,
    NotificationFrame,
    Ping,
    Pong,
    ReconnectFrame,
    Refresh,
    Refreshed,
    Reset,
    ResetReason,
    ServerFrame,
    Subscribe,
    Subscribed,
    Synced,
    Unsubscribe,
    Unsubscribed,
    UnsubscribeReason,
    Welcome,
    encode,
    encode_client_frame,
    encode_notification,
    error_frame,
    parse_client_frame,
    parse_server_frames,
)
from tidings.subjects import Audience, AudienceKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
PUBLISHER_DOC = DOC.with_name("publisher.md")


def notification(**changes: Any) -> Notification:
    base: dict[str, Any] = {
        "id": "01JZ0000000000000000000000",
        "tenant": "acme",
        "event": "incident.created",
        "audience": Audience(AudienceKind.ROOM, "site-berlin"),
        "time": datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        "title": "Fire alarm",
        "message": "Building 3, floor 2",
        "severity": Severity.WARNING,
        "data": b'{"incident":42,"tags":["a","b"]}',
    }
    base.update(changes)
    return Notification(**base)


# --- client frames ---------------------------------------------------------------------------

CLIENT_FRAMES: list[ClientFrame] = [
    Hello(token="eyJ.a.b"),
    Hello(token="eyJ.a.b", since=41, epoch="18a3f", rooms=("room:site-berlin", "room:hq")),
    Subscribe(room="room:site-berlin"),
    Subscribe(room="room:site-berlin", id=7),
    Unsubscribe(room="room:hq", id=0),
    Refresh(token="eyJ.c.d", id=9),
    Ping(),
    Ping(id=2**53 - 1),
]


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=repr)
def test_client_frames_round_trip(frame: ClientFrame) -> None:
    text = encode_client_frame(frame)
    assert "\n" not in text
    assert parse_client_frame(text) == frame
    assert parse_client_frame(text.encode()) == frame


def test_every_client_frame_type_has_a_parser() -> None:
    assert {f.type for f in CLIENT_FRAMES} == set(CLIENT_FRAME_TYPES)


def test_hello_without_a_token_parses_so_the_verifier_can_say_token_missing() -> None:
    assert parse_client_frame('{"type":"hello"}') == Hello(token="")
    assert parse_client_frame('{"type":"hello","token":null}') == Hello(token="")
    assert parse_client_frame('{"type":"refresh"}') == Refresh(token="")


def test_unknown_fields_are_ignored_and_rooms_deduplicated() -> None:
    frame = parse_client_frame(
        '{"type":"hello","token":"t","x-trace":"abc","rooms":["room:a","room:b","room:a"]}'
    )
    assert frame == Hello(token="t", rooms=("room:a", "room:b"))


# (frame text, code, field)
MALFORMED: list[tuple[str | bytes, ErrorCode, str | None]] = [
    ("not json", ErrorCode.MALFORMED, None),
    ("", ErrorCode.MALFORMED, None),
    (b"\xff\xfe{}", ErrorCode.MALFORMED, None),
    ("[]", ErrorCode.MALFORMED, None),
    ('"hello"', ErrorCode.MALFORMED, None),
    ("null", ErrorCode.MALFORMED, None),
    ('{"type":"ping"}\n{"type":"ping"}', ErrorCode.MALFORMED, None),
    ('{"type":"ping","id":NaN}', ErrorCode.MALFORMED, None),
    ("[" * 2000 + "]" * 2000, ErrorCode.MALFORMED, None),
    ("{}", ErrorCode.MISSING_FIELD, "type"),
    ('{"type":null}', ErrorCode.MISSING_FIELD, "type"),
    ('{"type":5}', ErrorCode.INVALID_FIELD, "type"),
    ('{"type":"hullo"}', ErrorCode.UNKNOWN_TYPE, "type"),
    ('{"type":"welcome"}', ErrorCode.UNKNOWN_TYPE, "type"),  # a server frame
    ('{"type":"HELLO","token":"t"}', ErrorCode.UNKNOWN_TYPE, "type"),
    ('{"type":"hello","token":5}', ErrorCode.INVALID_FIELD, "token"),
    ('{"type":"hello","token":"t","since":-1,"epoch":"e"}', ErrorCode.INVALID_FIELD, "since"),
    ('{"type":"hello","token":"t","since":"41","epoch":"e"}', ErrorCode.INVALID_FIELD, "since"),
    ('{"type":"hello","token":"t","since":true,"epoch":"e"}', ErrorCode.INVALID_FIELD, "since"),
    ('{"type":"hello","token":"t","since":4.5,"epoch":"e"}', ErrorCode.INVALID_FIELD, "since"),
    (
        '{"type":"hello","token":"t","since":9007199254740992,"epoch":"e"}',
        ErrorCode.INVALID_FIELD,
        "since",
    ),
    ('{"type":"hello","token":"t","since":41}', ErrorCode.MISSING_FIELD, "epoch"),
    ('{"type":"hello","token":"t","epoch":"e"}', ErrorCode.MISSING_FIELD, "since"),
    ('{"type":"hello","token":"t","since":1,"epoch":""}', ErrorCode.INVALID_FIELD, "epoch"),
    ('{"type":"hello","token":"t","since":1,"epoch":7}', ErrorCode.INVALID_FIELD, "epoch"),
    (
        '{"type":"hello","token":"t","since":1,"epoch":"' + "e" * 65 + '"}',
        ErrorCode.INVALID_FIELD,
        "epoch",
    ),
    ('{"type":"hello","token":"t","rooms":"room:a"}', ErrorCode.INVALID_FIELD, "rooms"),
    ('{"type":"hello","token":"t","rooms":[1]}', ErrorCode.INVALID_FIELD, "rooms[0]"),
    ('{"type":"hello","token":"t","rooms":["room:a","room:b.c"]}', ErrorCode.BAD_ROOM, "rooms[1]"),
    ('{"type":"hello","token":"t","rooms":["tenant"]}', ErrorCode.BAD_ROOM, "rooms[0]"),
    ('{"type":"subscribe"}', ErrorCode.MISSING_FIELD, "room"),
    ('{"type":"subscribe","room":5}', ErrorCode.INVALID_FIELD, "room"),
    ('{"type":"subscribe","room":"site-berlin"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"room:"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"room:a.b"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"room:*"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"room:a>"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"room:' + "x" * 65 + '"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"tenant"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"broadcast"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"user:bob"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"role:admin"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"subscribe","room":"room:a","id":-1}', ErrorCode.INVALID_FIELD, "id"),
    ('{"type":"subscribe","room":"room:a","id":"7"}', ErrorCode.INVALID_FIELD, "id"),
    ('{"type":"unsubscribe","room":"user:alice"}', ErrorCode.BAD_ROOM, "room"),
    ('{"type":"refresh","token":["t"]}', ErrorCode.INVALID_FIELD, "token"),
    ('{"type":"ping","id":false}', ErrorCode.INVALID_FIELD, "id"),
]


@pytest.mark.parametrize(("text", "code", "field"), MALFORMED, ids=lambda v: repr(v)[:60])
def test_a_malformed_frame_has_a_precise_error(
    text: str | bytes, code: ErrorCode, field: str | None
) -> None:
    with pytest.raises(TidingsError) as info:
        parse_client_frame(text)
    err = info.value
    assert (err.code, err.code, err.field) == (code, code.value, field), err
    assert err.reason
    frame = parse_server_frames(encode(error_frame(err)))[0]
    assert isinstance(frame, ErrorFrame)
    assert (frame.code, frame.number, frame.field) == (code.value, code.number, field)


def test_too_many_rooms() -> None:
    rooms = [f"room:r{i}" for i in range(5)]
    text = orjson.dumps({"type": "hello", "token": "t", "rooms": rooms}).decode()
    assert len(parse_client_frame(text, max_rooms=5).rooms) == 5  # type: ignore[union-attr]
    with pytest.raises(TidingsError) as info:
        parse_client_frame(text, max_rooms=4)
    assert info.value.code is ErrorCode.TOO_MANY_ROOMS


def test_an_oversize_frame_is_refused_before_parsing() -> None:
    padding = "x" * DEFAULT_MAX_FRAME_BYTES
    with pytest.raises(TooLarge) as info:
        parse_client_frame('{"type":"ping","pad":"' + padding + '"}')
    assert info.value.code is ErrorCode.TOO_LARGE
    assert info.value.code.close_code == CloseCode.MESSAGE_TOO_BIG
    assert info.value.http_status == 413
    # Limits count bytes, not characters: 3 bytes each in UTF-8.
    text = '{"type":"ping","pad":"' + "€" * 400 + '"}'
    assert len(text) < 1200 < len(text.encode())
    parse_client_frame(text, max_bytes=1300)
    with pytest.raises(TooLarge):
        parse_client_frame(text, max_bytes=1200)
    with pytest.raises(TooLarge):
        parse_client_frame(text.encode(), max_bytes=1200)
    with pytest.raises(TooLarge):  # not JSON, but too large is what counts
        parse_client_frame(b"\x00" * 2000, max_bytes=1000)


# --- server frames ---------------------------------------------------------------------------

COUNTS = {
    "total": 3,
    "unread": 2,
    "unseen": 1,
    "unread_by_severity": {"info": 1, "success": 0, "warning": 1, "error": 0, "critical": 0},
}
SERVER_FRAMES: list[ServerFrame] = [
    Welcome(
        connection="c-01",
        tenant="acme",
        user="alice",
        roles=("admin",),
        rooms=("tenant", "user:alice", "role:admin", "broadcast", "room:site-berlin"),
        seq=57,
        epoch="18a3f",
        recovered=True,
        expires_at=1790000000,
    ),
    Welcome("c-02", "acme", "bob", (), ("tenant",), 0, "18a3f", False, None),
    NotificationFrame(
        seq=42,
        id="01JZ",
        event="incident.created",
        room="tenant",
        time="2026-03-04T05:06:07.890123Z",
        title="t",
        message="m",
        severity="warning",
        data={"a": [1, {"b": None}]},
    ),
    Synced(seq=57),
    ErrorFrame(code="forbidden", number=211, reason="no", field="room", id=3),
    ErrorFrame(code="token_expired", number=203, reason="expired", close=4401),
    ReconnectFrame(delay_ms=1500),
    Reset(seq=900, epoch="18a40", reason=ResetReason.OUT_OF_RANGE.value),
    Subscribed(room="room:hq", id=1),
    Unsubscribed(room="room:hq"),
    Unsubscribed(room="room:hq", reason=UnsubscribeReason.FORBIDDEN.value),
    Refreshed(expires_at=1790000600.5, rooms=("tenant", "user:alice"), id=4),
    Refreshed(expires_at=None, rooms=()),
    Pong(id=5),
    Pong(),
    Welcome("c-03", "acme", "bob", (), ("tenant",), 0, "18a3f", False, None, inbox=COUNTS),
    InboxFrame(counts=COUNTS, ids=("01JZ", "01JY"), set={"read": True}),
    InboxFrame(counts=COUNTS, ids=(), set={"read": True}, all=True),
    InboxFrame(counts=COUNTS, ids=(), set={}, muted=("billing", "audit")),
]


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=lambda f: f.type)
def test_server_frames_round_trip(frame: ServerFrame) -> None:
    data = encode(frame)
    assert b"\n" not in data
    assert orjson.loads(data)["type"] == frame.type
    assert parse_server_frames(data) == [frame]


def test_every_server_frame_type_is_covered() -> None:
    assert {f.type for f in SERVER_FRAMES} == set(SERVER_FRAME_TYPES)


def test_what_a_frame_leaves_out() -> None:
    """None is left out unless declared null; hello's rooms only when there are some, its
    since and epoch only together."""
    assert Hello(token="t").to_dict() == {"type": "hello", "token": "t"}
    assert Hello(token="t", since=0, epoch="e", rooms=("room:a",)).to_dict() == {
        "type": "hello",
        "token": "t",
        "since": 0,
        "epoch": "e",
        "rooms": ["room:a"],
    }
    welcome = Welcome("c", "acme", "bob", (), (), 0, "e", False)
    assert welcome.to_dict()["expires_at"] is None
    assert "inbox" not in welcome.to_dict()  # no inbox answer: no field (old clients: as before)
    assert InboxFrame(counts=COUNTS, ids=(), set={}).to_dict() == {
        "type": "inbox",
        "counts": COUNTS,
        "ids": [],
        "set": {},
    }
    assert Refreshed(expires_at=None).to_dict() == {
        "type": "refreshed",
        "expires_at": None,
        "rooms": [],
    }
    assert Unsubscribed(room="room:a", id=0).to_dict() == {
        "type": "unsubscribed",
        "room": "room:a",
        "id": 0,
    }
    assert (
        encode(ReconnectFrame(delay_ms=5))
        == b'{"type":"reconnect","delay_ms":5,"reason":"draining"}'
    )


def test_a_client_skips_what_it_does_not_know_yet() -> None:
    lines = [b'{"type":"gossip","x":1}', b'{"type":"pong","id":1,"new_field":true}', b""]
    assert parse_server_frames(b"\n".join(lines)) == [Pong(id=1)]
    unknown = parse_server_frames(b'{"type":"error","code":"brand_new","number":999,"reason":"r"}')
    assert isinstance(unknown[0], ErrorFrame)
    assert unknown[0].error_code is None


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1]",
        b'{"type":"synced"}',
        b'{"type":"synced","seq":"5"}',
        b'{"type":"synced","seq":true}',
        b'{"type":"welcome","connection":"c"}',
        b'{"type":"notification","seq":1,"id":"x","event":"a.b","room":"tenant","time":"t",'
        b'"title":"t","message":"m","severity":"info","data":[]}',
    ],
)
def test_a_broken_server_frame_is_reported(line: bytes) -> None:
    with pytest.raises(Malformed):
        parse_server_frames(line)


# --- notifications and batching --------------------------------------------------------------


def test_a_notification_line() -> None:
    line = encode_notification(notification(), 42, "room:site-berlin")
    assert orjson.loads(line) == {
        "type": "notification",
        "seq": 42,
        "id": "01JZ0000000000000000000000",
        "event": "incident.created",
        "room": "room:site-berlin",
        "time": "2026-03-04T05:06:07.890123Z",
        "title": "Fire alarm",
        "message": "Building 3, floor 2",
        "severity": "warning",
        "data": {"incident": 42, "tags": ["a", "b"]},
    }
    whole_second = notification(time=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert orjson.loads(encode_notification(whole_second, 1, "tenant"))["time"] == (
        "2026-03-04T05:06:07Z"
    )


def test_the_notification_line_is_the_frame_s_own_encoding() -> None:
    """encode_notification is written by hand for speed; the declared frame says the same."""
    n = notification()
    frame = NotificationFrame(
        seq=42,
        id=n.id,
        event=n.event,
        room="room:site-berlin",
        time="2026-03-04T05:06:07.890123Z",
        title=n.title,
        message=n.message,
        severity=n.severity.value,
        data=orjson.loads(n.data),
    )
    assert encode_notification(n, 42, "room:site-berlin") == encode(frame)


def test_a_notification_line_never_holds_a_raw_newline() -> None:
    n = notification(
        title="two\nlines",
        message="carriage\r\nreturn \u2028 separator",
        data=b'{\n  "pretty": "printed",\n  "nested": {"k": "v\\nw"}\n}',
    )
    line = encode_notification(n, 7, "tenant")
    assert b"\n" not in line and b"\r" not in line
    body = orjson.loads(line)
    assert body["title"] == "two\nlines"
    assert body["message"] == "carriage\r\nreturn \u2028 separator"
    assert body["data"] == {"pretty": "printed", "nested": {"k": "v\nw"}}


def test_several_notifications_batch_into_one_frame_in_order() -> None:
    lines = [
        encode_notification(notification(id=f"n{seq}", title=f"#{seq}"), seq, "tenant")
        for seq in (41, 42, 43)
    ]
    frame = b"\n".join([*lines, encode(Synced(seq=43))])
    assert frame.count(b"\n") == 3
    parsed = parse_server_frames(frame)
    assert [(f.type, getattr(f, "seq", None)) for f in parsed] == [
        ("notification", 41),
        ("notification", 42),
        ("notification", 43),
        ("synced", 43),
    ]
    assert [f.title for f in parsed if isinstance(f, NotificationFrame)] == ["#41", "#42", "#43"]
    assert parse_server_frames(frame.decode()) == parsed  # a text frame, as received
    # One notification alone is a whole frame: no separator, nothing around it.
    assert [(f.type, getattr(f, "seq", None)) for f in parse_server_frames(lines[0])] == [
        ("notification", 41)
    ]


def test_a_frame_of_one_notification_carries_its_line_unchanged() -> None:
    """What the hub writes to every member (test_fanout checks it is one shared object): the
    line behind the room the WebSocket header needs, byte for byte."""
    line = encode_notification(notification(), 42, "tenant")
    frame = frame_buffer(line)
    assert len(frame) == HEADROOM + len(line)
    assert bytes(frame[HEADROOM:]) == line


@pytest.mark.parametrize("wire", [False, True], ids=["Notification", "WireNotification"])
def test_the_copied_line_is_still_the_frame_s_own_encoding(wire: bool) -> None:
    """The exact-size copy changes where the bytes live, never what they are: for a plain and
    a critical notification, a non-ASCII title and a large payload, from either input type."""
    cases = [
        notification(),
        notification(severity=Severity.CRITICAL, data=b"{}", title="\u00e9t\u00e9 \U0001f525"),
        notification(
            time=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), data=b'{"x":"' + b"a" * 5000 + b'"}'
        ),
    ]
    for case in cases:
        n: Notification | WireNotification = decode_wire(case.to_bytes()) if wire else case
        line = encode_notification(n, 42, "user:u1")
        assert type(line) is bytes
        frame = NotificationFrame(
            seq=42,
            id=case.id,
            event=case.event,
            room="user:u1",
            time=orjson.dumps(case.time, option=orjson.OPT_UTC_Z).decode().strip('"'),
            title=case.title,
            message=case.message,
            severity=case.severity.value,
            data=orjson.loads(case.data),
        )
        assert line == encode(frame)


def test_a_kept_line_holds_no_more_memory_than_its_bytes() -> None:
    """The window keeps every line for minutes: each must be an allocation of its own size,
    not the buffer orjson wrote it into (4 KiB with orjson 3.13)."""
    n = notification()
    size = len(encode_notification(n, 42, "tenant"))
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_notification(n, seq, "tenant") for seq in range(1000, 1200)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    # The bytes object's header (33 bytes) and the list's slot for it: well under 100 more.
    assert held / len(kept) < size + 100, (held / len(kept), size)


# --- error frames ----------------------------------------------------------------------------


def test_error_frames_from_codes_and_exceptions() -> None:
    f = error_frame(ErrorCode.RATE_LIMITED, close=True)
    assert (f.code, f.number, f.close, f.reason) == (
        "rate_limited",
        111,
        4029,
        "frames sent too fast",
    )
    f = error_frame(ErrorCode.FORBIDDEN, "no room:hq for you", field="room", id=4)
    assert f.to_dict() == {
        "type": "error",
        "code": "forbidden",
        "number": 211,
        "reason": "no room:hq for you",
        "field": "room",
        "id": 4,
    }
    f = error_frame(TooLarge("frame is 20000 bytes"), close=True)
    assert (f.code, f.close) == ("too_large", 1009)


def test_an_unexpected_exception_is_internal_and_does_not_leak() -> None:
    f = error_frame(RuntimeError("password=hunter2 at /srv/app.py:12"), close=True)
    assert (f.code, f.number, f.close) == ("internal", 100, 1011)
    assert "hunter2" not in f.reason
    g = error_frame(TidingsError("boom"))
    assert g.code == "internal"


# --- the code tables -------------------------------------------------------------------------

# Published numbers: a change here breaks every client that switches on them. Append only.
PUBLISHED_ERRORS = {
    "internal": (100, 1011),
    "malformed": (101, 4000),
    "unknown_type": (102, 4000),
    "missing_field": (103, 4000),
    "invalid_field": (104, 4000),
    "bad_room": (105, 4000),
    "too_many_rooms": (106, 4000),
    "hello_required": (107, 4000),
    "unexpected_frame": (108, 4000),
    "hello_timeout": (109, 4008),
    "too_large": (110, 1009),
    "rate_limited": (111, 4029),
    "token_missing": (200, 4001),
    "token_malformed": (201, 4001),
    "token_invalid_signature": (202, 4001),
    "token_expired": (203, 4401),
    "token_not_yet_valid": (204, 4001),
    "token_bad_audience": (205, 4001),
    "token_bad_issuer": (206, 4001),
    "token_algorithm_not_allowed": (207, 4001),
    "token_claim_missing": (208, 4001),
    "token_claim_invalid": (209, 4001),
    "jwks_unavailable": (210, 1013),
    "forbidden": (211, 4003),
    "identity_changed": (212, 4003),
    "quota_exceeded": (213, 4029),
    "token_revoked": (215, 4003),
    "user_connections_full": (218, 4029),
    "slow_consumer": (300, 1013),
    "overloaded": (301, 1013),
    "restarting": (302, 1012),
    "unavailable": (303, 1013),
}
PUBLISHED_CLOSE_CODES = {
    1000: "backoff",
    1009: "never",
    1011: "backoff",
    1012: "backoff",
    1013: "backoff",
    4000: "never",
    4001: "new_token",
    4003: "never",
    4008: "backoff",
    4029: "backoff",
    4401: "new_token",
}


def test_the_error_table_is_stable() -> None:
    assert set(ERROR_TABLE) == set(ErrorCode)
    actual = {c.value: (c.number, int(c.close_code)) for c in ErrorCode if c.on_wire}
    assert actual == PUBLISHED_ERRORS


def test_codes_and_numbers_are_unique() -> None:
    numbers = [c.number for c in ErrorCode]
    assert len(set(numbers)) == len(numbers)
    assert len({c.value for c in ErrorCode}) == len(ErrorCode)
    assert all(re.fullmatch(r"[a-z_]{1,32}", c.value) for c in ErrorCode)  # fits a close reason


def test_the_close_codes_are_stable() -> None:
    assert {int(c): c.reconnect.value for c in CloseCode} == PUBLISHED_CLOSE_CODES
    assert all(isinstance(c.reconnect, Reconnect) and c.meaning for c in CloseCode)
    used = {c.close_code for c in ErrorCode if c.on_wire}
    assert used == set(CloseCode) - {CloseCode.NORMAL}, "every close code has an error behind it"


def error_table_markdown() -> str:
    """The error table of docs/protocol.md section 8, as codes.py says it (all columns)."""
    lines = [
        "| number | code | HTTP | close | closes | retryable | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for code, row in ERROR_TABLE.items():
        close = "—" if row.close is None else str(int(row.close))
        closes = "—" if row.close is None else "always" if row.fatal else "in hello"
        retryable = "yes" if row.retryable else "no"
        lines.append(
            f"| {row.number} | `{code.value}` | {int(row.http)} | {close} | {closes} "
            f"| {retryable} | {row.meaning} |"
        )
    return "\n".join(lines)


def test_the_document_lists_every_code() -> None:
    """docs/protocol.md is normative: its tables must say what the code says."""
    text = DOC.read_text()
    generated = text.split("<!-- BEGIN ERROR TABLE")[1].split("-->\n", 1)[1]
    generated = generated.split("<!-- END ERROR TABLE -->")[0]
    assert generated.strip() == error_table_markdown(), (
        "docs/protocol.md section 8 is stale: regenerate with python tests/unit/test_protocol.py"
    )
    rows = re.findall(
        r"^\| (\d{3}) \| `([a-z_]+)` \| \d{3} \| (\d{4}) \| (always|in hello) \|", text, re.M
    )
    documented = {code: (int(n), int(close), when == "always") for n, code, close, when in rows}
    wire = {c.value: (c.number, int(c.close_code), c.always_fatal) for c in ErrorCode if c.on_wire}
    assert documented == wire
    documented_close = {int(m.group(1)) for m in re.finditer(r"^\| (\d{4}) \|", text, re.M)}
    assert documented_close == {int(c) for c in CloseCode}
    for frame_type in (*CLIENT_FRAME_TYPES, *SERVER_FRAME_TYPES):
        assert f'"type":"{frame_type}"' in text.replace(" ", ""), frame_type


# Every code the publisher sidecar answers with (publisher/app.py, publishing.py, relay.py).
PUBLISHER_CODES = {
    ErrorCode.INTERNAL,
    ErrorCode.MALFORMED,
    ErrorCode.INVALID_FIELD,
    ErrorCode.TOO_LARGE,
    ErrorCode.UNKNOWN_EVENT,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED,
    ErrorCode.CONFLICT,
    ErrorCode.FORBIDDEN,
    ErrorCode.UNAUTHORIZED,
    ErrorCode.OUTBOX_FULL,
    ErrorCode.PUBLISH_RATE_LIMITED,
    ErrorCode.DAILY_QUOTA_EXCEEDED,
}


def test_the_publisher_document_lists_its_codes() -> None:
    """docs/publisher.md shows every row a publisher meets, as the table says it."""
    text = PUBLISHER_DOC.read_text()
    errors = text.split("### Errors\n")[1].split("\n### ")[0]
    assert "(protocol.md#8-errors)" in errors  # the full table
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \| (\d{3})[^|]* \| (yes|no) \|", errors, re.M)
    documented = {code: (int(n), int(status), retry == "yes") for n, code, status, retry in rows}
    expected = {c.value: (c.number, int(c.http_status), c.retryable) for c in PUBLISHER_CODES}
    assert documented == expected


if __name__ == "__main__":
    print(error_table_markdown())  # the table of docs/protocol.md section 8
