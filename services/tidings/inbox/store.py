"""The inbox database: one async SQLAlchemy engine, the writer's idempotent insert, reads.

PostgreSQL (asyncpg) in production, SQLite (aiosqlite) embedded; the URL picks. A plain
``postgresql://`` or ``sqlite:///`` URL gets the async driver. On SQLite every connection runs
in WAL mode with a busy timeout, so several writers and readers share one file.

The writer's step is :meth:`Store.write`: one transaction inserting a batch of notifications
and dead letters with "insert or ignore" on their unique keys (id; epoch + sequence), so a
redelivered or republished message is stored once whatever crashed where.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, bindparam, delete, event, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tidings.auth.claims import Claims
from tidings.errors import ConfigError
from tidings.inbox.schema import dead_letters, notifications, progress
from tidings.inbox.visibility import visible_to

log = logging.getLogger(__name__)

T = TypeVar("T")
_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
SETTING = "TIDINGS_INBOX_DATABASE_URL"

# The writer's insert on PostgreSQL: ``INSERT … SELECT unnest(:epoch), unnest(:seq), …`` (the
# arrays unnest in step), "insert or ignore" on every unique key (id; epoch + seq).
_COLUMNS = tuple(c.name for c in notifications.columns if c.name != "pk")
_UNNEST_INSERT = (
    pg_insert(notifications)
    .from_select(
        list(_COLUMNS),
        select(
            *(
                func.unnest(bindparam(name, type_=ARRAY(notifications.c[name].type)))
                for name in _COLUMNS
            )
        ),
    )
    .on_conflict_do_nothing()
    .returning(notifications.c.pk)
)


def database_url(text: str) -> URL:
    """The async URL for ``text``; a precise :class:`ConfigError` for anything else."""
    try:
        url = make_url(text)
    except ArgumentError:
        # The text may hold a password: never echo it.
        raise ConfigError(
            "not a database URL; expected postgresql://user:password@host/db or sqlite:///path",
            field=SETTING,
        ) from None
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise ConfigError(
            f"{backend!r} databases are not supported; use postgresql:// or sqlite:///",
            field=SETTING,
        )
    if url.drivername == backend:
        url = url.set(drivername=_DRIVERS[backend])
    elif url.drivername != _DRIVERS[backend]:
        raise ConfigError(
            f"use the driver {_DRIVERS[backend]}, not {url.drivername}", field=SETTING
        )
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError("an in-memory SQLite inbox is gone at exit; give a file", field=SETTING)
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across a process crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")  # several writers wait for the lock, not fail
    cursor.close()


def create_engine(text: str, *, pre_ping: bool = True) -> AsyncEngine:
    """The engine for ``text``. ``pre_ping`` checks each pooled PostgreSQL connection with a
    round trip before handing it out (the writer's choice); without it a connection that died
    in the pool fails its first statement, and :func:`retrying` runs the work once more (the
    API's choice: a round trip less on every request)."""
    url = database_url(text)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=pre_ping)


async def retrying(work: Callable[[], Awaitable[T]]) -> T:
    """``work()``, run once more if it failed on a connection found dead (the server restarted,
    or a proxy closed an idle connection): SQLAlchemy then invalidates the pool, so the second
    try gets a fresh connection. ``work`` must be a whole transaction (nothing was committed
    when the connection died before its answer) and safe to repeat; any other error, or a
    second failure, is raised."""
    try:
        return await work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.info("inbox database connection was dead; trying once more on a fresh one")
    return await work()


@dataclass(frozen=True, slots=True)
class Progress:
    """A writer's bound, recorded with its batch: every message of ``epoch`` up to ``upto`` is
    stored (the consumer's ack floor when the writer last asked)."""

    writer: str
    epoch: str
    upto: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one :meth:`Store.write` did: rows new to the database (the rest were there)."""

    stored: int
    duplicates: int
    dead: int


class Store:
    """The inbox tables behind one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # The same pool for reads of one statement each (counts, the session answer, a page):
        # on PostgreSQL no BEGIN before and no ROLLBACK after, one round trip instead of three
        # (a single statement reads one snapshot anyway). SQLite's driver begins nothing for a
        # SELECT, and switching its isolation level costs two calls into its thread.
        self.reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "postgresql"
            else engine
        )

    @classmethod
    def open(cls, url: str, *, pre_ping: bool = True) -> Store:
        return cls(create_engine(url, pre_ping=pre_ping))

    async def close(self) -> None:
        await self.engine.dispose()

    def _insert_ignoring(self, table: Any) -> Any:
        insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        # No conflict target: every unique constraint of the table counts (id, epoch + seq).
        return insert(table).on_conflict_do_nothing()

    async def write(
        self,
        rows: Sequence[dict[str, Any]],
        dead: Sequence[dict[str, Any]] = (),
        progress: Progress | None = None,
    ) -> WriteResult:
        """Insert notifications and dead letters in one transaction, ignoring known ones, and
        record the writer's ``progress`` in it (what counts may include)."""
        stored = dead_new = 0
        async with self.engine.begin() as conn:
            if rows:
                stored = await self._insert_notifications(conn, rows)
            if dead:
                stmt = self._insert_ignoring(dead_letters).returning(dead_letters.c.pk)
                dead_new = len((await conn.execute(stmt, list(dead))).all())
            if progress is not None:
                await self._record(conn, progress)
        return WriteResult(stored, len(rows) - stored, dead_new)

    async def _insert_notifications(
        self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]
    ) -> int:
        """Insert ``rows`` ignoring known ones; how many were new. On PostgreSQL one
        ``INSERT … SELECT FROM unnest(<one array per column>)``: a statement of 15 parameters
        whatever the batch, instead of 15 per row (docs/decisions.md: "The writer's insert")."""
        if self.dialect != "postgresql":
            stmt = self._insert_ignoring(notifications).returning(notifications.c.pk)
            return len((await conn.execute(stmt, list(rows))).all())
        columns = {name: [row[name] for row in rows] for name in _COLUMNS}
        return len((await conn.execute(_UNNEST_INSERT, columns)).all())

    async def record(self, progress: Progress) -> None:
        """Record ``progress`` alone (a writer with nothing to store whose bound moved)."""
        async with self.engine.begin() as conn:
            await self._record(conn, progress)

    async def _record(self, conn: AsyncConnection, given: Progress) -> None:
        insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        stmt = insert(progress).values(
            writer=given.writer, epoch=given.epoch, upto=given.upto, updated_at=func.now()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["writer"],
            set_={
                "epoch": stmt.excluded.epoch,
                "upto": stmt.excluded.upto,
                "updated_at": func.now(),
            },
        )
        await conn.execute(stmt)

    async def prune_progress(self, keep: str, older_than: float) -> None:
        """Drop other writers' progress not updated for ``older_than`` seconds (writers that
        are gone) when ``keep``'s own bound is at least theirs: the highest bound stays."""
        p = progress.c
        async with self.engine.begin() as conn:
            mine = (await conn.execute(select(p.epoch, p.upto).where(p.writer == keep))).first()
            if mine is None:
                return
            cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
            await conn.execute(
                delete(progress).where(
                    p.writer != keep,
                    p.updated_at < cutoff,
                    or_(p.epoch != mine.epoch, p.upto <= mine.upto),
                )
            )

    async def reachable(self) -> bool:
        """Whether the database answers at all (tells a refused row from an outage)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
        except Exception:
            return False
        return True

    # -- reads (the REST API builds on these) --------------------------------------------------

    def visible(self, claims: Claims) -> ColumnElement[bool]:
        """The WHERE clause of what ``claims`` may read (the gateway's rule)."""
        return visible_to(claims, self.dialect)

    async def visible_ids(self, claims: Claims, *, limit: int = 1000) -> list[str]:
        """Ids of the notifications ``claims`` may read, newest first."""
        query = (
            select(notifications.c.id)
            .where(self.visible(claims))
            .order_by(notifications.c.pk.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return list((await conn.scalars(query)).all())

    async def count(self, conn: AsyncConnection | None = None) -> int:
        """Notifications stored (all tenants)."""
        query = select(func.count()).select_from(notifications)
        if conn is not None:
            return int((await conn.execute(query)).scalar_one())
        async with self.engine.connect() as own:
            return int((await own.execute(query)).scalar_one())

    async def dead_count(self) -> int:
        async with self.engine.connect() as conn:
            query = select(func.count()).select_from(dead_letters)
            return int((await conn.execute(query)).scalar_one())
