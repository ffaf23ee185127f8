"""The gateway API port's OpenAPI document says what the port serves: every route is in it and
every path in it is served with the same methods, the bodies' properties are exactly the fields the
handlers take (with their limits), every error code it names is in the table with its status, and
what the document allows the handlers' own checks accept."""

from __future__ import annotations

from typing import Any, cast

import pytest

from tests.support.openapi_doc import (
    documented_routes,
    error_answers,
    served_routes,
    unresolved_references,
)
from tidings.codes import ErrorCode
from tidings.errors import TidingsError
from tidings.gateway.admin import MAX_TTL, REVOKE_FIELDS, Actor, Admin, revocation_from
from tidings.gateway.openapi import AUTH_CODES, document, openapi_route
from tidings.gateway.quota_admin import LIMIT_FIELDS, QuotaAdmin, limits_from
from tidings.gateway.revoke import MAX_JTI, MAX_REASON
from tidings.gateway.routes import api_app
from tidings.quotas.limits import MAX_COUNT, MAX_RATE
from tidings.settings import GatewaySettings, QuotaSettings

OPERATOR = Actor("operator")


def served() -> set[tuple[str, str]]:
    """The API port's routes as the service builds them (``Gateway._start_api``)."""
    nothing = cast(Any, None)
    admin = Admin(
        GatewaySettings(),
        gateway_id="gw",
        verifier=nothing,
        revocations=nothing,
        bucket=nothing,
        presence=nothing,
        audit=nothing,
        auth_failures=nothing,
        nats=nothing,
        js=nothing,
    )
    quotas = QuotaAdmin(
        admin,
        audit=nothing,
        bucket=nothing,
        defaults=QuotaSettings(),
        js=nothing,
        like=nothing,
        timeout=1.0,
    )
    extra = [*admin.routes(), *quotas.routes(), openapi_route(max_lifetime=0)]
    app = api_app(nothing, nothing, nothing, extra=extra)
    return served_routes(app)


def test_every_route_is_documented_and_every_documented_route_is_served() -> None:
    assert served() == documented_routes(document())


def test_the_bodies_are_what_the_handlers_take_with_their_limits() -> None:
    schemas = document(max_lifetime=3600)["components"]["schemas"]
    revoke, limits = schemas["Revoke"], schemas["Limits"]
    assert set(revoke["properties"]) == REVOKE_FIELDS
    assert set(limits["properties"]) == LIMIT_FIELDS
    assert revoke["properties"]["jti"]["maxLength"] == MAX_JTI
    assert revoke["properties"]["reason"]["maxLength"] == MAX_REASON
    assert revoke["properties"]["ttl"]["maximum"] == 3600
    unbounded = document()["components"]["schemas"]["Revoke"]["properties"]["ttl"]
    assert unbounded["maximum"] == MAX_TTL
    assert limits["properties"]["rate"]["maximum"] == MAX_RATE
    assert limits["properties"]["daily"]["maximum"] == MAX_COUNT
    assert limits["properties"]["burst"]["maximum"] == MAX_COUNT


def test_the_document_is_openapi_3_1_with_resolvable_references() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert not unresolved_references(doc)


def test_error_codes_named_are_rows_of_the_table_with_their_status() -> None:
    named = error_answers(document()["paths"])
    assert named
    for status, code in named:
        assert int(ErrorCode(code).http_status) == int(status), (code, status)
    assert {ErrorCode.TOKEN_MISSING, ErrorCode.TOKEN_REVOKED, ErrorCode.TOKEN_EXPIRED} <= set(
        AUTH_CODES
    )


REVOKES_DOCUMENTED_VALID = [
    {"tenant": "acme"},
    {"tenant": "acme", "user": "alice", "ttl": 60, "reason": "left"},
    {"tenant": "acme", "jti": "x" * MAX_JTI, "user": None, "reason": None, "ttl": None},
    {"tenant": "acme", "user": None, "jti": None},
]
REVOKES_DOCUMENTED_INVALID = [
    {},
    {"tenant": "acme", "user": "alice", "jti": "t-1"},  # the document's `not`
    {"tenant": "acme", "jti": ""},
    {"tenant": "acme", "jti": "x" * (MAX_JTI + 1)},
    {"tenant": "acme", "ttl": 0.5},
    {"tenant": "acme", "ttl": True},
    {"tenant": "acme", "reason": "r" * (MAX_REASON + 1)},
    {"tenant": "acme", "extra": 1},  # additionalProperties: false
    {"tenant": "ac me"},
    {"tenant": None},
]


@pytest.mark.parametrize("body", REVOKES_DOCUMENTED_VALID)
def test_a_revoke_the_document_allows_is_accepted(body: dict[str, Any]) -> None:
    revocation_from(body, OPERATOR, 0.0, 1000.0)


@pytest.mark.parametrize("body", REVOKES_DOCUMENTED_INVALID)
def test_a_revoke_the_document_forbids_is_refused_naming_a_code(body: dict[str, Any]) -> None:
    with pytest.raises(TidingsError) as caught:
        revocation_from(body, OPERATOR, 0.0, 1000.0)
    assert caught.value.code in {ErrorCode.MISSING_FIELD, ErrorCode.INVALID_FIELD}


@pytest.mark.parametrize(
    "body",
    [
        {"tenant": "acme", "rate": 0},
        {"tenant": "acme", "daily": MAX_COUNT},
        {"tenant": "acme", "rate": MAX_RATE, "burst": 3, "daily": 0},
        {"tenant": "acme", "rate": 0.5},
    ],
)
def test_limits_the_document_allows_are_accepted(body: dict[str, Any]) -> None:
    limits_from(body, OPERATOR, 1000.0)


@pytest.mark.parametrize(
    "body",
    [
        {"tenant": "acme"},  # the document's anyOf: one of rate, burst, daily
        {"rate": 1},
        {"tenant": "acme", "rate": -1},
        {"tenant": "acme", "rate": MAX_RATE * 2},
        {"tenant": "acme", "rate": None},
        {"tenant": "acme", "burst": 1.5},
        {"tenant": "acme", "daily": MAX_COUNT + 1},
        {"tenant": "acme", "daily": True},
        {"tenant": "acme", "rate": 1, "extra": 1},
    ],
)
def test_limits_the_document_forbids_are_refused_naming_a_code(body: dict[str, Any]) -> None:
    with pytest.raises(TidingsError) as caught:
        limits_from(body, OPERATOR, 1000.0)
    assert caught.value.code in {ErrorCode.MISSING_FIELD, ErrorCode.INVALID_FIELD}
