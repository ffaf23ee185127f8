"""The publisher sidecar's OpenAPI 3.1 document, served at ``/openapi.json``.

Written as data next to the routes, from the same constants the validation uses
(:mod:`tidings.publishing`); ``tests/unit/test_publisher_openapi.py`` checks that every route the
sidecar serves is in it and every path in it is served, that the notification's properties are
exactly the fields ``prepare`` accepts, and that every error code it names is a row of the error
table. ``tests/integration/test_schemathesis.py`` runs schemathesis against a real sidecar with it.
"""

from __future__ import annotations

from typing import Any

from tidings.catalogue import DEFAULT_CATALOGUE, EVENT_RE, Catalogue
from tidings.codes import ErrorCode
from tidings.envelope import Severity
from tidings.openapi import RETRY_AFTER, WWW_AUTHENTICATE, error_answers
from tidings.openapi import json_answer as _json
from tidings.openapi import ref as _ref
from tidings.publishing import FIELDS, MAX_MESSAGE, MAX_SOURCE, MAX_TITLE
from tidings.settings import PublisherSettings
from tidings.subjects import ID_PATTERN

_E = ErrorCode
_ID = {"type": "string", "pattern": f"^{ID_PATTERN}$"}
# What a request body may meet on both publish routes.
_BODY_ERRORS = (
    _E.MALFORMED,
    _E.INVALID_FIELD,
    _E.BAD_ROOM,
    _E.UNKNOWN_EVENT,
    _E.UNSUPPORTED_MEDIA_TYPE,
    _E.TOO_LARGE,
    _E.UNAUTHORIZED,
    _E.FORBIDDEN,
    _E.CONFLICT,
    _E.OUTBOX_FULL,
    _E.INTERNAL,
)


def _errors(*codes: ErrorCode) -> dict[str, Any]:
    return error_answers(codes, {401: WWW_AUTHENTICATE, 503: RETRY_AFTER})


def _one(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: schema},
    }


def notification_schema(catalogue: Catalogue, *, allow_broadcast: bool) -> dict[str, Any]:
    """One notification as ``POST /v1/notifications`` takes it (``publishing.prepare``): for a
    tenant (to all its users, a user, a role or a named room), or a broadcast (no tenant), when
    this sidecar may broadcast."""
    text = {"type": "string", "minLength": 1, "pattern": r"\S"}  # not blank
    event: dict[str, Any] = (
        {"type": "string", "pattern": EVENT_RE.pattern}
        if catalogue.allow_unknown
        else {"type": "string", "enum": sorted(catalogue.events)}
    )
    # null reads as absent for id, audience, data and source (``prepare``), and says so here.
    common: dict[str, Any] = {
        "id": {
            **_ID,
            "type": ["string", "null"],
            "description": "idempotency key, scoped by tenant; absent or null: a new id",
        },
        "event": {**event, "description": "an event type of the catalogue, <domain>.<action>"},
        "title": {**text, "maxLength": MAX_TITLE},
        "message": {**text, "maxLength": MAX_MESSAGE},
        "severity": {"type": "string", "enum": [s.value for s in Severity], "default": "info"},
        "data": {
            "type": ["object", "null"],
            "description": "any JSON object, delivered as given; absent or null: {}",
        },
        "source": {
            "type": ["string", "null"],
            "maxLength": MAX_SOURCE,
            "description": "absent, null or empty: the sidecar's TIDINGS_PUBLISHER_SOURCE",
        },
    }
    for_tenant: dict[str, Any] = {
        "type": "object",
        "title": "for a tenant",
        "additionalProperties": False,
        "required": ["tenant", "event", "title", "message"],
        "properties": {
            **common,
            "tenant": _ID,
            "audience": {
                "description": "who receives it; absent or null: every user of the tenant",
                "oneOf": [
                    {"type": "null"},
                    _one("user", _ID),
                    _one("role", _ID),
                    _one("room", _ID),
                ],
            },
        },
    }
    assert set(for_tenant["properties"]) == FIELDS  # the test says so too; here at import
    if not allow_broadcast:
        return for_tenant
    broadcast = {
        "type": "object",
        "title": "a broadcast (TIDINGS_PUBLISHER_ALLOW_BROADCAST)",
        "additionalProperties": False,
        "required": ["audience", "event", "title", "message"],
        "properties": {**common, "audience": _one("broadcast", {"const": True})},
    }
    return {"oneOf": [for_tenant, broadcast]}


def document(
    catalogue: Catalogue = DEFAULT_CATALOGUE, *, allow_broadcast: bool = False
) -> dict[str, Any]:
    """The sidecar's routes, their bodies and every answer they give (its catalogue's events,
    and broadcasts when it may send them)."""
    defaults = PublisherSettings.model_fields
    max_items = defaults["batch_max_items"].default
    publish = {
        "202": _json(_ref("Result"), "stored (seq), a duplicate of a stored one, or queued"),
        **_errors(*_BODY_ERRORS),
    }
    batch = {
        "202": _json(
            {
                "type": "object",
                "required": ["results"],
                "additionalProperties": False,
                "properties": {"results": {"type": "array", "items": _ref("Result")}},
            },
            "one result per notification, in order",
        ),
        **_errors(*_BODY_ERRORS),
    }
    paths: dict[str, Any] = {
        "/v1/notifications": {
            "post": {
                "summary": "Publish one notification",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Notification")}},
                },
                "responses": publish,
            }
        },
        "/v1/notifications/batch": {
            "post": {
                "summary": "Publish notifications together, in order",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["notifications"],
                                "properties": {
                                    "notifications": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": max_items,
                                        "items": _ref("Notification"),
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": batch,
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "ok"}},
                        },
                        "the process runs",
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": _json(_ref("Ready"), "accepting: NATS is up, or the outbox has room"),
                    "503": _json(_ref("Ready"), "not accepting"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "the text exposition format",
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
    security: list[dict[str, list[str]]] = [{"bearer": []}]
    for route in ("/v1/notifications", "/v1/notifications/batch"):
        paths[route]["post"]["security"] = security
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings publisher sidecar",
            "version": "1",
            "description": "docs/publisher.md. The bearer token is required only when"
            " TIDINGS_PUBLISHER_TOKEN is set.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Notification": notification_schema(catalogue, allow_broadcast=allow_broadcast),
                "Result": {
                    "type": "object",
                    "required": ["id", "seq", "duplicate"],
                    "additionalProperties": False,
                    "properties": {
                        "id": _ID,
                        "seq": {"type": ["integer", "null"], "minimum": 1},
                        "duplicate": {"type": "boolean"},
                        "queued": {"const": True},
                    },
                },
                "Ready": {
                    "type": "object",
                    "required": ["ready", "nats", "outbox"],
                    "properties": {
                        "ready": {"type": "boolean"},
                        "nats": {"type": "string"},
                        "outbox": {
                            "type": "object",
                            "required": ["messages", "bytes", "max_messages", "max_bytes"],
                            "properties": {
                                k: {"type": "integer", "minimum": 0}
                                for k in ("messages", "bytes", "max_messages", "max_bytes")
                            },
                        },
                    },
                },
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
