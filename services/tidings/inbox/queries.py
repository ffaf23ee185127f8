"""Reading the inbox as one user sees it: a page of items, one item, the counts.

Every query starts from the same three rules: what the caller's claims may see
(:func:`tidings.inbox.visibility.visible_to`, the gateway's rule), what the user's preferences
mute (:func:`tidings.inbox.preferences.unmuted`: a muted domain leaves the bell unless
``critical``), and the user's state: an ``inbox_state`` row where the user changed one
notification, else the user's marks (read / seen everything up to a ``pk``).

Counts are exact (no cap) and count what the bell shows: not archived, not muted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    FromClause,
    Select,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.auth.claims import Claims
from tidings.envelope import Severity
from tidings.inbox.filters import Filter, Status
from tidings.inbox.preferences import muted_select, unmuted, unmuted_by
from tidings.inbox.schema import Pk, inbox_marks, inbox_state, notifications, progress
from tidings.inbox.visibility import Value, branches, visible_to
from tidings.subjects import NAMED_KINDS, Audience, AudienceKind, check_id

n = notifications.c
s = inbox_state.c
m = inbox_marks.c
SEVERITIES = tuple(sev.value for sev in Severity)


@dataclass(frozen=True, slots=True)
class Marks:
    """The user's "read / seen everything up to here" positions (0: never marked)."""

    read_upto: int = 0
    seen_upto: int = 0


async def marks_of(conn: AsyncConnection, tenant: str, user: str) -> Marks:
    query = select(m.read_upto, m.seen_upto).where(m.tenant == tenant, m.user == user)
    found = (await conn.execute(query)).first()
    return Marks(int(found[0]), int(found[1])) if found else Marks()


@dataclass(frozen=True)
class View:
    """One user's view of the notifications: the joined tables and the state expressions.

    The user's marks are joined (one row at most), not read first: one round trip less for
    every list and count (docs/inbox.md, sizing).
    """

    claims: Claims | None  # None: a statement kept for every caller of a shape (bound values)
    dialect: str
    tenant: Value
    user: Value

    @cached_property
    def source(self) -> FromClause:
        state_on = and_(s.notification == n.pk, s.tenant == self.tenant, s.user == self.user)
        marks_on = and_(m.tenant == self.tenant, m.user == self.user)
        return notifications.outerjoin(inbox_state, state_on).outerjoin(inbox_marks, marks_on)

    @cached_property
    def read(self) -> ColumnElement[bool]:
        return func.coalesce(s.read, n.pk <= func.coalesce(m.read_upto, literal(0)))

    @cached_property
    def seen(self) -> ColumnElement[bool]:
        return func.coalesce(s.seen, n.pk <= func.coalesce(m.seen_upto, literal(0)))

    @cached_property
    def archived(self) -> ColumnElement[bool]:
        return func.coalesce(s.archived, false())

    @cached_property
    def visible(self) -> ColumnElement[bool]:
        if self.claims is None:
            raise TypeError("a view kept for every caller has no claims to check")
        return visible_to(self.claims, self.dialect)

    def status(self, status: Status) -> ColumnElement[bool]:
        if status is Status.ARCHIVED:
            return self.archived
        shown = not_(self.archived)
        if status is Status.UNREAD:
            return and_(shown, not_(self.read))
        if status is Status.READ:
            return and_(shown, self.read)
        if status is Status.UNSEEN:
            return and_(shown, not_(self.seen))
        if status is Status.SEEN:
            return and_(shown, self.seen)
        return shown

    def where(self, wanted: Filter, muted: frozenset[str]) -> list[ColumnElement[bool]]:
        """The WHERE clauses of the list (and of a mark-all by filter)."""
        return [self.visible, *self.narrowed(wanted, muted)]

    def narrowed(self, wanted: Filter, muted: frozenset[str]) -> list[ColumnElement[bool]]:
        """What the filter and the preferences keep of the visible notifications."""
        clauses = [unmuted(muted), self.status(wanted.status)]
        if wanted.domain:
            clauses.append(n.domain.in_(wanted.domain))
        if wanted.event:
            clauses.append(n.event.in_(wanted.event))
        if wanted.severity:
            clauses.append(n.severity.in_(wanted.severity))
        if wanted.room:
            clauses.append(or_(*(_room(a) for a in wanted.room)))
        if wanted.since is not None:
            clauses.append(n.time >= wanted.since)
        if wanted.until is not None:
            clauses.append(n.time <= wanted.until)
        if wanted.q is not None:
            # Literal text: autoescape makes %, _ and the escape character plain characters.
            clauses.append(
                or_(
                    n.title.icontains(wanted.q, autoescape=True),
                    n.message.icontains(wanted.q, autoescape=True),
                )
            )
        return clauses


def _room(audience: Audience) -> ColumnElement[bool]:
    kind = n.audience_kind == audience.kind.value
    return and_(kind, n.audience_name == audience.name) if audience.kind in NAMED_KINDS else kind


