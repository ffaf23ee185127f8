"""What every command shares: the two consoles, failing with the right exit code, the settings."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from tidings.dev.info import read_info
from tidings.errors import ConfigError, InvalidField, Malformed, StreamConflict, TidingsError
from tidings.settings import Settings, load_settings
from tidings.units import parse_duration
from tidings.variables import unknown_variables

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # the terminal wraps, not rich

EnvFileOption = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        help="KEY=VALUE lines (TIDINGS_* variables) read before the environment;"
        " the environment and the flags below win over it.",
        show_default=False,
    ),
]
NatsUrlOption = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS URLs, comma-separated (TIDINGS_NATS_URLS).", show_default=False
    ),
]
HostOption = Annotated[str | None, typer.Option(help="Bind address.", show_default=False)]
PortOption = Annotated[int | None, typer.Option(help="Bind port.", show_default=False)]
LogLevelOption = Annotated[
    str | None, typer.Option(help="DEBUG, INFO, WARNING… (TIDINGS_LOG_LEVEL).", show_default=False)
]

DirOption = Annotated[
    Path, typer.Option("--dir", help="Dev data dir: dev.json, jwt-secret, NATS data, logs.")
]


def exit_code(exc: TidingsError) -> int:
    """2 for bad input or configuration, 3 for a stream conflict, 1 for everything else."""
    if isinstance(exc, StreamConflict):
        return 3
    if isinstance(exc, ConfigError | InvalidField | Malformed):
        return 2
    return 1


def show_error(exc: TidingsError) -> None:
    """One line on stderr, naming the field when there is one."""
    where = f"{exc.field}: " if exc.field else ""
    err.print(f"[red]error:[/] {escape(where + exc.reason)}")


def fail(exc: TidingsError, code: int | None = None) -> NoReturn:
    show_error(exc)
    raise typer.Exit(exit_code(exc) if code is None else code)


def log(message: str) -> None:
    """A timestamped progress line on stderr (stdout stays machine output)."""
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(message)}")


def ttl_seconds(ttl: str) -> float:
    """A token lifetime such as ``1h`` or ``3600``, positive, or a clean exit naming ``ttl``."""
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        fail(InvalidField(str(exc), field="ttl"))
    if seconds <= 0:
        fail(InvalidField("must be positive", field="ttl"))
    return seconds


def settings_of(ctx: typer.Context) -> Settings:
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


def use_nats_url(settings: Settings, url: str | None, dev_dir: Path) -> None:
    """Point ``settings.nats`` at ``--url``, else (without ``TIDINGS_NATS_URLS``) at the NATS
    of a running ``tidings dev`` (its dev.json), so commands find the dev stack on any port."""
    if url is None and "TIDINGS_NATS_URLS" not in os.environ:
        url = ((read_info(dev_dir) or {}).get("nats") or {}).get("url")
    if not url:
        return
    try:
        settings.nats = settings.nats.model_validate(
            {**settings.nats.model_dump(), "urls": [u.strip() for u in url.split(",")]}
        )
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        fail(InvalidField(reason, field="url"))


def apply_env(env_file: Path | None, flags: dict[str, object | None]) -> None:
    """Before the settings are read: ``env_file``'s variables where the environment has none,
    then each flag given, over both (flag > environment > file, as Compose does)."""
    if env_file is not None:
        from dotenv import dotenv_values

        if not env_file.is_file():
            fail(ConfigError(f"no such file: {env_file}", field="--env-file"))
        for key, value in dotenv_values(env_file).items():
            if value is None:
                fail(ConfigError(f"{key!r} has no value (KEY=VALUE expected)", field="--env-file"))
            os.environ.setdefault(key, value)
    for variable, flag in flags.items():
        if flag is not None:
            os.environ[variable] = str(flag)
