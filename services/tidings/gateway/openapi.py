"""The gateway API port's OpenAPI 3.1 document, served at ``/openapi.json`` on that port.

The status API (``GET /api/notifications/status``, a user's JWT) and the admin API (revoke,
revocations, presence, quotas: the operator key or a token with the admin role), written as data
from the same constants the handlers use (:mod:`tidings.gateway.admin`,
:mod:`tidings.gateway.quota_admin`, :mod:`tidings.quotas.limits`, :mod:`tidings.subjects`).
``tests/unit/test_gateway_openapi.py`` checks that every route the API port serves is in it and
every path in it is served, that the bodies' properties are exactly the fields the handlers take
(with their limits), and that every error code it names is a row of the error table;
``tests/integration/test_gateway_schemathesis.py`` runs schemathesis against a real gateway with it.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.codes import ErrorCode
from tidings.errors import AuthError
from tidings.gateway.admin import MAX_BODY, MAX_TTL, REVOKE_FIELDS
from tidings.gateway.quota_admin import LIMIT_FIELDS
from tidings.gateway.revoke import MAX_JTI, MAX_REASON
from tidings.openapi import WWW_AUTHENTICATE, error_answers
from tidings.openapi import json_answer as _json
from tidings.openapi import ref as _ref
from tidings.quotas.limits import MAX_COUNT, MAX_RATE
from tidings.subjects import ID_PATTERN

_E = ErrorCode
_ID = {"type": "string", "pattern": f"^{ID_PATTERN}$"}
_NO_STORE = {"Cache-Control": "no-store"}
# The ids the document's examples name: a throwaway tenant and user, so that a client generating
# requests from the examples (schemathesis) revokes and limits no real tenant.
EXAMPLE_TENANT = "example-tenant"
EXAMPLE_USER = "example-user"
_TENANT = {**_ID, "examples": [EXAMPLE_TENANT]}
_USER = {**_ID, "examples": [EXAMPLE_USER]}


def _auth_codes() -> tuple[ErrorCode, ...]:
    """Every code a refused credential answers with: the codes of :class:`AuthError`'s family."""
    found: set[ErrorCode] = set()
    todo: list[type[AuthError]] = [AuthError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return tuple(sorted(found, key=lambda c: c.value))


AUTH_CODES = _auth_codes()
# What every admin route may answer besides its own: a credential refused, not an admin, NATS away.
_ADMIN = (*AUTH_CODES, _E.FORBIDDEN, _E.UNAVAILABLE)
# What a query naming a tenant (and a user) may meet.
_QUERY = (_E.INVALID_FIELD, _E.MISSING_FIELD)
# What a JSON body may meet.
_BODY = (_E.MALFORMED, _E.INVALID_FIELD, _E.MISSING_FIELD, _E.TOO_LARGE)


def _errors(*codes: ErrorCode) -> dict[str, Any]:
    return error_answers(codes, {401: WWW_AUTHENTICATE})


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": _TENANT if name == "tenant" else _USER,
        "description": description,
    }


_TENANT_Q = _query("tenant", "the tenant; absent: the admin token's own (the operator: all)")
_COUNT = {"type": "integer", "minimum": 0}


def revoke_schema(max_lifetime: float) -> dict[str, Any]:
    """The body of ``POST``/``DELETE /api/admin/revoke`` (``admin.revocation_from``)."""
    longest = max_lifetime or MAX_TTL
    nullable_string: dict[str, Any] = {"type": ["string", "null"]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["tenant"],
        "properties": {
            "tenant": _TENANT,
            "user": {**_USER, "type": ["string", "null"], "description": "one user of the tenant"},
            "jti": {
                **nullable_string,
                "minLength": 1,
                "maxLength": MAX_JTI,
                "description": "one token (its jti claim)",
            },
            "ttl": {
                "type": ["number", "null"],
                "minimum": 1,
                "maximum": longest,
                "description": "seconds it lasts; absent or null: the longest token lifetime"
                " (TIDINGS_AUTH_MAX_TOKEN_LIFETIME), or until lifted when that is 0",
            },
            "reason": {**nullable_string, "maxLength": MAX_REASON},
        },
        # A user or a token, not both; neither: the whole tenant (the operator key only).
        "not": {
            "required": ["user", "jti"],
            "properties": {"user": {"type": "string"}, "jti": {"type": "string"}},
        },
    }