def view_of(conn: AsyncConnection, claims: Claims) -> View:
    return View(claims, conn.dialect.name, claims.tenant, claims.user)


# --- items --------------------------------------------------------------------------------------


def _item_query(view: View) -> Select[Any]:
    return select(
        n.pk,
        n.seq,
        n.id,
        n.event,
        n.tenant,
        n.audience_kind,
        n.audience_name,
        n.time,
        n.title,
        n.message,
        n.severity,
        n.data,
        view.read.label("read"),
        view.seen.label("seen"),
        view.archived.label("archived"),
    ).select_from(view.source)


def _utc(when: datetime) -> datetime:
    # SQLite gives back naive datetimes; everything is stored in UTC.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def item(row: Any) -> dict[str, Any]:
    """A row as the API's item: the live ``notification`` frame's fields plus the state."""
    kind = AudienceKind(row.audience_kind)
    room = f"{kind.value}:{row.audience_name}" if kind in NAMED_KINDS else kind.value
    return {
        "seq": row.seq,
        "id": row.id,
        "event": row.event,
        "room": room,
        "time": _utc(row.time),
        "title": row.title,
        "message": row.message,
        "severity": row.severity,
        "data": orjson.Fragment(row.data),
        "read": bool(row.read),
        "seen": bool(row.seen),
        "archived": bool(row.archived),
    }


