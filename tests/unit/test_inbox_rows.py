"""A stream message becomes an inbox row only when it is a whole, valid notification stored
under its own subject; otherwise a dead letter naming why."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from tidings.envelope import Notification
from tidings.inbox.rows import Rejected, StreamMessage, dead_row, notification_row
from tidings.subjects import Audience, AudienceKind, Route

GOOD = Notification(
    id="n-1",
    tenant="acme",
    event="incident.created",
    audience=Audience(AudienceKind.ROOM, "site-1"),
    time=datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC),
    title="Pump failed",
    message="Pump 3 stopped",
    data=b'{"pump": 3}',
)
SUBJECT = Route("acme", GOOD.audience, GOOD.event).subject


def message(n: Notification = GOOD, subject: str = SUBJECT) -> StreamMessage:
    return StreamMessage("e1", 7, subject, n.to_bytes())


def test_a_good_message_becomes_its_row() -> None:
    row = notification_row(message())
    assert row["tenant"] == "acme"
    assert (row["audience_kind"], row["audience_name"]) == ("room", "site-1")
    assert (row["epoch"], row["seq"], row["id"]) == ("e1", 7, "n-1")
    assert (row["event"], row["domain"], row["severity"]) == (
        "incident.created",
        "incident",
        "info",
    )
    assert row["time"] == GOOD.time
    assert row["data"] == '{"pump": 3}'


def test_a_broadcast_is_stored_under_no_tenant() -> None:
    n = dataclasses.replace(GOOD, tenant=None, audience=Audience(AudienceKind.BROADCAST))
    row = notification_row(message(n, "broadcast.incident.created"))
    assert (row["tenant"], row["audience_kind"], row["audience_name"]) == ("", "broadcast", "")


@pytest.mark.parametrize(
    ("change", "subject", "reason"),
    [
        ({"title": " "}, SUBJECT, "invalid"),
        ({"message": "x" * 4001}, SUBJECT, "invalid"),
        ({"title": "a\x00b"}, SUBJECT, "invalid"),
        ({"data": b"[1, 2]"}, SUBJECT, "invalid"),
        ({"data": b"{not json"}, SUBJECT, "invalid"),
        ({"id": "has space"}, SUBJECT, "invalid"),
        ({"tenant": "evil"}, SUBJECT, "subject_mismatch"),
        ({}, "tenant.acme.incident.created", "subject_mismatch"),
    ],
)
def test_what_is_not_a_whole_notification_is_rejected(
    change: dict[str, object], subject: str, reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        notification_row(message(dataclasses.replace(GOOD, **change), subject))  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_bytes_that_are_no_envelope_are_undecodable_and_kept_whole() -> None:
    msg = StreamMessage("e1", 9, SUBJECT, b"\xff\xfe not protobuf")
    with pytest.raises(Rejected) as caught:
        notification_row(msg)
    assert caught.value.reason == "undecodable"
    dead = dead_row(msg, caught.value)
    assert (dead["seq"], dead["subject"], dead["payload"]) == (9, SUBJECT, msg.payload)
    assert dead["reason"].startswith("undecodable: ")
