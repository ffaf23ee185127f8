"""`tidings events`: the event types this deployment accepts."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from tidings.catalogue import BUILTIN_EVENTS
from tidings.cli.common import out, settings_of


def events(ctx: typer.Context) -> None:
    """List the event types this deployment accepts."""
    settings = settings_of(ctx)
    table = Table("event", "description")
    for name, description in sorted(BUILTIN_EVENTS.items()):
        table.add_row(name, escape(description))
    for name in settings.events.extra:
        if name not in BUILTIN_EVENTS:
            table.add_row(escape(name), "(from TIDINGS_EVENTS_EXTRA)")
    out.print(table)
    if settings.events.allow_unknown:
        out.print("TIDINGS_EVENTS_ALLOW_UNKNOWN is on: any well-formed type is accepted too.")
