"""The files under the dev dir: the JWT secret, the dev token minted with it, and ``dev.json``.

`tidings dev` writes them; `tidings token`, `publish`, `tail` and the demo server read them, so
these helpers stay light (no NATS, no HTTP client).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tidings.auth import DEV_AUDIENCE, DEV_ISSUER, keys, mint_token
from tidings.errors import InvalidField
from tidings.settings import AuthSettings

INFO_FILE = "dev.json"
SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)
SECRET_ENV = "TIDINGS_AUTH_JWT_SECRET"  # noqa: S105 (a variable name)


def check_secret(secret: str, *, field: str) -> str:
    """The gateway's own secret rule (:func:`tidings.auth.check_secret`), naming ``field``."""
    try:
        return keys.check_secret(secret)
    except ValueError as exc:
        raise InvalidField(str(exc), field=field) from None


def load_secret(auth: AuthSettings, dev_dir: Path) -> str | None:
    """The JWT secret from ``TIDINGS_AUTH_JWT_SECRET`` or ``<dir>/jwt-secret``, if any."""
    if auth.jwt_secret is not None:
        return auth.jwt_secret.get_secret_value()
    path = dev_dir / SECRET_FILE
    if path.is_file():
        return check_secret(path.read_text(encoding="utf-8").strip(), field=str(path))
    return None


def ensure_secret(auth: AuthSettings, dev_dir: Path) -> str:
    """The dev secret, generated once into ``<dir>/jwt-secret`` (mode 0600) when none is set."""
    existing = load_secret(auth, dev_dir)
    if existing:
        return existing
    dev_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(dev_dir / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


def mint_dev_token(
    auth: AuthSettings,
    secret: str,
    *,
    tenant: str,
    user: str,
    roles: Sequence[str],
    rooms: Sequence[str],
    ttl: float,
) -> str:
    """An HS256 token that a gateway with these auth settings accepts (claim names, aud, iss)."""
    renamed: dict[str, Any] = {}
    for default, name, value in (
        ("sub", auth.user_claim, user),
        ("roles", auth.roles_claim, list(roles)),
        ("rooms", auth.rooms_claim, list(rooms)),
    ):
        if name != default:
            renamed[name], renamed[default] = value, None
    return mint_token(
        secret,
        tenant=tenant,
        user=user,
        roles=roles,
        rooms=rooms,
        ttl=ttl,
        audience=auth.audience or DEV_AUDIENCE,
        issuer=auth.issuer or DEV_ISSUER,
        tenant_claim=auth.tenant_claim,
        claims=renamed,
    )


def read_info(dev_dir: Path) -> dict[str, Any] | None:
    """What a running `tidings dev` wrote to ``<dir>/dev.json`` (``None`` if it is not running)."""
    try:
        info = json.loads((dev_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_json(path: Path, body: Mapping[str, Any]) -> None:
    # Write then rename, so a reader never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
