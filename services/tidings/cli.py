"""The `tidings` command line: wiring only; the work happens in the services and the core.

Human output goes through rich (on stderr for logs and errors); machine output (a token, a
publish answer) is plain on stdout so scripts can capture it. Exit codes: 0 ok, 1 failed,
2 bad input or configuration, 3 the stream needs an operator's decision.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tidings import devstack
from tidings.errors import (
    BenchFailed,
    ConfigError,
    InvalidField,
    Malformed,
    StreamConflict,
    TidingsError,
    Unavailable,
)
from tidings.settings import Settings, load_settings, parse_duration, unknown_variables

if TYPE_CHECKING:  # nats-py loads lazily: `tidings token` does not need it
    from collections.abc import Awaitable, Callable

    from tidings.client.ws import Event
    from tidings.nats import ProvisionReport

app = typer.Typer(
    name="tidings",
    help="Tidings: multi-tenant real-time notifications on NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
nats_app = typer.Typer(help="Operate the NATS side (the stream).", no_args_is_help=True)
app.add_typer(nats_app, name="nats")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # the terminal wraps, not rich

DirOption = Annotated[
    Path, typer.Option("--dir", help="Dev data dir: dev.json, jwt-secret, NATS data, logs.")
]
ROOM_PATTERN_RE = re.compile(r"[A-Za-z0-9_*-]{1,64}")


def exit_code(exc: TidingsError) -> int:
    """2 for bad input or configuration, 3 for a stream conflict, 1 for everything else."""
    if isinstance(exc, StreamConflict):
        return 3
    if isinstance(exc, ConfigError | InvalidField | Malformed):
        return 2
    return 1


def fail(exc: TidingsError, code: int | None = None) -> NoReturn:
    where = f"{exc.field}: " if exc.field else ""
    err.print(f"[red]error:[/] {escape(where + exc.reason)}")
    raise typer.Exit(exit_code(exc) if code is None else code)


def _ttl_seconds(ttl: str) -> float:
    """A token lifetime such as ``1h`` or ``3600``, positive, or a clean exit naming ``ttl``."""
    try:
        seconds = float(parse_duration(ttl))
    except ValueError as exc:
        fail(InvalidField(str(exc), field="ttl"))
    if seconds <= 0:
        fail(InvalidField("must be positive", field="ttl"))
    return seconds


@app.callback()
def _root() -> None:
    """Tidings: multi-tenant real-time notifications on NATS JetStream."""


def _settings(ctx: typer.Context) -> Settings:
    """Load and check every setting once per run (after option parsing, so --help always works);
    a bad value exits 2 naming the variable, an unknown ``TIDINGS_*`` variable is warned about."""
    root = ctx.find_root()
    if isinstance(root.obj, Settings):
        return root.obj
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(exc)
    for name in unknown_variables():
        err.print(f"[yellow]warning:[/] {name} is not a Tidings setting; it is ignored")
    root.obj = settings
    return settings


# --- token ----------------------------------------------------------------------------------


@app.command()
def token(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="Tenant id (claim `tenant`).")],
    user: Annotated[str, typer.Option(help="User id (claim `sub`).")],
    role: Annotated[list[str] | None, typer.Option(help="A role; repeat for more.")] = None,
    room: Annotated[
        list[str] | None, typer.Option(help="A named-room pattern the user may join (`*` ok).")
    ] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 30m, 1h, 7d.")] = "1h",
    secret: Annotated[
        str | None,
        typer.Option(
            help="HS256 secret; else TIDINGS_AUTH_JWT_SECRET, else <dir>/jwt-secret.",
            show_default=False,
        ),
    ] = None,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Mint a dev JWT and print it alone on stdout."""
    settings = _settings(ctx)
    seconds = _ttl_seconds(ttl)
    rooms = room or []
    for pattern in rooms:
        if not ROOM_PATTERN_RE.fullmatch(pattern):
            fail(
                InvalidField(
                    f"{pattern!r} is not a room pattern (letters, digits, '_', '-', '*')",
                    field="room",
                )
            )
    try:
        key = (
            devstack.check_secret(secret, field="secret")
            if secret is not None
            else devstack.load_secret(settings.auth, dev_dir)
        )
        if not key:
            raise ConfigError(
                f"no JWT secret: pass --secret, set {devstack.SECRET_ENV}, or run `tidings dev`"
                f" once to create {dev_dir / devstack.SECRET_FILE}",
                field="secret",
            )
        jwt = devstack.mint_dev_token(
            settings.auth, key, tenant=tenant, user=user, roles=role or [], rooms=rooms, ttl=seconds
        )
    except TidingsError as exc:
        fail(exc)
    print(jwt)


