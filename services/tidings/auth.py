"""JSON Web Tokens: minting dev tokens (and, with the gateway, verifying them).

Claims: ``sub`` (user), a tenant claim (name configurable, default ``tenant``), ``roles`` and
``rooms`` (named-room patterns the holder may join, ``*`` wildcards allowed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jwt

from tidings.subjects import check_id

DEV_AUDIENCE = "tidings"
DEV_ISSUER = "tidings-dev"


def mint_token(
    secret: str,
    *,
    tenant: str,
    user: str,
    roles: Sequence[str] = (),
    rooms: Sequence[str] = (),
    ttl: float = 3600.0,
    audience: str = DEV_AUDIENCE,
    issuer: str = DEV_ISSUER,
    tenant_claim: str = "tenant",
) -> str:
    """An HS256 token for development and tests; ids are validated like everywhere else."""
    now = int(time.time())
    claims = {
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
    return jwt.encode(claims, secret, algorithm="HS256")
