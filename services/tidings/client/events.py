"""Typed builders for the catalogue's events: the request bodies services sent before.

Each returns the dict that ``Publisher.publish`` (or the sidecar) accepts, with the event's
identifying fields in ``data`` under stable names, so front ends can link to the object::

    await publisher.publish(events.incident_created("acme", incident_id="INC-7", title="Spill"))
"""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from tidings.envelope import Severity

Body = dict[str, Any]


class Target(TypedDict, total=False):
    """Who hears of it (at most one of user, role, room; the whole tenant when none) and
    the notification's own id (its idempotency key; a fresh one when omitted)."""

    user: str | None
    role: str | None
    room: str | None
    id: str | None


def _body(
    tenant: str,
    event: str,
    *,
    title: str,
    message: str,
    severity: Severity | str,
    data: dict[str, Any],
    **target: Unpack[Target],
) -> Body:
    unknown = sorted(target.keys() - Target.__optional_keys__)
    if unknown:  # what a signature of its own would refuse
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    body: Body = {
        "tenant": tenant,
        "event": event,
        "title": title,
        "message": message,
        "severity": str(severity),  # checked where it is published, with the other fields
        "data": {k: v for k, v in data.items() if v is not None},
    }
    targets = {k: v for k in ("user", "role", "room") if (v := target.get(k)) is not None}
    if len(targets) > 1:
        raise ValueError(f"choose one audience, not {' and '.join(targets)}")
    if targets:
        body["audience"] = targets
    if (ident := target.get("id")) is not None:
        body["id"] = ident
    return body


def incident_created(
    tenant: str,
    *,
    incident_id: str,
    title: str,
    message: str = "",
    severity: Severity | str = Severity.WARNING,
    site: str | None = None,
    **target: Unpack[Target],
) -> Body:
    return _body(
        tenant,
        "incident.created",
        title=title,
        message=message or f"Incident {incident_id} was reported.",
        severity=severity,
        data={"incident_id": incident_id, "site": site},
        **target,
    )


def incident_status_changed(
    tenant: str,
    *,
    incident_id: str,
    status: str,
    previous: str | None = None,
    title: str | None = None,
    severity: Severity | str = Severity.INFO,
    **target: Unpack[Target],
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
        **target,
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
        id=id,
    )


def work_permit_status_changed(
    tenant: str,
    *,
    permit_id: str,
    status: str,
    **target: Unpack[Target],
) -> Body:
    return _body(
        tenant,
        "work_permit.status_changed",
        title=f"Work permit {permit_id} is {status}",
        message=f"Work permit {permit_id} moved to {status}.",
        severity=Severity.INFO,
        data={"permit_id": permit_id, "status": status},
        **target,
    )


def quota_warning(
    tenant: str, *, quota: str, used: int, limit: int, role: str | None = "admin"
) -> Body:
    """A tenant is close to a quota; by default only its admins hear about it."""
    title = f"{quota} quota at {used * 100 // max(limit, 1)}%"
    return _quota(tenant, "quota.warning", title, Severity.WARNING, quota, used, limit, role)


def quota_exceeded(
    tenant: str, *, quota: str, used: int, limit: int, role: str | None = "admin"
) -> Body:
    title = f"{quota} quota exceeded"
    return _quota(tenant, "quota.exceeded", title, Severity.ERROR, quota, used, limit, role)


def _quota(
    tenant: str,
    event: str,
    title: str,
    severity: Severity,
    quota: str,
    used: int,
    limit: int,
    role: str | None,
) -> Body:
    return _body(
        tenant,
        event,
        title=title,
        message=f"{used} of {limit} {quota} used.",
        severity=severity,
        data={"quota": quota, "used": used, "limit": limit},
        role=role,
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
    )
