"""`tidings publish`: one notification through the sidecar (HTTP) or the SDK (NATS)."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tidings.cli.common import DirOption, fail, settings_of, use_nats_url
from tidings.cli.sidecar import publish_http
from tidings.dev.info import read_info
from tidings.errors import InvalidField, TidingsError
from tidings.settings import Settings


class Via(StrEnum):
    http = "http"
    nats = "nats"


def publish(
    ctx: typer.Context,
    event: Annotated[str, typer.Option(help="Event type, e.g. incident.created.")],
    title: Annotated[str, typer.Option(help="Short title.")],
    message: Annotated[str, typer.Option(help="Message text.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant id (omit with --broadcast).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user of the tenant.")] = None,
    role: Annotated[str | None, typer.Option(help="Only holders of this role.")] = None,
    room: Annotated[str | None, typer.Option(help="Only subscribers of this named room.")] = None,
    broadcast: Annotated[bool, typer.Option(help="Every tenant (privileged).")] = False,
    severity: Annotated[str | None, typer.Option(help="info, success, warning, error…")] = None,
    data: Annotated[str | None, typer.Option(help="A JSON object attached to it.")] = None,
    id: Annotated[str | None, typer.Option(help="Idempotency key (default: a new ULID).")] = None,
    via: Annotated[Via, typer.Option(help="Through the sidecar (http) or the SDK (nats).")] = (
        Via.http
    ),
    url: Annotated[
        str | None,
        typer.Option(help="Sidecar URL (http) or NATS URL (nats); default from dev.json."),
    ] = None,
    bearer: Annotated[
        str | None,
        typer.Option("--token", help="Sidecar bearer token (default TIDINGS_PUBLISHER_TOKEN)."),
    ] = None,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Send one notification; print the answer {"id","seq","duplicate"} as JSON."""
    settings = settings_of(ctx)
    targets = (("user", user), ("role", role), ("room", room))
    audiences: dict[str, str | bool] = {k: v for k, v in targets if v is not None}
    if broadcast:
        audiences["broadcast"] = True
    if len(audiences) > 1:
        fail(InvalidField("choose one of --user, --role, --room, --broadcast", field="audience"))
    body: dict[str, Any] = {"event": event, "title": title, "message": message}
    if tenant is not None:
        body["tenant"] = tenant
    if audiences:
        body["audience"] = audiences
    if severity is not None:
        body["severity"] = severity
    if id is not None:
        body["id"] = id
    if data is not None:
        try:
            body["data"] = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            fail(InvalidField(f"is not JSON: {exc}", field="data"))
    info = read_info(dev_dir) or {}
    if via is Via.http:
        base = url or info.get("publisher", {}).get("url")
        base = base or f"http://127.0.0.1:{settings.publisher.port}"
        answer = publish_http(
            base,
            body,
            bearer or settings.publisher.token,
            timeout=settings.nats.request_timeout + 5,
        )
    else:
        use_nats_url(settings, url, dev_dir)
        answer = asyncio.run(_publish_nats(settings, body))
    print(orjson.dumps(answer).decode())


async def _publish_nats(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    from tidings.client import Publisher  # lazily: nats-py loads only for --via nats

    try:
        publisher = await Publisher.connect(
            settings.nats,
            stream=settings.stream,
            events=settings.events,
            allow_broadcast="broadcast" in (body.get("audience") or {}),  # --broadcast asked
            within=max(3.0, 2 * settings.nats.connect_timeout),
        )
    except TidingsError as exc:
        fail(exc)
    async with publisher:
        try:
            result = await publisher.publish(body)
        except TidingsError as exc:
            fail(exc, 1)
    return result.to_dict()
