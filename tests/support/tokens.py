"""The secret every test gateway verifies with, and the claims of a good token."""

from __future__ import annotations

import time
from typing import Any

from tidings.auth import DEV_AUDIENCE, DEV_ISSUER

JWT_SECRET = "tidings-test-secret-0123456789abcdef"


def good_claims(**changes: Any) -> dict[str, Any]:
    """Claims a gateway requiring the dev ``aud``/``iss`` accepts for acme/alice, valid an hour.

    A change replaces a claim; a ``None`` value removes it (so a test can build each bad token
    from the good one by one difference).
    """
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "roles": ["admin"],
        "rooms": ["site-*"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "aud": DEV_AUDIENCE,
        "iss": DEV_ISSUER,
    }
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body
