"""`tidings inbox …`: the inbox's commands (`writer` runs the writer, `api` the REST API,
`migrate` the schema).
"""

from __future__ import annotations

import asyncio

import typer

from tidings.cli.common import fail, log, settings_of
from tidings.errors import TidingsError

inbox_app = typer.Typer(
    help="The inbox: every notification kept, with per-user state.", no_args_is_help=True
)


@inbox_app.command()
def writer(ctx: typer.Context) -> None:
    """Run the inbox writer (JetStream → database, exactly once), with /metrics and probes."""
    from tidings.inbox.app import serve

    serve(settings_of(ctx))


@inbox_app.command()
def api(ctx: typer.Context) -> None:
    """Run the inbox REST API (list, counts, mark, preferences), with /metrics and probes."""
    from tidings.inbox.api_app import serve

    serve(settings_of(ctx))


@inbox_app.command()
def migrate(ctx: typer.Context) -> None:
    """Bring the inbox database (TIDINGS_INBOX_DATABASE_URL) to this version's schema."""
    from tidings.inbox import migrate as migrations
    from tidings.inbox.store import Store

    settings = settings_of(ctx)

    async def run() -> tuple[str | None, str]:
        store = Store.open(settings.inbox.database_url)
        try:
            return await migrations.upgrade(store.engine)
        finally:
            await store.close()

    try:
        before, after = asyncio.run(run())
    except TidingsError as exc:
        fail(exc)
    except Exception as exc:  # the database refused or is unreachable: say which, no traceback
        fail(TidingsError(f"migration failed: {type(exc).__name__}: {exc}".splitlines()[0]), 1)
    if before == after:
        log(f"inbox database already at revision {after}")
    else:
        log(f"inbox database migrated: {before or 'empty'} → {after}")