# --- publish --------------------------------------------------------------------------------


class Via(StrEnum):
    http = "http"
    nats = "nats"


@app.command()
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
    settings = _settings(ctx)
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
    info = devstack.read_info(dev_dir) or {}
    if via is Via.http:
        base = url or info.get("publisher", {}).get("url")
        base = base or f"http://127.0.0.1:{settings.publisher.port}"
        answer = _publish_http(base, body, bearer or settings.publisher.token, settings)
    else:
        nats_url = url or (
            info.get("nats", {}).get("url") if "TIDINGS_NATS_URLS" not in os.environ else None
        )
        if nats_url:
            try:
                nats = settings.nats.model_validate(
                    {**settings.nats.model_dump(), "urls": [nats_url]}
                )
            except ValueError as exc:
                fail(InvalidField(str(exc).splitlines()[-1], field="url"))
            settings.nats = nats
        answer = asyncio.run(_publish_nats(settings, body))
    print(orjson.dumps(answer).decode())


def _publish_http(
    base: str, body: dict[str, Any], bearer: str | None, settings: Settings
) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    target = base.rstrip("/") + "/v1/notifications"
    try:
        resp = httpx.post(
            target, json=body, headers=headers, timeout=settings.nats.request_timeout + 5
        )
    except httpx.HTTPError as exc:
        fail(Unavailable(f"cannot reach the publisher at {target} ({exc}); is `tidings dev` up?"))
    try:
        answer = resp.json()
    except ValueError:
        answer = {"reason": resp.text.strip() or resp.reason_phrase}
    if resp.is_success and isinstance(answer, dict):
        return answer
    error = answer.get("error", answer) if isinstance(answer, dict) else {"reason": str(answer)}
    reason = f"{error.get('reason', resp.reason_phrase)} (HTTP {resp.status_code}"
    reason += f" {error['code']})" if "code" in error else ")"
    if "Retry-After" in resp.headers:
        reason += f"; retry after {resp.headers['Retry-After']}s"
    fail(TidingsError(reason, field=error.get("field")), 1)


