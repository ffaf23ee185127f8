"""Who sees a stored notification: the gateway's rule, :meth:`Claims.allows`, as a SQL clause.

The gateway delivers a tenant's notifications (``live.tenant.<t>.>``) and the broadcasts to a
connection, and among them the audiences ``Claims.allows`` accepts. :func:`visible_to` says the
same in SQL, built from the same claims, so the inbox and the live feed cannot disagree; a
property test (tests/integration/test_inbox_visibility.py) runs random claims against random
stored audiences on SQLite and PostgreSQL and compares with :func:`allows` row by row.

Room patterns are ``*`` wildcards over room-name characters. Stored room names hold nothing
but those characters, so ``*`` is "any run" in SQL too: GLOB on SQLite (case-sensitive; none of
the name characters is special to it), LIKE with ``_`` escaped on PostgreSQL (LIKE is
case-sensitive there, and ``_`` would otherwise match any one character).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BindParameter, ColumnElement, and_, false, literal, or_

from tidings.auth.claims import Claims
from tidings.inbox.schema import BROADCAST_TENANT, notifications
from tidings.subjects import Audience, AudienceKind

_c = notifications.c
Value = str | BindParameter[str]  # a caller's name, or a parameter bound at execution


def allows(claims: Claims, tenant: str, audience: Audience) -> bool:
    """Whether the holder of ``claims`` receives a notification of ``tenant`` for ``audience``:
    the tenant scoping of the gateway's live subscription, then the one rule."""
    in_scope = (
        audience.kind is AudienceKind.BROADCAST
        if tenant == BROADCAST_TENANT
        else tenant == claims.tenant and audience.kind is not AudienceKind.BROADCAST
    )
    return in_scope and claims.allows(audience)


def _room_clause(patterns: tuple[str, ...], dialect: str) -> ColumnElement[bool]:
    exact = sorted({p for p in patterns if "*" not in p})
    wild = sorted({p for p in patterns if "*" in p})
    clauses: list[ColumnElement[bool]] = []
    if exact:
        clauses.append(_c.audience_name.in_(exact))
    for pattern in wild:
        if dialect == "sqlite":
            clauses.append(_c.audience_name.op("GLOB")(literal(pattern)))
        else:
            like = pattern.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
            clauses.append(_c.audience_name.like(like.replace("*", "%"), escape="\\"))
    if not clauses:
        return false()
    return and_(_c.audience_kind == AudienceKind.ROOM.value, or_(*clauses))


def visible_to(claims: Claims, dialect: str) -> ColumnElement[bool]:
    """The WHERE clause selecting exactly the notifications :func:`allows` accepts.

    ``dialect`` is the engine's dialect name (``sqlite`` or ``postgresql``).
    """
    own = and_(
        _c.tenant == claims.tenant,
        or_(
            _c.audience_kind == AudienceKind.TENANT.value,
            and_(_c.audience_kind == AudienceKind.USER.value, _c.audience_name == claims.user),
            and_(
                _c.audience_kind == AudienceKind.ROLE.value,
                _c.audience_name.in_(sorted(claims.roles)),
            )
            if claims.roles
            else false(),
            _room_clause(claims.room_patterns, dialect),
        ),
    )
    broadcast = and_(
        _c.tenant == BROADCAST_TENANT, _c.audience_kind == AudienceKind.BROADCAST.value
    )
    return or_(own, broadcast)


def visible_branches(claims: Claims, dialect: str) -> list[ColumnElement[bool]]:
    """:func:`visible_to` as disjoint-by-audience parts, each an equality prefix of the
    visibility index ``(tenant, audience_kind, audience_name, pk)`` where it can be: a page
    reads each part backwards by ``pk`` and stops after a page's worth, instead of sorting
    every visible row (tenant-wide and broadcast rows are stored with the name ``''``).
    Their OR selects exactly what :func:`visible_to` selects (tested)."""
    return branches(claims.tenant, claims.user, sorted(claims.roles), claims.room_patterns, dialect)


def branches(
    tenant: Value, user: Value, roles: Sequence[Value], patterns: tuple[str, ...], dialect: str
) -> list[ColumnElement[bool]]:
    """:func:`visible_branches` of a caller given by parts: the tenant, the user and the roles
    (sorted) may be bound parameters, so that a statement built once serves every caller with
    as many roles and the same room patterns (the counts' cached statement)."""
    t = _c.tenant == tenant
    parts = [
        and_(t, _c.audience_kind == AudienceKind.TENANT.value, _c.audience_name == ""),
        and_(t, _c.audience_kind == AudienceKind.USER.value, _c.audience_name == user),
        *(
            and_(t, _c.audience_kind == AudienceKind.ROLE.value, _c.audience_name == role)
            for role in roles
        ),
        and_(
            _c.tenant == BROADCAST_TENANT,
            _c.audience_kind == AudienceKind.BROADCAST.value,
            _c.audience_name == "",
        ),
    ]
    if patterns:
        parts.append(and_(t, _room_clause(patterns, dialect)))
    return parts
