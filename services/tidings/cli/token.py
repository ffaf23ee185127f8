"""`tidings token`: mint a dev JWT with the secret `tidings dev` uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tidings.auth import ROOM_PATTERN_RE
from tidings.cli.common import DirOption, fail, settings_of, ttl_seconds
from tidings.dev import info
from tidings.errors import ConfigError, InvalidField, TidingsError


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
    settings = settings_of(ctx)
    seconds = ttl_seconds(ttl)
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
            info.check_secret(secret, field="secret")
            if secret is not None
            else info.load_secret(settings.auth, dev_dir)
        )
        if not key:
            raise ConfigError(
                f"no JWT secret: pass --secret, set {info.SECRET_ENV}, or run `tidings dev`"
                f" once to create {dev_dir / info.SECRET_FILE}",
                field="secret",
            )
        jwt = info.mint_dev_token(
            settings.auth, key, tenant=tenant, user=user, roles=role or [], rooms=rooms, ttl=seconds
        )
    except TidingsError as exc:
        fail(exc)
    print(jwt)
