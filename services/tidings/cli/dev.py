"""`tidings dev`: the whole system on loopback (the work is in :mod:`tidings.dev.stack`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tidings.cli.common import DirOption, err, fail, log, out, settings_of, ttl_seconds
from tidings.dev.options import DevOptions, check_origin
from tidings.errors import TidingsError

if TYPE_CHECKING:  # the stack loads nats-py and httpx: only `tidings dev` needs them
    from tidings.dev.stack import DevStack


def dev(
    ctx: typer.Context,
    nats_port: Annotated[int, typer.Option(help="NATS client port.")] = 4222,
    publisher_port: Annotated[int, typer.Option(help="Publisher sidecar port.")] = 8081,
    gateway_port: Annotated[int, typer.Option(help="WebSocket gateway port.")] = 8080,
    gateway_api_port: Annotated[int, typer.Option(help="Gateway API port (status).")] = 8083,
    gateway_metrics_port: Annotated[int, typer.Option(help="Gateway metrics port.")] = 9464,
    demo_port: Annotated[int, typer.Option(help="Demo page port.")] = 8082,
    inbox_port: Annotated[int, typer.Option(help="Inbox writer port (probes, metrics).")] = 8084,
    inbox_api_port: Annotated[int, typer.Option(help="Inbox REST API port.")] = 8085,
    dev_dir: DirOption = Path(".tidings"),
    tenant: Annotated[str, typer.Option(help="Dev token's tenant.")] = "demo",
    user: Annotated[str, typer.Option(help="Dev token's user.")] = "alice",
    role: Annotated[list[str] | None, typer.Option(help="Dev token's roles [admin].")] = None,
    room: Annotated[list[str] | None, typer.Option(help="Dev token's room patterns [*].")] = None,
    ttl: Annotated[str, typer.Option(help="Dev token's lifetime.")] = "24h",
    nats_cluster: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="nats-servers; several are clustered, the stream at R3 (ports from"
            " --nats-port on).",
        ),
    ] = 1,
    gateways: Annotated[
        int,
        typer.Option(
            min=1, max=9, help="Gateways (ports +100 each from --gateway-port/--gateway-api-port)."
        ),
    ] = 1,
    ingress: Annotated[
        bool | None,
        typer.Option(
            "--ingress/--no-ingress",
            help="nginx in front of the gateways, as the chart's Ingress [on with --gateways > 1].",
            show_default=False,
        ),
    ] = None,
    ingress_port: Annotated[int, typer.Option(help="nginx (ingress) port.")] = 8090,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Origin of your own app allowed to open /ws and call the status and inbox APIs"
            " (e.g. http://localhost:5173 for Vite); repeat for more, `*` for any.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run NATS, the stream and the services on loopback until Ctrl-C."""
    from tidings.dev.stack import run

    settings = settings_of(ctx)
    seconds = ttl_seconds(ttl)
    try:
        origins = tuple(check_origin(origin) for origin in allow_origin or ())
    except TidingsError as exc:
        fail(exc)
    options = DevOptions(
        dir=dev_dir,
        nats_port=nats_port,
        publisher_port=publisher_port,
        gateway_port=gateway_port,
        gateway_api_port=gateway_api_port,
        gateway_metrics_port=gateway_metrics_port,
        demo_port=demo_port,
        inbox_port=inbox_port,
        inbox_api_port=inbox_api_port,
        tenant=tenant,
        user=user,
        roles=tuple(role) if role is not None else ("admin",),
        rooms=tuple(room) if room is not None else ("*",),
        token_ttl=seconds,
        nats_cluster=nats_cluster,
        gateways=gateways,
        ingress=ingress,
        ingress_port=ingress_port,
        allow_origins=origins,
    )
    try:
        run(options, settings, log=log, ready=_announce)
    except TidingsError as exc:
        fail(exc)
    err.print("stopped")


def _announce(stack: DevStack) -> None:
    """The stack is up: where everything is, and the dev token (alone, so it copies cleanly)."""
    info = stack.info
    report = stack.report
    if report is not None and report.created:
        log(f"created stream {report.stream}")
    if report is not None and report.conflicts:
        log(f"stream keeps its {', '.join(report.conflicts)}; run `tidings nats init` for more")
    grid = Table.grid(padding=(0, 2))
    grid.add_row("NATS", info["nats"]["url"])
    if stack.cluster is not None:
        size = len(stack.cluster.nodes)
        grid.add_row("", f"{size} clustered nodes, the stream at R{min(size, 3)}")
    for child in stack.children:
        shown = info.get(child.spec.name, {})
        url = shown.get("url", child.spec.url)
        extra = "  ".join(str(v) for k, v in shown.items() if k != "url")
        grid.add_row(child.spec.name, f"{url}  {extra}".rstrip())
    if "ingress" in info:
        ingress = info["ingress"]
        grid.add_row("ingress", f"{ingress['url']}  {ingress['ws']}  {ingress['api']}  (nginx)")
    grid.add_row("dev.json", escape(str(stack.info_path)))
    grid.add_row("logs", escape(str(stack.dir / "logs")))
    claims = info["claims"]
    out.print("[bold green]Tidings dev stack is up[/] (Ctrl-C stops it)")
    out.print(grid)
    out.print(
        f"dev token (tenant {claims['tenant']}, user {claims['user']},"
        f" roles {','.join(claims['roles'])}, rooms {','.join(claims['rooms'])}):"
    )
    out.print(info["token"], soft_wrap=True, markup=False)
