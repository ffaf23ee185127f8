"""JSON Web Tokens and room authorization: the security checks, each in one module.

- :mod:`~tidings.auth.keys` — verification keys and the ``alg`` allow-list (a leaf: settings
  imports it to check its values);
- :mod:`~tidings.auth.claims` — :class:`Claims` and the one authorization rule
  (:meth:`Claims.authorize`), the room-pattern grammar;
- :mod:`~tidings.auth.jwks` — keys fetched from an identity provider;
- :mod:`~tidings.auth.verifier` — a token in, claims or a typed refusal out;
- :mod:`~tidings.auth.minting` — dev and test tokens.

Import from here (``from tidings.auth import Claims, Verifier``); the submodules are the layout.
"""

from tidings.auth.claims import ROOM_PATTERN_RE, Claims, check_room_pattern
from tidings.auth.jwks import JwksClient
from tidings.auth.keys import (
    MIN_SECRET_BYTES,
    PublicKey,
    check_algorithms,
    check_secret,
    default_algorithms,
    key_algorithms,
    load_public_key,
)
from tidings.auth.minting import DEV_AUDIENCE, DEV_ISSUER, mint_token
from tidings.auth.verifier import MAX_ROOM_PATTERNS, MAX_TOKEN_BYTES, TokenPolicy, Verifier

__all__ = [
    "DEV_AUDIENCE",
    "DEV_ISSUER",
    "MAX_ROOM_PATTERNS",
    "MAX_TOKEN_BYTES",
    "MIN_SECRET_BYTES",
    "ROOM_PATTERN_RE",
    "Claims",
    "JwksClient",
    "PublicKey",
    "TokenPolicy",
    "Verifier",
    "check_algorithms",
    "check_room_pattern",
    "check_secret",
    "default_algorithms",
    "key_algorithms",
    "load_public_key",
    "mint_token",
]
