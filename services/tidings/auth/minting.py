"""Signed tokens for development and tests (``tidings token``, ``tidings dev``, the demo).

Production tokens come from an identity provider; these carry the same claims the verifier
reads, with ids checked the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jwt

from tidings.subjects import check_id

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPrivateKeys

DEV_AUDIENCE = "tidings"
DEV_ISSUER = "tidings-dev"


def mint_token(
    secret: str | bytes | AllowedPrivateKeys,
    *,
    tenant: str,
    user: str,
    roles: Sequence[str] = (),
    rooms: Sequence[str] = (),
    ttl: float = 3600.0,
    audience: str = DEV_AUDIENCE,
    issuer: str = DEV_ISSUER,
    tenant_claim: str = "tenant",
    algorithm: str = "HS256",
    kid: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed token for development and tests; ids are validated like everywhere else.

    ``secret`` is the HMAC secret, or for RS/PS/ES/EdDSA the private key (PEM or a key
    object). ``claims`` are merged last; a ``None`` value removes a claim (to mint bad tokens).
    """
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": check_id(user, field="user"),
        tenant_claim: check_id(tenant, field="tenant"),
        "roles": [check_id(r, field="role") for r in roles],
        "rooms": list(rooms),
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl),
        "aud": audience,
        "iss": issuer,
    }
    for name, value in (claims or {}).items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, secret, algorithm=algorithm, headers=headers)
