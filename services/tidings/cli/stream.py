"""`tidings nats …`: operate the NATS side (the stream)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tidings.cli.common import DirOption, fail, settings_of, use_nats_url
from tidings.cli.render import stream_conflict, stream_report
from tidings.errors import TidingsError

nats_app = typer.Typer(help="Operate the NATS side (the stream).", no_args_is_help=True)


@nats_app.command("init")
def nats_init(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="NATS URLs, comma-separated; default TIDINGS_NATS_URLS, else dev.json."),
    ] = None,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Create the stream or bring it to the settings; idempotent. Exit 3 on conflicts."""
    from tidings.nats import provision  # lazily: nats-py only for the commands that use it

    settings = settings_of(ctx)
    use_nats_url(settings, url, dev_dir)
    try:
        report = asyncio.run(provision(settings.nats, settings.stream))
    except TidingsError as exc:
        fail(exc)
    stream_report(report, settings)
    if report.conflicts:
        fail(stream_conflict(report, settings))