def limits_schema() -> dict[str, Any]:
    """The body of ``PUT /api/admin/quota`` (``quota_admin.limits_from``, ``Limits``)."""
    count = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["tenant"],
        "anyOf": [{"required": [name]} for name in ("rate", "burst", "daily")],
        "properties": {
            "tenant": _TENANT,
            "rate": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_RATE,
                "description": "notifications per second per publisher; 0: unlimited",
            },
            "burst": {**count, "description": "the token bucket's size; 0: one second of rate"},
            "daily": {**count, "description": "notifications per UTC day, all publishers"},
        },
    }


def _limits() -> dict[str, Any]:
    return _object(
        ["rate", "burst", "daily"],
        {"rate": {"type": "number", "minimum": 0}, "burst": _COUNT, "daily": _COUNT},
    )


def _revocation() -> dict[str, Any]:
    return _object(
        ["scope", "tenant"],
        {
            "scope": {"type": "string", "enum": ["tenant", "user", "jti"]},
            "tenant": _ID,
            "user": _ID,
            "jti": {"type": "string"},
            "at": {"type": "number"},
            "until": {"type": ["number", "null"]},
            "reason": {"type": "string"},
            "by": {"type": "string"},
        },
    )


def _applied(key: str) -> dict[str, Any]:
    return _object(
        [key, "closed", "gateways", "applied"],
        {key: _ref("Revocation"), "closed": _COUNT, "gateways": _COUNT, "applied": _COUNT},
    )


def _presence() -> dict[str, Any]:
    def ranked(key: str) -> dict[str, Any]:
        row = _object([key, "connections"], {key: _ID, "connections": _COUNT})
        return {"type": "array", "items": row}

    return _object(
        ["connections", "gateways"],
        {
            "connections": _COUNT,
            "gateways": _COUNT,
            "tenant": _ID,
            "user": _ID,
            "users": ranked("user"),
            "tenants": ranked("tenant"),
            "truncated": {"type": "boolean"},
        },
    )


