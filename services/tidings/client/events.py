"""Typed builders for the catalogue's events: the request bodies services sent before.

Each returns the dict that ``Publisher.publish`` (or the sidecar) accepts, with the event's
identifying fields in ``data`` under stable names, so front ends can link to the object::

    await publisher.publish(events.incident_created("acme", incident_id="INC-7", title="Spill"))
"""

from __future__ import annotations

from typing import Any

from tidings.envelope import Severity

Body = dict[str, Any]


def _body(
    tenant: str,
    event: str,
    *,
    title: str,
    message: str,
    severity: Severity | str,
    data: dict[str, Any],
    user: str | None,
    role: str | None,
    room: str | None,
    id: str | None,
) -> Body:
    body: Body = {
        "tenant": tenant,
        "event": event,
        "title": title,
        "message": message,
        "severity": str(severity),  # checked where it is published, with the other fields
        "data": {k: v for k, v in data.items() if v is not None},
    }
    targets = {k: v for k, v in (("user", user), ("role", role), ("room", room)) if v is not None}
    if len(targets) > 1:
        raise ValueError(f"choose one audience, not {' and '.join(targets)}")
    if targets:
        body["audience"] = targets
    if id is not None:
        body["id"] = id
    return body


def incident_created(
    tenant: str,
    *,
    incident_id: str,
    title: str,
    message: str = "",
    severity: Severity | str = Severity.WARNING,
    site: str | None = None,
    user: str | None = None,
    role: str | None = None,
    room: str | None = None,
    id: str | None = None,
) -> Body:
    return _body(
        tenant,
        "incident.created",
        title=title,
        message=message or f"Incident {incident_id} was reported.",
        severity=severity,
        data={"incident_id": incident_id, "site": site},
        user=user,
        role=role,
        room=room,
        id=id,
    )


def incident_status_changed(
    tenant: str,
    *,
    incident_id: str,
    status: str,
    previous: str | None = None,
    title: str | None = None,
    severity: Severity | str = Severity.INFO,
    user: str | None = None,
    role: str | None = None,
    room: str | None = None,
    id: str | None = None,
) -> Body:
    return _body(
        tenant,
        "incident.status_changed",
        title=title or f"Incident {incident_id} is now {status}",
        message=f"Incident {incident_id} moved from {previous} to {status}."
        if previous
        else f"Incident {incident_id} moved to {status}.",
        severity=severity,
        data={"incident_id": incident_id, "status": status, "previous": previous},
        user=user,
        role=role,
        room=room,
        id=id,
    )


def audit_assigned(
    tenant: str,
    *,
    audit_id: str,
    assignee: str,
    title: str | None = None,
    due: str | None = None,
    id: str | None = None,
) -> Body:
    """Tells the assignee (a user audience) that an audit is theirs."""
    return _body(
        tenant,
        "audit.assigned",
        title=title or f"Audit {audit_id} was assigned to you",
        message=f"Audit {audit_id} is assigned to you" + (f", due {due}." if due else "."),
        severity=Severity.INFO,
        data={"audit_id": audit_id, "assignee": assignee, "due": due},
        user=assignee,
        role=None,
        room=None,
        id=id,
    )


def work_permit_status_changed(
    tenant: str,
    *,
    permit_id: str,
    status: str,
    user: str | None = None,
    role: str | None = None,
    room: str | None = None,
    id: str | None = None,
) -> Body:
    return _body(
        tenant,
        "work_permit.status_changed",
        title=f"Work permit {permit_id} is {status}",
        message=f"Work permit {permit_id} moved to {status}.",
        severity=Severity.INFO,
        data={"permit_id": permit_id, "status": status},
        user=user,
        role=role,
        room=room,
        id=id,
    )


def quota_warning(
    tenant: str, *, quota: str, used: int, limit: int, role: str | None = "admin"
) -> Body:
    """A tenant is close to a quota; by default only its admins hear about it."""
    return _body(
        tenant,
        "quota.warning",
        title=f"{quota} quota at {used * 100 // max(limit, 1)}%",
        message=f"{used} of {limit} {quota} used.",
        severity=Severity.WARNING,
        data={"quota": quota, "used": used, "limit": limit},
        user=None,
        role=role,
        room=None,
        id=None,
    )


def quota_exceeded(
    tenant: str, *, quota: str, used: int, limit: int, role: str | None = "admin"
) -> Body:
    return _body(
        tenant,
        "quota.exceeded",
        title=f"{quota} quota exceeded",
        message=f"{used} of {limit} {quota} used.",
        severity=Severity.ERROR,
        data={"quota": quota, "used": used, "limit": limit},
        user=None,
        role=role,
        room=None,
        id=None,
    )


def system_notification(
    tenant: str, *, title: str, message: str, severity: Severity | str = Severity.INFO
) -> Body:
    return _body(
        tenant,
        "system.notification",
        title=title,
        message=message,
        severity=severity,
        data={},
        user=None,
        role=None,
        room=None,
        id=None,
    )


def user_role_changed(tenant: str, *, user: str, roles: list[str]) -> Body:
    """Tells the user whose roles changed (their next token carries the new roles)."""
    return _body(
        tenant,
        "user.role_changed",
        title="Your roles changed",
        message=f"You now have the roles: {', '.join(roles) or 'none'}.",
        severity=Severity.INFO,
        data={"user": user, "roles": roles},
        user=user,
        role=None,
        room=None,
        id=None,
    )
