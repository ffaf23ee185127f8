"""`tidings tail`: print notifications as they arrive, resuming across gateway restarts."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import orjson
import typer

from tidings.cli.common import DirOption, fail, settings_of
from tidings.cli.render import connection_event, notification_line
from tidings.dev.info import read_info
from tidings.errors import ConfigError, TidingsError


def tail(
    ctx: typer.Context,
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="Gateway WebSocket URL; repeat for fallbacks. Default: dev.json, else"
            " ws://127.0.0.1:8080/ws.",
            show_default=False,
        ),
    ] = None,
    bearer: Annotated[
        str | None,
        typer.Option(
            "--token", help="JWT; default: the dev token in dev.json.", show_default=False
        ),
    ] = None,
    room: Annotated[
        list[str] | None, typer.Option(help="A named room to join (site-berlin); repeat for more.")
    ] = None,
    since: Annotated[int | None, typer.Option(help="Resume after this seq (with --epoch).")] = None,
    epoch: Annotated[str | None, typer.Option(help="The stream epoch --since belongs to.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per notification on stdout.")
    ] = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Print notifications as they arrive, resuming across gateway restarts; Ctrl-C stops."""
    settings_of(ctx)
    info = read_info(dev_dir) or {}
    # Through the ingress when `tidings dev` runs one (several gateways), as a browser would.
    entry = info.get("ingress") or info.get("gateway") or {}
    urls = url or [entry.get("ws") or "ws://127.0.0.1:8080/ws"]
    get_token = None
    if bearer is None:
        bearer = info.get("token")
        if not bearer:
            fail(
                ConfigError(
                    f"no token: pass --token, or run `tidings dev` (it writes {dev_dir}/dev.json)",
                    field="token",
                )
            )

        async def get_token() -> str:  # a restarted `tidings dev` mints a new dev token
            fresh = (read_info(dev_dir) or {}).get("token")
            return str(fresh or bearer)

    rooms = [r if r.startswith("room:") else f"room:{r}" for r in room or []]
    try:
        asyncio.run(_tail(urls, bearer, get_token, rooms, since, epoch, as_json))
    except TidingsError as exc:
        fail(exc)


async def _tail(
    urls: list[str],
    token: str,
    get_token: Callable[[], Awaitable[str]] | None,
    rooms: list[str],
    since: int | None,
    epoch: str | None,
    as_json: bool,
) -> None:
    # lazily: the WebSocket client only for this command
    from tidings.client import Subscriber, SubscriberOptions

    options = SubscriberOptions(
        rooms=tuple(rooms), since=since, epoch=epoch, on_event=connection_event
    )
    sub = Subscriber(urls, options, token=token, get_token=get_token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def show() -> None:
        async for n in sub:
            if as_json:
                print(orjson.dumps(n.to_dict()).decode(), flush=True)
            else:
                notification_line(n)

    await sub.start(wait=False)
    printer = asyncio.create_task(show())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({printer, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        await sub.close()
        await asyncio.wait({printer})
    printer.result()  # a refusal (bad token…) ends the iterator with its typed error
