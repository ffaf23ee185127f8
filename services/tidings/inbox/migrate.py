"""The inbox schema's migrations (Alembic, shipped in ``migrations/``), run on the async engine.

``tidings inbox migrate`` (or ``TIDINGS_INBOX_MIGRATE=true`` at start-up) calls
:func:`upgrade`; a writer that starts on an older schema stops with a :class:`ConfigError`
saying so (:func:`check_current`) instead of failing on its first insert. On PostgreSQL an
advisory lock serializes writers that migrate at the same time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK = 0x7469_6469_6E67  # pg_advisory_xact_lock key: "tiding" in hex


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of Tidings ships."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``revision``; returns (before, after)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
        before = await conn.run_sync(_current)
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))
        after = await conn.run_sync(_current)
    return before, after or ""


async def check_current(engine: AsyncEngine) -> None:
    """Raise :class:`ConfigError` unless the database is at this version's head."""
    have, want = await current(engine), head()
    if have != want:
        state = "has no inbox schema" if have is None else f"is at revision {have}"
        raise ConfigError(
            f"the inbox database {state}; this version needs {want}: run `tidings inbox "
            "migrate` (or set TIDINGS_INBOX_MIGRATE=true)",
            field="TIDINGS_INBOX_DATABASE_URL",
        )
