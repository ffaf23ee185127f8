"""Credentials in URLs: refused wherever a token is read (the gateway's ``/ws`` and status
API, the inbox API). Proxies and access logs keep URLs, never headers or frames."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# A query parameter named like a credential (any case), or a value that is a JWT.
_CREDENTIAL_PARAM = re.compile(
    r"(?:^|[&;])(?:[a-z_-]*token|jwt|bearer|auth|authorization)(?:=|&|;|$)", re.IGNORECASE
)
_JWT_VALUE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.")


def credential_in_query(query: str) -> bool:
    """Whether the URL's query string carries a token (by a parameter's name or a JWT value)."""
    return bool(_CREDENTIAL_PARAM.search(query) or _JWT_VALUE.search(unquote_plus(query)))
