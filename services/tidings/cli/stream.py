"""`tidings nats …`: operate the NATS side (the stream)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tidings.cli.common import DirOption, err, fail, out, settings_of, use_nats_url
from tidings.cli.render import stream_conflict, stream_report
from tidings.errors import TidingsError
from tidings.quotas.limits import bucket_name
from tidings.settings import Settings

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
    try:
        created = asyncio.run(ensure_quota_bucket(settings))
    except TidingsError as exc:
        # Not fatal: the stream is what every service needs; the bucket only publishers with
        # TIDINGS_QUOTA_ENABLED (NATS values from before it lack the permission).
        err.print(f"[yellow]warning:[/] {exc.reason}; publish quotas fail open without it")
        return
    if created:
        out.print(f"created the quotas bucket {bucket_name(settings.stream.name)}")


async def ensure_quota_bucket(settings: Settings) -> bool:
    """The publish quotas' KV bucket, with the stream's replicas and storage (docs/security.md)."""
    from tidings.nats import connect
    from tidings.quotas.bucket import QuotaBucket

    nc = await connect(
        settings.nats, within=max(3.0, 2 * settings.nats.connect_timeout), service="admin"
    )
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.stream.name)
        return await QuotaBucket(stream=settings.stream.name).ensure(js, like=info.config)
    except Exception as exc:
        raise TidingsError(f"the quotas bucket could not be created: {exc}") from exc
    finally:
        await nc.close()