def _op(
    summary: str,
    ok: dict[str, Any],
    ok_text: str,
    codes: tuple[ErrorCode, ...],
    *,
    query: list[dict[str, Any]] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """One operation behind the bearer scheme: its 200 answer and its error answers."""
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {"200": _json(ok, ok_text), **_errors(*codes)},
    }
    if query:
        op["parameters"] = query
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def document(*, max_lifetime: float = 0.0) -> dict[str, Any]:
    """The API port's routes, their parameters and bodies, and every answer they give
    (``max_lifetime``: TIDINGS_AUTH_MAX_TOKEN_LIFETIME, the longest ``ttl`` of a revocation)."""
    quota_answer = _object(
        ["tenant", "limits", "own"],
        {
            "tenant": _ID,
            "limits": _ref("LimitsAnswer"),
            "own": {"type": "boolean"},
            "revision": {"type": "integer", "minimum": 0},
            "used_today": _COUNT,
            "by": {"type": "string"},
            "at": {"type": "number"},
        },
    )
    counts = {"tenant_connections": _COUNT, "user_connections": _COUNT, "gateways": _COUNT}
    status = _object(["tenant", "user", *counts], {"tenant": _ID, "user": _ID, **counts})
    listed = {"type": "array", "items": _ref("Revocation")}
    own = {"tenant": _ID, "by": {"type": "string"}, "at": {"type": "number"}}
    row = {"allOf": [_ref("LimitsAnswer"), _object(["tenant"], own)]}
    quotas = _object(
        ["defaults", "quotas"],
        {"defaults": _ref("LimitsAnswer"), "quotas": {"type": "array", "items": row}},
    )
    user_q = _query("user", "one user of the tenant (the tenant must be named)")
    reads, changes = (*_ADMIN, *_QUERY), (*_ADMIN, *_BODY)
    paths: dict[str, Any] = {
        "/api/notifications/status": {
            "get": _op(
                "The caller's connections and its tenant's, summed over every gateway",
                status,
                "the counts",
                (*AUTH_CODES, _E.INVALID_FIELD),
            )
        },
        "/api/admin/revoke": {
            "post": _op(
                "Revoke a tenant, a user or a token on every gateway",
                _applied("revoked"),
                "stored, and how many gateways applied it",
                changes,
                body="Revoke",
            ),
            "delete": _op(
                "Lift a revocation",
                _applied("lifted"),
                "lifted, and how many gateways applied it",
                changes,
                body="Revoke",
            ),
        },
        "/api/admin/revocations": {
            "get": _op(
                "The revocations in force",
                _object(["revocations"], {"revocations": listed}),
                "the revocations in force",
                reads,
                query=[_TENANT_Q],
            )
        },
        "/api/admin/presence": {
            "get": _op(
                "Who is connected, summed over every gateway",
                _presence(),
                "the counts",
                reads,
                query=[_TENANT_Q, user_q],
            )
        },
        "/api/admin/quota": {
            "get": _op(
                "A tenant's publish limits and today's count",
                quota_answer,
                "its limits (own, or the defaults)",
                reads,
                query=[_TENANT_Q],
            ),
            "put": _op(
                "Set a tenant's publish limits (the operator key only)",
                quota_answer,
                "stored",
                changes,
                body="Limits",
            ),
            "delete": _op(
                "Put a tenant back on the default limits (the operator key only)",
                quota_answer,
                "back on the defaults",
                reads,
                query=[{**_TENANT_Q, "description": "the tenant"}],
            ),
        },
        "/api/admin/quotas": {
            "get": _op(
                "Every tenant with limits of its own",
                quotas,
                "the defaults and the tenants' own limits",
                reads,
                query=[_TENANT_Q],
            )
        },
        "/healthz": {
            "get": {
                "summary": "Liveness of the API port",
                "responses": {
                    "200": {
                        "description": "the process runs",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings gateway API port",
            "version": "1",
            "description": "docs/operations.md. The status API takes a user's JWT; the admin"
            " API the operator key (TIDINGS_GATEWAY_ADMIN_TOKEN, any tenant) or a JWT with the"
            f" admin role (its own tenant only, never the whole tenant). Bodies are at most"
            f" {MAX_BODY} bytes.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Revoke": revoke_schema(max_lifetime),
                "Limits": limits_schema(),
                "LimitsAnswer": _limits(),
                "Revocation": _revocation(),
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "reason"],
                            "properties": {
                                "code": {"type": "string", "enum": [c.value for c in ErrorCode]},
                                "reason": {"type": "string"},
                                "field": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
    }


def body_fields() -> dict[str, frozenset[str]]:
    """The properties each body schema documents, by schema name (the unit test's view)."""
    return {
        "Revoke": frozenset(revoke_schema(0.0)["properties"]),
        "Limits": frozenset(limits_schema()["properties"]),
    }


assert body_fields() == {"Revoke": REVOKE_FIELDS, "Limits": LIMIT_FIELDS}  # at import, too


def openapi_route(*, max_lifetime: float) -> Route:
    """``GET /openapi.json`` on the API port."""
    spec = orjson.dumps(document(max_lifetime=max_lifetime))

    async def openapi(_request: Request) -> Response:
        return Response(spec, 200, _NO_STORE, "application/json")

    return Route("/openapi.json", openapi, methods=["GET"])
