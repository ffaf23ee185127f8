"""Changing one user's state: mark some notifications, mark all (optionally by filter), erase.

Writes are sparse (docs/inbox.md): a state row only where a notification's state differs from
what the marks say, and mark-all without a filter moves the user's mark (one row) instead of
writing a row per notification. Each function runs inside the caller's transaction
(``engine.begin()``), so a refusal (an id the caller may not see) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.auth.claims import Claims
from tidings.errors import NotFound
from tidings.inbox.filters import Filter
from tidings.inbox.queries import Marks, View, marks_of, n, view_of
from tidings.inbox.schema import inbox_marks, inbox_state

FLAGS = ("read", "seen", "archived")
_KEY = ("tenant", "user", "notification")


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)


def _upsert_state(conn: AsyncConnection, changes: Mapping[str, bool]) -> Any:
    stmt = _insert(conn, inbox_state)
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={**{f: stmt.excluded[f] for f in changes}, "updated_at": stmt.excluded.updated_at},
    )


def _row(claims: Claims, pk: int, changes: Mapping[str, bool], now: datetime) -> dict[str, Any]:
    # A flag not being changed keeps following the marks (NULL), archived defaults to False.
    base: dict[str, Any] = {"read": None, "seen": None, "archived": False}
    return {
        "tenant": claims.tenant,
        "user": claims.user,
        "notification": pk,
        **base,
        **changes,
        "updated_at": now,
    }


async def mark(
    conn: AsyncConnection, claims: Claims, ids: Sequence[str], changes: Mapping[str, bool]
) -> list[str]:
    """Set ``changes`` (read / seen / archived) on ``ids``; the ids whose state changed, in the
    order given. Any id the caller may not see is :class:`NotFound` and nothing changes."""
    unique = list(dict.fromkeys(ids))
    view = view_of(conn, claims)
    flags = (view.read.label("read"), view.seen.label("seen"), view.archived.label("archived"))
    query = select(n.pk, n.id, *flags).select_from(view.source)
    rows = (await conn.execute(query.where(n.id.in_(unique), view.visible))).all()
    found = {r.id: r for r in rows}
    for index, ident in enumerate(ids):
        if ident not in found:
            # The same answer for an id that does not exist and one of another tenant or user.
            raise NotFound(f"no notification {ident!r} in this inbox", field=f"ids[{index}]")
    changed = [
        ident
        for ident in unique
        if any(bool(getattr(found[ident], f)) != v for f, v in changes.items())
    ]
    if changed:
        now = datetime.now(UTC)
        rows_in = [_row(claims, found[i].pk, changes, now) for i in changed]
        await conn.execute(_upsert_state(conn, changes), rows_in)
    return changed


async def mark_all(
    conn: AsyncConnection,
    claims: Claims,
    changes: Mapping[str, bool],
    wanted: Filter | None,
    muted: frozenset[str],
) -> None:
    """Mark everything the caller sees (or what ``wanted`` selects, as the list shows it).

    Without a filter, read and seen move the user's marks to the newest notification stored
    (one row); archived, and every flag with a filter, writes a state row for each
    notification whose state changes (one INSERT … SELECT).
    """
    view = view_of(conn, claims)
    by_mark = {f: v for f, v in changes.items() if f != "archived"} if wanted is None else {}
    if by_mark:
        await _move_marks(conn, claims, await marks_of(conn, claims.tenant, claims.user), by_mark)
    rest = {f: v for f, v in changes.items() if f not in by_mark}
    if not rest:
        return
    clauses = view.where(wanted, muted) if wanted is not None else [view.visible]
    differs = or_(*(getattr(view, f) != literal(v) for f, v in rest.items()))
    now = datetime.now(UTC)
    source = (
        select(
            literal(claims.tenant).label("tenant"),
            literal(claims.user).label("user"),
            n.pk.label("notification"),
            *(_value(view, f, rest) for f in FLAGS),
            literal(now).label("updated_at"),
        )
        .select_from(view.source)
        .where(*clauses, differs)
    )
    stmt = _insert(conn, inbox_state).from_select([*_KEY, *FLAGS, "updated_at"], source)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={**{f: stmt.excluded[f] for f in rest}, "updated_at": stmt.excluded.updated_at},
    )
    await conn.execute(stmt)


def _value(view: View, flag: str, rest: Mapping[str, bool]) -> Any:
    """What a new state row holds for ``flag``: the change, else what the user set (NULL:
    follow the marks)."""
    if flag in rest:
        return literal(rest[flag]).label(flag)
    if flag == "archived":
        return view.archived.label(flag)
    return inbox_state.c[flag].label(flag)


async def _move_marks(
    conn: AsyncConnection, claims: Claims, marks: Marks, changes: Mapping[str, bool]
) -> None:
    """Mark read / seen up to the newest notification stored; explicit state rows at or below
    the mark follow it again (an "unread" set earlier is read after mark-all)."""
    newest = int((await conn.execute(select(func.coalesce(func.max(n.pk), 0)))).scalar_one())
    wanted = {
        "read_upto": max(marks.read_upto, newest) if "read" in changes else marks.read_upto,
        "seen_upto": max(marks.seen_upto, newest) if "seen" in changes else marks.seen_upto,
    }
    now = datetime.now(UTC)
    stmt = _insert(conn, inbox_marks).values(
        tenant=claims.tenant, user=claims.user, **wanted, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant", "user"],
        set_={**{k: stmt.excluded[k] for k in wanted}, "updated_at": now},
    )
    await conn.execute(stmt)
    s = inbox_state.c
    mine = and_(s.tenant == claims.tenant, s.user == claims.user)
    for flag, column in (("read", "read_upto"), ("seen", "seen_upto")):
        if flag in changes:
            await conn.execute(
                update(inbox_state)
                .where(mine, s.notification <= wanted[column], s[flag].is_not(None))
                .values({flag: None, "updated_at": now})
            )
    # Rows that now say nothing the marks do not say are dropped (sparse state).
    await conn.execute(
        delete(inbox_state).where(mine, s.read.is_(None), s.seen.is_(None), s.archived.is_(False))
    )
