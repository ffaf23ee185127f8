"""Stored notifications with a chosen event, severity and storage time, for the preference and
retention tests (built like the writer builds them: :func:`tidings.inbox.rows.notification_row`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tidings.envelope import Notification, Severity, new_id
from tidings.inbox.rows import StreamMessage, notification_row
from tidings.subjects import TENANT_AUDIENCE, Audience, AudienceKind, Route

EPOCH = "notes"


def note(
    seq: int,
    tenant: str | None = "acme",
    audience: Audience = TENANT_AUDIENCE,
    *,
    event: str = "incident.created",
    severity: Severity = Severity.INFO,
    stored_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``notifications`` row of such a message (``stored_at`` now unless given)."""
    route = Route(tenant, audience, event)
    n = Notification(
        id=new_id(),
        tenant=tenant,
        event=event,
        audience=audience,
        time=datetime.now(UTC),
        title=f"n{seq}",
        message="m",
        severity=severity,
    )
    stored = notification_row(StreamMessage(EPOCH, seq, route.subject, n.to_bytes()))
    if stored_at is not None:
        stored["stored_at"] = stored_at
    return stored


def user(name: str) -> Audience:
    return Audience(AudienceKind.USER, name)


def role(name: str) -> Audience:
    return Audience(AudienceKind.ROLE, name)
