"""The inbox API's HTTP plumbing: the caller's token, JSON bodies in, JSON answers and errors out.

The token is read like the gateway's status API reads it (``Authorization: Bearer <jwt>``,
verified by the one :class:`~tidings.auth.Verifier`); a token in the URL is refused the way the
gateway refuses it (``token_in_url``: proxies and access logs keep URLs). Every answer carries
``Cache-Control: no-store``: it is one user's inbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tidings.auth import Verifier
from tidings.auth.claims import Claims
from tidings.auth.urls import credential_in_query
from tidings.codes import ErrorCode
from tidings.errors import (
    InvalidField,
    Malformed,
    TidingsError,
    TokenMissing,
    TooLarge,
    UnsupportedMediaType,
    error_body,
)

NO_STORE = {"Cache-Control": "no-store"}


class TokenInUrl(TidingsError):
    code = ErrorCode.TOKEN_IN_URL


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_UTC_Z), status, NO_STORE, "application/json"
    )


def error_response(error: TidingsError | ErrorCode, reason: str | None = None) -> Response:
    code = error if isinstance(error, ErrorCode) else error.code
    headers = dict(NO_STORE)
    if code in (ErrorCode.TOKEN_MISSING, ErrorCode.TOKEN_EXPIRED):
        headers["WWW-Authenticate"] = 'Bearer realm="tidings-inbox"'
    return Response(error_body(error, reason), code.http_status, headers, "application/json")


async def caller(request: Request, verifier: Verifier) -> Claims:
    """The verified claims of the request's bearer token."""
    if credential_in_query(request.url.query):
        raise TokenInUrl(
            "send the token in the Authorization header, never in the URL (it would be logged)",
            field="query",
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissing("send Authorization: Bearer <jwt>", field="Authorization")
    return await verifier.verify(token.strip())


async def read_json(request: Request, *, limit: int) -> Any:
    """The decoded body: 415 unless JSON, 413 past ``limit`` (reads at most ``limit`` + a chunk).
    Kept on the request, so a handler run again (:func:`~tidings.inbox.store.retrying`) reads
    it again."""
    kept = getattr(request.state, "json_body", _NONE)
    if kept is not _NONE:
        return kept
    body = await _read_json(request, limit=limit)
    request.state.json_body = body
    return body


_NONE = object()


async def _read_json(request: Request, *, limit: int) -> Any:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"send Content-Type: application/json, not {media[:40] or 'nothing'!r}",
            field="Content-Type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes; at most {limit} are accepted", field="body")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise TooLarge(f"the body exceeds {limit} bytes", field="body")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON: {exc}", field="body") from None


def json_object(body: Any, *, known: Iterable[str]) -> Mapping[str, Any]:
    """``body`` as an object with no key outside ``known`` (an unknown one is refused: a typo
    such as ``"raed"`` must not pass as a request that changes nothing)."""
    if not isinstance(body, dict):
        raise Malformed(f"expected a JSON object, got {type(body).__name__}", field="body")
    extra = sorted(set(body) - set(known))
    if extra:
        raise InvalidField("unknown field", field=str(extra[0])[:64])
    return body


def query_values(request: Request) -> dict[str, list[str]]:
    """The query string as ``{key: [values]}`` (repeated keys kept)."""
    values: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        values.setdefault(key, []).append(value)
    return values
