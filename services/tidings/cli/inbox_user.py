"""`tidings inbox list|counts|mark`: one user's inbox from the terminal, through the REST API.

The token says whose inbox (default: the dev token of a running `tidings dev`); the API's
address comes from `--url`, else dev.json, else the inbox API settings. Tables for people,
`--json` for scripts: the API's answer as is, on stdout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer

from tidings.cli.common import DirOption, fail, settings_of
from tidings.cli.render import inbox_counts, inbox_page
from tidings.dev.info import read_info
from tidings.errors import ConfigError, InvalidField, TidingsError

T = TypeVar("T")
BAD_INPUT = ("malformed", "missing_field", "invalid_field", "too_large")  # exit 2, as for bad flags

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The inbox API's base URL; default: dev.json, else TIDINGS_INBOX_API_HOST/PORT.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="JWT; default: the dev token in dev.json.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="The API's JSON answer on stdout.")]
Many = Annotated[list[str] | None, typer.Option(show_default=False)]


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    token: str


def _target(ctx: typer.Context, url: str | None, token: str | None, dev_dir: Path) -> Target:
    settings = settings_of(ctx)
    info = read_info(dev_dir) or {}
    if url is None:
        url = (info.get("inbox-api") or {}).get("url")
    if url is None:
        host = settings.inbox.api_host
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # a wildcard bind: ask locally
        url = f"http://{host}:{settings.inbox.api_port}"
    if token is None:
        token = info.get("token")
        if not token:
            fail(
                ConfigError(
                    f"no token: pass --token, or run `tidings dev` (it writes {dev_dir}/dev.json)",
                    field="token",
                )
            )
    return Target(str(url), str(token))


def _run(target: Target, call: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``call(inbox_client)`` on a client for ``target``; a refusal exits with its message."""
    from tidings.client.inbox import InboxClient  # httpx only for these commands

    async def run() -> T:
        async with InboxClient(target.url, target.token) as inbox:
            return await call(inbox)

    from tidings.client.errors import Refused

    try:
        return asyncio.run(run())
    except Refused as exc:  # say the API's code: scripts and people switch on it
        where = f"{exc.field}: " if exc.field else ""
        refusal = TidingsError(f"{exc.error}: {where}{exc.reason}")
        fail(refusal, 2 if exc.error in BAD_INPUT else 1)
    except TidingsError as exc:
        fail(exc)


def _filter(
    status: str | None,
    domain: list[str] | None,
    event: list[str] | None,
    severity: list[str] | None,
    room: list[str] | None,
    since: str | None,
    until: str | None,
    search: str | None,
) -> Any:
    from tidings.client.inbox_items import Filter

    try:
        return Filter(
            status=status,
            domain=domain or (),
            event=event or (),
            severity=severity or (),
            room=room or (),
            since=since,
            until=until,
            q=search,
        )
    except TidingsError as exc:
        fail(exc)


def _print_json(value: Any) -> None:
    print(orjson.dumps(value).decode())


def inbox_list(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            help="all | unread | read | unseen | seen | archived (default: all but archived)."
        ),
    ] = None,
    domain: Many = None,
    event: Many = None,
    severity: Many = None,
    room: Many = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-q", help="Text in the title or message.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Items per page (1-100).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="The next_cursor of a page.")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Follow the cursor to the last page.")
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """List the inbox, newest first (--domain, --event, --severity, --room repeat)."""
    target = _target(ctx, url, bearer, dev_dir)
    chosen = _filter(status, domain, event, severity, room, since, until, search)

    async def fetch(inbox: Any) -> tuple[list[Any], str | None]:
        items: list[Any] = []
        page = await inbox.list(chosen, limit=limit, cursor=cursor)
        items.extend(page.items)
        while every and page.next_cursor is not None:
            page = await inbox.list(chosen, limit=limit, cursor=page.next_cursor)
            items.extend(page.items)
        return items, page.next_cursor

    items, next_cursor = _run(target, fetch)
    if as_json:
        _print_json({"items": [i.to_dict() for i in items], "next_cursor": next_cursor})
    else:
        inbox_page(items, next_cursor)


def inbox_counts_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Exact counts: total, unread, unseen, unread by severity."""
    target = _target(ctx, url, bearer, dev_dir)
    counts = _run(target, lambda inbox: inbox.counts())
    if as_json:
        _print_json(counts.to_dict())
    else:
        inbox_counts(counts)


def inbox_mark(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Notification ids.", show_default=False)
    ] = None,
    read: Annotated[
        bool | None,
        typer.Option("--read/--unread", help="Mark read or unread.", show_default=False),
    ] = None,
    seen: Annotated[
        bool | None,
        typer.Option("--seen/--unseen", help="Mark seen or unseen.", show_default=False),
    ] = None,
    archived: Annotated[
        bool | None,
        typer.Option("--archive/--unarchive", help="Archive or bring back.", show_default=False),
    ] = None,
    every: Annotated[
        bool,
        typer.Option("--all", help="Every notification (or what the filter options select)."),
    ] = False,
    status: Annotated[str | None, typer.Option(help="With --all: a status filter.")] = None,
    domain: Many = None,
    event: Many = None,
    severity: Many = None,
    room: Many = None,
    since: Annotated[str | None, typer.Option(help="With --all: RFC 3339 time.")] = None,
    until: Annotated[str | None, typer.Option(help="With --all: RFC 3339 time.")] = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="With --all: text.")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Mark notifications read/unread, seen/unseen, archived/unarchived; or --all of them."""
    if read is None and seen is None and archived is None:
        fail(
            InvalidField(
                "say what to mark: --read, --seen, --archive or their opposites", field="set"
            )
        )
    filter_given = any((status, domain, event, severity, room, since, until, search))
    if every == bool(ids):
        fail(InvalidField("give notification ids, or --all (not both)", field="ids"))
    if filter_given and not every:
        fail(InvalidField("filter options go with --all", field="ids"))
    target = _target(ctx, url, bearer, dev_dir)
    if every:
        if False in (read, seen, archived):
            fail(InvalidField("--all only sets: --read, --seen, --archive", field="set"))
        chosen = (
            _filter(status, domain, event, severity, room, since, until, search)
            if filter_given
            else None
        )
        counts = _run(
            target,
            lambda inbox: inbox.mark_all(
                chosen, read=bool(read), seen=bool(seen), archived=bool(archived)
            ),
        )
        if as_json:
            _print_json({"counts": counts.to_dict()})
        else:
            inbox_counts(counts, title="marked; the inbox now")
        return
    result = _run(
        target, lambda inbox: inbox.mark(ids or [], read=read, seen=seen, archived=archived)
    )
    if as_json:
        _print_json({"changed": list(result.changed), "counts": result.counts.to_dict()})
    else:
        inbox_counts(result.counts, title=f"{len(result.changed)} changed; the inbox now")