async def page(
    conn: AsyncConnection,
    claims: Claims,
    wanted: Filter,
    muted: frozenset[str],
    *,
    limit: int,
    before: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` items, newest first, older than ``before`` (a ``pk``); and the ``pk``
    to continue from when there are more (else ``None``).

    Each audience the caller sees is read backwards along the visibility index and cut at a
    page (``visible_branches``), then the parts are merged: a page costs the same in a tenant
    of a thousand notifications as in one of a million (sorting every visible row did not).
    The statement is built once per shape (roles count, room patterns, filter, muted set,
    limit, with or without a cursor), the caller and the cursor bound at execution."""
    roles = sorted(claims.roles)
    query = _page_statement(
        conn.dialect.name,
        len(roles),
        claims.room_patterns,
        wanted,
        muted,
        limit,
        before is not None,
    )
    values: dict[str, Any] = {"tenant": claims.tenant, "user": claims.user}
    values.update((f"role_{i}", role) for i, role in enumerate(roles))
    if before is not None:
        values["before"] = before
    rows = (await conn.execute(query, values)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [item(r) for r in rows], (rows[-1].pk if more else None)


@lru_cache(maxsize=512)
def _page_statement(
    dialect: str,
    roles: int,
    patterns: tuple[str, ...],
    wanted: Filter,
    muted: frozenset[str],
    limit: int,
    paged: bool,
) -> Select[Any]:
    tenant, user = bindparam("tenant", type_=String), bindparam("user", type_=String)
    named = [bindparam(f"role_{i}", type_=String) for i in range(roles)]
    view = View(None, dialect, tenant, user)
    clauses = view.narrowed(wanted, muted)  # visibility comes from the branches
    if paged:
        clauses.append(n.pk < bindparam("before", type_=Pk))
    parts = []
    for branch in branches(tenant, user, named, patterns, dialect):
        inner = (
            select(n.pk)
            .select_from(view.source)
            .where(branch, *clauses)
            .order_by(n.pk.desc())
            .limit(limit + 1)
            .subquery()
        )
        parts.append(select(inner.c.pk))
    newest = union_all(*parts).subquery()
    return (
        _item_query(view)
        .where(n.pk.in_(select(newest.c.pk)))
        .order_by(n.pk.desc())
        .limit(limit + 1)
    )


async def one(conn: AsyncConnection, claims: Claims, ident: str) -> dict[str, Any] | None:
    """The item ``ident`` if the caller may see it (muted or archived included), else None."""
    view = view_of(conn, claims)
    query = _item_query(view).where(n.id == ident, view.visible)
    found = (await conn.execute(query)).first()
    return item(found) if found is not None else None


# --- counts -------------------------------------------------------------------------------------


def _sum(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def counted_upto() -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The newest epoch stored and the bound of what counts include in it (both SQL scalars).

    The bound is the highest ``upto`` the writers recorded for that epoch (``inbox_progress``:
    the consumer's ack floor; every message up to it was committed before it was acked), so it
    holds with several writers committing out of order. Rows of that epoch stored by something
    that records no progress (a test seeding the store, an import) are bounded by their highest
    sequence, as one writer would leave them."""
    newest = notifications.alias("newest")
    epoch = select(newest.c.epoch).order_by(newest.c.pk.desc()).limit(1).scalar_subquery()
    stored = notifications.alias("stored")
    recorded = select(func.max(progress.c.upto)).where(progress.c.epoch == epoch)
    highest = select(func.max(stored.c.seq)).where(stored.c.epoch == epoch)
    upto = func.coalesce(recorded.scalar_subquery(), highest.scalar_subquery(), 0)
    return epoch, upto


def counts_query(
    claims: Claims, dialect: str, muted: frozenset[str] | None
) -> tuple[CompoundSelect[Any], dict[str, str]]:
    """The counts as one statement, and its parameters: ``(kind, name, total, unread,
    unseen)`` rows, one per severity (``s``), the counted bound (``u``, in ``total``) and, with
    ``muted`` ``None``, one per muted domain (``m``, read in the same snapshot).

    The statement depends on the caller only through its shape (how many roles, which room
    patterns, the muted set if given): built once per shape and kept (building it took longer
    than running it), the tenant, user and roles bound at execution."""
    roles = sorted(claims.roles)
    if muted is None:
        check_id(claims.tenant, field="tenant")
        check_id(claims.user, field="user")
    query = _counts_statement(dialect, len(roles), claims.room_patterns, muted)
    values = {"tenant": claims.tenant, "user": claims.user}
    values.update((f"role_{i}", role) for i, role in enumerate(roles))
    return query, values


@lru_cache(maxsize=512)
def _counts_statement(
    dialect: str, roles: int, patterns: tuple[str, ...], muted: frozenset[str] | None
) -> CompoundSelect[Any]:
    """Each audience the caller sees is read from the visibility index alone (``branches``:
    an index-only scan per audience on PostgreSQL, where the index carries severity, domain,
    epoch and seq) instead of one heap page per visible row; the user's state rows are
    hash-joined and the marks read once (scalar subqueries)."""
    tenant, user = bindparam("tenant", type_=String), bindparam("user", type_=String)
    named = [bindparam(f"role_{i}", type_=String) for i in range(roles)]
    keep = unmuted_by(muted_select(tenant, user)) if muted is None else unmuted(muted)
    visible = union_all(
        *(
            select(n.pk, n.severity, n.epoch, n.seq).where(branch, keep)
            for branch in branches(tenant, user, named, patterns, dialect)
        )
    ).subquery("visible")
    v = visible.c
    mine = (m.tenant == tenant, m.user == user)
    read_upto = func.coalesce(select(m.read_upto).where(*mine).scalar_subquery(), 0)
    seen_upto = func.coalesce(select(m.seen_upto).where(*mine).scalar_subquery(), 0)
    read = func.coalesce(s.read, v.pk <= read_upto)
    seen = func.coalesce(s.seen, v.pk <= seen_upto)
    state_on = and_(s.notification == v.pk, s.tenant == tenant, s.user == user)
    epoch, upto = counted_upto()
    grouped = (
        select(
            literal("s").label("kind"),
            v.severity.label("name"),
            func.count().label("total"),
            _sum(not_(read)).label("unread"),
            _sum(not_(seen)).label("unseen"),
        )
        .select_from(visible.outerjoin(inbox_state, state_on))
        .where(not_(func.coalesce(s.archived, false())), or_(v.epoch != epoch, v.seq <= upto))
        .group_by(v.severity)
    )
    parts = [grouped, select(literal("u"), literal(""), upto, literal(0), literal(0))]
    if muted is None:
        domains = muted_select(tenant, user).subquery()
        parts.append(select(literal("m"), domains.c.domain, literal(0), literal(0), literal(0)))
    return union_all(*parts)


async def _counted(
    conn: AsyncConnection, claims: Claims, muted: frozenset[str] | None
) -> tuple[dict[str, Any], frozenset[str]]:
    query, values = counts_query(claims, conn.dialect.name, muted)
    by_severity = dict.fromkeys(SEVERITIES, 0)
    total = unread = unseen = upto = 0
    found: set[str] = set()
    for kind, name, rows, unread_, unseen_ in (await conn.execute(query, values)).all():
        if kind == "u":
            upto = int(rows)
        elif kind == "m":
            found.add(name)
        else:
            total += int(rows)
            unread += int(unread_)
            unseen += int(unseen_)
            if name in by_severity:
                by_severity[name] = int(unread_)
    counted = {
        "total": total,
        "unread": unread,
        "unseen": unseen,
        "unread_by_severity": by_severity,
        "seq": upto,
    }
    return counted, frozenset(found) if muted is None else muted


async def counts(
    conn: AsyncConnection, claims: Claims, muted: frozenset[str] | None
) -> dict[str, Any]:
    """``{"total", "unread", "unseen", "unread_by_severity": {all five}, "seq"}``, exact (no
    cap), in one statement. ``muted`` ``None``: the user's muted domains are read inside it.

    ``seq`` says what they include: exactly the notifications stored with a stream sequence up
    to it (``counted_upto``; older epochs whole), read in the same snapshot. A client adds to
    them what it holds with a higher ``seq``, and never what they include: the writer may still
    be storing what a client already received live, and with several writers a higher sequence
    may be committed before a lower one; both are left out until the bound passes them."""
    return (await _counted(conn, claims, muted))[0]


async def bell(conn: AsyncConnection, claims: Claims) -> dict[str, Any]:
    """What a gateway needs at ``hello``: the counts and the muted in-app domains, in one
    statement."""
    counted, muted = await _counted(conn, claims, None)
    return {"counts": counted, "muted": sorted(muted)}
