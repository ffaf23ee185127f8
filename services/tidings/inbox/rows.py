"""A stream message as an inbox row, or as a dead letter saying why it is not one.

Everything is checked before anything is written: the envelope decodes, every field is in the
range the publisher enforces (``tidings.publishing``), ``data`` is a JSON object, and the
subject the message was stored under is the one its envelope routes to (a message published
straight to the stream with a mismatched subject would otherwise be shown to the wrong
audience). The event catalogue is the publisher's business: the inbox keeps what was stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.message import DecodeError

from tidings.envelope import Notification
from tidings.errors import TidingsError
from tidings.inbox.schema import BROADCAST_TENANT
from tidings.publishing import MAX_MESSAGE, MAX_SOURCE, MAX_TITLE
from tidings.subjects import Route, check_id


class Rejected(Exception):
    """Why a message is not a notification; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """What the writer needs of one message: its position, subject and bytes."""

    epoch: str
    seq: int
    subject: str
    payload: bytes


def _decode(payload: bytes) -> Notification:
    try:
        return Notification.from_bytes(payload)
    except (DecodeError, KeyError, ValueError, OverflowError) as exc:
        raise Rejected("undecodable", f"not a Tidings envelope ({type(exc).__name__})") from None
    except TidingsError as exc:
        raise Rejected("invalid", str(exc)) from None


def _check(n: Notification, subject: str) -> None:
    try:
        check_id(n.id, field="id")
        route = Route(n.tenant, n.audience, n.event)
    except TidingsError as exc:
        raise Rejected("invalid", str(exc)) from None
    if route.subject != subject:
        raise Rejected(
            "subject_mismatch", f"envelope routes to {route.subject}, stored as {subject}"
        )
    for name, value, limit in (
        ("title", n.title, MAX_TITLE),
        ("message", n.message, MAX_MESSAGE),
        ("source", n.source, MAX_SOURCE),
    ):
        if len(value) > limit:
            raise Rejected("invalid", f"{name} is {len(value)} characters long; at most {limit}")
        if "\x00" in value:  # PostgreSQL text cannot hold NUL: it would poison the batch
            raise Rejected("invalid", f"{name} contains a NUL character")
    if not n.title.strip() or not n.message.strip():
        raise Rejected("invalid", "title and message must not be blank")
    try:
        data = orjson.loads(n.data)
    except orjson.JSONDecodeError:
        raise Rejected("invalid", "data is not JSON") from None
    if not isinstance(data, dict):
        raise Rejected("invalid", "data is not a JSON object")


def notification_row(msg: StreamMessage, *, now: datetime | None = None) -> dict[str, Any]:
    """The ``notifications`` row of ``msg``, or :class:`Rejected`."""
    n = _decode(msg.payload)
    _check(n, msg.subject)
    return {
        "epoch": msg.epoch,
        "seq": msg.seq,
        "id": n.id,
        "tenant": n.tenant or BROADCAST_TENANT,
        "audience_kind": n.audience.kind.value,
        "audience_name": n.audience.name,
        "event": n.event,
        "domain": n.event.split(".", 1)[0],
        "time": n.time,
        "source": n.source,
        "title": n.title,
        "message": n.message,
        "severity": n.severity.value,
        "data": n.data.decode(),
        "stored_at": now or datetime.now(UTC),
    }


def dead_row(msg: StreamMessage, why: Rejected, *, now: datetime | None = None) -> dict[str, Any]:
    """The ``dead_letters`` row of a message that is not a notification."""
    return {
        "epoch": msg.epoch,
        "seq": msg.seq,
        "subject": msg.subject[:512],
        "reason": f"{why.reason}: {why.detail}"[:2000],
        "payload": msg.payload,
        "received_at": now or datetime.now(UTC),
    }