async def _publish_nats(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    from tidings.client import Publisher

    try:
        publisher = await Publisher.connect(
            settings.nats,
            stream=settings.stream,
            events=settings.events,
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


# --- tail -----------------------------------------------------------------------------------


_SEVERITY_STYLE = {"success": "green", "warning": "yellow", "error": "red", "critical": "bold red"}


@app.command()
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
    _settings(ctx)
    info = devstack.read_info(dev_dir) or {}
    urls = url or [info.get("gateway", {}).get("ws") or "ws://127.0.0.1:8080/ws"]
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
            fresh = (devstack.read_info(dev_dir) or {}).get("token")
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
    import signal

    from tidings.client import ws

    sub = ws.Subscriber(
        urls,
        token=token,
        get_token=get_token,
        rooms=rooms,
        since=since,
        epoch=epoch,
        on_event=_tail_event,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def show() -> None:
        async for n in sub:
            if as_json:
                print(orjson.dumps(n.to_dict()).decode(), flush=True)
            else:
                style = _SEVERITY_STYLE.get(n.severity, "blue")
                out.print(
                    f"[dim]{escape(n.time)} #{n.seq}[/] [{style}]{escape(n.severity)}[/]"
                    f" {escape(n.event)} [cyan]{escape(n.room)}[/] [bold]{escape(n.title)}[/]"
                    + (f" — {escape(n.message)}" if n.message else "")
                )

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


def _tail_event(event: Event) -> None:
    """Connection changes on stderr, so stdout stays notifications only."""
    from tidings.client import ws

    if isinstance(event, ws.StateChanged):
        if event.state is ws.State.CONNECTED and event.welcome is not None:
            w = event.welcome
            resumed = " (resumed, nothing missed)" if w.recovered else ""
            _log(
                f"connected to {event.url} as {w.tenant}/{w.user}: epoch {w.epoch},"
                f" seq {w.seq}{resumed}"
            )
        elif event.state is ws.State.DISCONNECTED:
            _log(
                f"disconnected ({event.close_code or 'no connection'}: {event.reason});"
                f" retrying in {event.delay or 0:.1f}s"
            )
    elif isinstance(event, ws.Reset):
        _log(
            f"reset ({event.reason}): notifications up to seq {event.seq} may be missing;"
            f" epoch {event.epoch}"
        )
    elif isinstance(event, ws.RoomRemoved):
        _log(f"left {event.room} ({event.reason})")
    elif isinstance(event, ws.ServerError):
        _log(f"gateway error {event.error.code}: {event.error.reason}")


# --- nats init ------------------------------------------------------------------------------


@nats_app.command("init")
def nats_init(ctx: typer.Context) -> None:
    """Create the stream or bring it to the settings; idempotent. Exit 3 on conflicts."""
    settings = _settings(ctx)
    try:
        report = asyncio.run(devstack.provision(settings.nats, settings.stream))
    except TidingsError as exc:
        fail(exc)
    _show_report(report, settings)
    if report.conflicts:
        fail(_conflict(report, settings))


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _duration(seconds: float) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _size(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return f"{count}B"


def _show(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in ("max_age", "duplicate_window"):
        return _duration(float(value))
    if name in ("max_bytes", "max_msg_size") and int(value) >= 0:
        return _size(int(value))
    if name == "republish":
        src, dest = (value[0], value[1]) if isinstance(value, tuple) else (value.src, value.dest)
        return f"{src} → {dest}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(getattr(value, "value", value))


_CREATED_FIELDS = (
    "subjects",
    "storage",
    "num_replicas",
    "max_age",
    "max_bytes",
    "max_msg_size",
    "duplicate_window",
    "republish",
)


def _show_report(report: ProvisionReport, settings: Settings) -> None:
    name = escape(report.stream)
    if report.unchanged:
        out.print(f"stream [bold]{name}[/] unchanged (epoch {report.epoch})")
        return
    table = Table("field", "before", "after", "status")
    if report.created:
        from tidings.nats import desired_config

        want = desired_config(settings.stream)
        for field in _CREATED_FIELDS:
            table.add_row(field, "", escape(_show(field, getattr(want, field))), "created")
    for field, (old, new) in report.changed.items():
        table.add_row(field, escape(_show(field, old)), escape(_show(field, new)), "changed")
    for field, (old, new) in report.conflicts.items():
        table.add_row(
            field,
            escape(_show(field, old)),
            escape(_show(field, new)),
            "[red]cannot change in place[/]",
        )
    verb = "created" if report.created else "updated"
    if not (report.created or report.changed):
        verb = "kept"
    out.print(f"stream [bold]{name}[/] {verb} (epoch {report.epoch})")
    out.print(table)


def _conflict(report: ProvisionReport, settings: Settings) -> StreamConflict:
    fields = ", ".join(report.conflicts)
    keep = [
        f"TIDINGS_STREAM_{f.upper()}={_show(f, old)}"
        for f, (old, _new) in report.conflicts.items()
        if f"{f}" in type(settings.stream).model_fields
    ]
    hint = f" To keep the stream as it is, set {' '.join(keep)}." if keep else ""
    return StreamConflict(
        f"stream {report.stream}: JetStream cannot change {fields} in place. To apply it,"
        f" recreate the stream, which DELETES every stored notification (clients see a new"
        f" epoch): `nats stream rm {report.stream}`, then `tidings nats init`.{hint}"
    )


# --- bench ----------------------------------------------------------------------------------


@app.command()
def bench(
    scenario: Annotated[
        str, typer.Option(help="one-room, hundred-rooms, big-room, idle or smoke (presets).")
    ] = "one-room",
    systems: Annotated[
        str,
        typer.Option(
            help="Comma-separated: tidings, nats, socketio-node, socketio-py"
            " (tidings@c / tidings@python pick its publisher)."
        ),
    ] = "tidings,nats,socketio-node",
    clients: Annotated[int | None, typer.Option(help="WebSocket clients (preset).")] = None,
    rooms: Annotated[int | None, typer.Option(help="Tenant rooms (preset).")] = None,
    rates: Annotated[
        str | None, typer.Option(help="Notifications/s per step, comma-separated (preset).")
    ] = None,
    seconds: Annotated[float, typer.Option(help="Length of one step.")] = 5.0,
    rounds: Annotated[int, typer.Option(help="Interleaved sweeps per system (medians).")] = 1,
    p99_bound: Annotated[float, typer.Option(help="p99 bound (ms) of a passing step.")] = 50.0,
    user_share: Annotated[float, typer.Option(help="Share of publishes to user rooms.")] = 0.0,
    publishers: Annotated[int, typer.Option(help="Publisher processes (at most rooms).")] = 2,
    publisher: Annotated[
        str, typer.Option(help="Tidings' publishers: c (jspub) or python (the SDK's path).")
    ] = "c",
    per_process: Annotated[int, typer.Option(help="Clients per load-client process.")] = 5000,
    idle_clients: Annotated[
        int | None, typer.Option(help="Idle connections for KB/connection; 0 skips.")
    ] = None,
    server_core: Annotated[int, typer.Option(help="Core of the server under test.")] = 0,
    generator_core: Annotated[int, typer.Option(help="Core of clients, publishers, brokers.")] = 1,
    nice: Annotated[int, typer.Option(help="Nice of every child (negative needs root).")] = -10,
    storage: Annotated[str, typer.Option(help="Stream storage: file or memory.")] = "file",
    window: Annotated[
        float | None, typer.Option(help="Gateway batch window, s (default: its own).")
    ] = None,
    max_minutes: Annotated[float, typer.Option(help="Wall-clock budget of the run.")] = 30.0,
    profile_rate: Annotated[
        float | None, typer.Option(help="py-spy the gateway during the step at this rate.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for the JSON and PNG.")] = Path(
        "benchmarks/results"
    ),
) -> None:
    """Load-test the real path against its peers in the same run: JSON, table and PNG."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tidings.bench.main import SCENARIOS, BenchConfig, run_bench

    if scenario not in SCENARIOS:
        fail(InvalidField(f"choose one of {', '.join(SCENARIOS)}", field="scenario"))
    if publisher not in ("c", "python"):
        fail(InvalidField("choose c or python", field="publisher"))
    n, m, preset = SCENARIOS[scenario]
    try:
        steps = [float(r) for r in rates.split(",") if r.strip()] if rates else preset
    except ValueError:
        fail(InvalidField("is not a comma-separated list of numbers", field="rates"))
    idle = idle_clients if idle_clients is not None else (n if scenario == "idle" else 0)
    cfg = BenchConfig(
        scenario=scenario,
        clients=clients or n,
        rooms=rooms or m,
        rates=steps,
        seconds=seconds,
        systems=[s.strip() for s in systems.split(",") if s.strip()],
        rounds=rounds,
        p99_bound_ms=p99_bound,
        user_share=user_share,
        publishers=publishers,
        publisher=publisher,
        per_process=per_process,
        server_core=server_core,
        gen_core=generator_core,
        nice=nice if os.geteuid() == 0 or nice >= 0 else 0,
        storage=storage,
        window=window,
        idle_clients=idle,
        idle_only=scenario == "idle",
        max_minutes=max_minutes,
        profile_rate=profile_rate,
        out=out,
    )
    try:
        cfg.layout  # noqa: B018 - validates clients and rooms
    except ValueError as exc:
        fail(InvalidField(str(exc), field="clients"))
    total = (0 if cfg.idle_only else rounds * len(cfg.systems) * len(steps)) + (
        len(cfg.systems) if idle else 0
    )
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("starting", total=total)

        def progress(what: str, finished: bool) -> None:
            bar.update(task, description=what, advance=1 if finished else 0)
            if finished:
                bar.console.print(f"[dim]{escape(what)}[/]")

        try:
            result = run_bench(cfg, progress=progress, console=out_console())
        except BenchFailed as exc:
            fail(exc, 1)
    err.print(f"wrote {', '.join(result['files'].values())}")
    failures = [e for s in result["summary"].values() for e in s["errors"]]
    failures += [m["error"] for m in result["idle"] if "error" in m]
    if failures:
        raise typer.Exit(1)


def out_console() -> Console:
    return out


# --- services, events, dev ------------------------------------------------------------------


@app.command()
def publisher(ctx: typer.Context) -> None:
    """Run the publisher sidecar (HTTP → JetStream, with the durable outbox)."""
    from tidings.publisher.app import serve

    serve(_settings(ctx))


@app.command()
def gateway(ctx: typer.Context) -> None:
    """Run the WebSocket gateway (browsers ⇄ NATS, with resume and drain)."""
    from tidings.gateway.service import serve_gateway

    settings = _settings(ctx)
    if settings.gateway.demo:
        from tidings import demo

        serve_gateway(settings, pages=demo.gateway_pages(settings.auth))
    else:
        serve_gateway(settings)


@app.command()
def events(ctx: typer.Context) -> None:
    """List the event types this deployment accepts."""
    from tidings.catalogue import BUILTIN_EVENTS

    settings = _settings(ctx)
    table = Table("event", "description")
    for name, description in sorted(BUILTIN_EVENTS.items()):
        table.add_row(name, escape(description))
    for name in settings.events.extra:
        if name not in BUILTIN_EVENTS:
            table.add_row(escape(name), "(from TIDINGS_EVENTS_EXTRA)")
    out.print(table)
    if settings.events.allow_unknown:
        out.print("TIDINGS_EVENTS_ALLOW_UNKNOWN is on: any well-formed type is accepted too.")


@app.command()
def dev(
    ctx: typer.Context,
    nats_port: Annotated[int, typer.Option(help="NATS client port.")] = 4222,
    publisher_port: Annotated[int, typer.Option(help="Publisher sidecar port.")] = 8081,
    gateway_port: Annotated[int, typer.Option(help="WebSocket gateway port.")] = 8080,
    gateway_api_port: Annotated[int, typer.Option(help="Gateway API port (status).")] = 8083,
    demo_port: Annotated[int, typer.Option(help="Demo page port.")] = 8082,
    dev_dir: DirOption = Path(".tidings"),
    tenant: Annotated[str, typer.Option(help="Dev token's tenant.")] = "demo",
    user: Annotated[str, typer.Option(help="Dev token's user.")] = "alice",
    role: Annotated[list[str] | None, typer.Option(help="Dev token's roles [admin].")] = None,
    room: Annotated[list[str] | None, typer.Option(help="Dev token's room patterns [*].")] = None,
    ttl: Annotated[str, typer.Option(help="Dev token's lifetime.")] = "24h",
) -> None:
    """Run NATS, the stream and the services on loopback until Ctrl-C."""
    settings = _settings(ctx)
    seconds = _ttl_seconds(ttl)
    options = devstack.DevOptions(
        dir=dev_dir,
        nats_port=nats_port,
        publisher_port=publisher_port,
        gateway_port=gateway_port,
        gateway_api_port=gateway_api_port,
        demo_port=demo_port,
        tenant=tenant,
        user=user,
        roles=tuple(role) if role is not None else ("admin",),
        rooms=tuple(room) if room is not None else ("*",),
        token_ttl=seconds,
    )
    try:
        devstack.run(options, settings, log=_log, ready=_announce)
    except TidingsError as exc:
        fail(exc)
    err.print("stopped")


def _log(message: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(message)}")


def _announce(stack: devstack.DevStack) -> None:
    info = stack.info
    report = stack.report
    if report is not None and report.created:
        _log(f"created stream {report.stream}")
    if report is not None and report.conflicts:
        _log(f"stream keeps its {', '.join(report.conflicts)}; run `tidings nats init` for more")
    grid = Table.grid(padding=(0, 2))
    grid.add_row("NATS", info["nats"]["url"])
    for child in stack.children:
        shown = info.get(child.spec.name, {})
        url = shown.get("url", child.spec.url)
        extra = "  ".join(str(v) for k, v in shown.items() if k != "url")
        grid.add_row(child.spec.name, f"{url}  {extra}".rstrip())
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


def main() -> None:
    """Console-script entry point; a deliberate error prints one line, never a traceback."""
    try:
        app(prog_name="tidings")
    except TidingsError as exc:
        where = f"{exc.field}: " if exc.field else ""
        err.print(f"[red]error:[/] {escape(where + exc.reason)}")
        sys.exit(exit_code(exc))
