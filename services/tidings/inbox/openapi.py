"""The inbox API's OpenAPI 3.1 document, served at ``/v1/inbox/openapi.json``.

Written as data next to the routes; ``tests/unit/test_inbox_openapi.py`` checks that every
route the app serves is in it and every path in it is served, and that every error code it
names is a row of the error table.
"""

from __future__ import annotations

from typing import Any

from tidings.codes import ErrorCode
from tidings.inbox.filters import DEFAULT_LIMIT, MAX_LIMIT, MAX_Q, MAX_VALUES, Status
from tidings.inbox.preferences import CHANNELS
from tidings.inbox.retention import MAX_AGE_DAYS, MAX_ITEMS
from tidings.openapi import error_answers
from tidings.openapi import json_answer as _json
from tidings.openapi import ref as _ref

_SEVERITIES = ["info", "success", "warning", "error", "critical"]


def _errors(*codes: ErrorCode) -> dict[str, Any]:
    """Error answers by HTTP status; every route may also meet these three."""
    common = (ErrorCode.TOKEN_MISSING, ErrorCode.UNAVAILABLE, ErrorCode.TOKEN_IN_URL)
    return error_answers((*codes, *common))


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_REPEATED = {"type": "array", "items": {"type": "string"}, "maxItems": MAX_VALUES}
FILTER_PARAMETERS = [
    _query(
        "status",
        {"type": "string", "enum": [s.value for s in Status], "default": "all"},
        "all (everything not archived), unread, read, unseen, seen (not archived), archived",
    ),
    _query("domain", _REPEATED, "event domains (repeat the key)"),
    _query("event", _REPEATED, "event types <domain>.<action>"),
    _query("severity", {**_REPEATED, "items": {"enum": _SEVERITIES}}, "severities"),
    _query("room", _REPEATED, "rooms as the live frame names them (tenant, user:alice, ...)"),
    _query("since", {"type": "string", "format": "date-time"}, "RFC 3339, inclusive"),
    _query("until", {"type": "string", "format": "date-time"}, "RFC 3339, inclusive"),
    _query("q", {"type": "string", "maxLength": MAX_Q}, "text in title or message, literal"),
]
_PAGING = [
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "items per page",
    ),
    _query("cursor", {"type": "string"}, "next_cursor of the previous page (opaque)"),
]
_FLAG = {"type": "boolean"}
_STR = {"type": "string"}
_PREFS_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["domains"],
    "properties": {
        "domains": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"enum": list(CHANNELS)},
                "additionalProperties": {"type": ["boolean", "null"]},
            },
        }
    },
}
_DOMAINS = {
    "type": "object",
    "additionalProperties": {"type": "object", "additionalProperties": {"type": "boolean"}},
}
_E = ErrorCode
_BODY_ERRORS = (
    _E.MALFORMED,
    _E.INVALID_FIELD,
    _E.MISSING_FIELD,
    _E.UNSUPPORTED_MEDIA_TYPE,
    _E.TOO_LARGE,
)


def _op(summary: str, answer: dict[str, Any], *codes: ErrorCode, **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {**answer, **_errors(*codes)},
        **more,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_PREFS_ANSWER = {"200": _json(_ref("Preferences"), "the preferences")}
_PATH_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PATH_USER = {"name": "user", "in": "path", "required": True, "schema": {"type": "string"}}
_PROBE = {"responses": {"200": {"description": "up"}}}


def document() -> dict[str, Any]:
    p = "/v1/inbox"
    paths: dict[str, Any] = {
        f"{p}/notifications": {
            "get": _op(
                "A page of the caller's inbox, newest first",
                {"200": _json(_ref("Page"), "items and the cursor of the next page")},
                _E.INVALID_FIELD,
                _E.TOO_LARGE,
                parameters=FILTER_PARAMETERS + _PAGING,
            )
        },
        f"{p}/notifications/{{id}}": {
            "get": _op(
                "One notification (404 also for another tenant's or user's id)",
                {"200": _json(_ref("Item"), "the item")},
                _E.NOT_FOUND,
                parameters=[_PATH_ID],
            )
        },
        f"{p}/counts": {
            "get": _op("The bell's counts", {"200": _json(_ref("Counts"), "exact counts")})
        },
        f"{p}/state": {
            "post": _op(
                "Mark notifications read / unread, seen / unseen, archived / unarchived",
                {"200": _json(_ref("StateAnswer"), "the ids that changed and the new counts")},
                *_BODY_ERRORS,
                _E.NOT_FOUND,
                requestBody=_body(_ref("StateRequest")),
            )
        },
        f"{p}/mark-all": {
            "post": _op(
                "Mark everything (or what a filter selects) read, seen or archived",
                {"200": _json(_ref("CountsAnswer"), "the new counts")},
                *_BODY_ERRORS,
                requestBody=_body(_ref("MarkAllRequest")),
            )
        },
        f"{p}/preferences": {
            "get": _op("The caller's preferences", _PREFS_ANSWER),
            "put": _op(
                "Set (bool) or remove (null) the caller's overrides",
                _PREFS_ANSWER,
                *_BODY_ERRORS,
                requestBody=_body(_PREFS_BODY),
            ),
        },
        f"{p}/preferences/defaults": {
            "get": _op("The tenant's defaults", _PREFS_ANSWER),
            "put": _op(
                "Set the tenant's defaults (admin role)",
                _PREFS_ANSWER,
                *_BODY_ERRORS,
                _E.FORBIDDEN,
                requestBody=_body(_PREFS_BODY),
            ),
        },
        f"{p}/users/{{user}}": {
            "delete": _op(
                "Erase a user's state, marks, preferences and (unless notifications=keep) the"
                " notifications addressed to that user alone (admin role, own tenant)",
                {"204": {"description": "erased"}},
                _E.FORBIDDEN,
                _E.INVALID_FIELD,
                parameters=[
                    _PATH_USER,
                    _query(
                        "notifications",
                        {"type": "string", "enum": ["erase", "keep"], "default": "erase"},
                        "the notifications addressed to the user alone: erased, or kept",
                    ),
                ],
            )
        },
        f"{p}/retention": {
            "get": _op(
                "The tenant's retention (admin role): its own limits and those in force",
                {"200": _json(_ref("Retention"), "the limits")},
                _E.FORBIDDEN,
                _E.INVALID_FIELD,
            ),
            "put": _op(
                "Set the tenant's retention (admin role); keys left out stay, null follows the"
                " global setting, 0 keeps without limit; the writer applies it at its next pass",
                {"200": _json(_ref("Retention"), "the limits")},
                *_BODY_ERRORS,
                _E.FORBIDDEN,
                requestBody=_body(_ref("RetentionRequest")),
            ),
        },
        f"{p}/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}
        },
        "/healthz": {"get": {"summary": "Liveness", **_PROBE}},
        "/readyz": {"get": {"summary": "Readiness: the database answers", **_PROBE}},
        "/metrics": {"get": {"summary": "Prometheus metrics", **_PROBE}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings inbox API",
            "version": "1",
            "description": "Every notification a user may see, kept, with read/seen/archived"
            " state shared across devices (docs/inbox.md).",
        },
        "paths": paths,
        "components": {"schemas": _schemas(), "securitySchemes": _SECURITY},
    }


def _limit(most: int, description: str) -> dict[str, Any]:
    return {"type": ["integer", "null"], "minimum": 0, "maximum": most, "description": description}


_SECURITY = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}


def _schemas() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    return {
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
        "Item": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer"},
                "id": {"type": "string"},
                "event": {"type": "string"},
                "room": {"type": "string"},
                "time": {"type": "string", "format": "date-time"},
                "title": {"type": "string"},
                "message": {"type": "string"},
                "severity": {"type": "string", "enum": _SEVERITIES},
                "data": {"type": "object"},
                "read": _FLAG,
                "seen": _FLAG,
                "archived": _FLAG,
            },
        },
        "Page": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ref("Item")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "Counts": {
            "type": "object",
            "properties": {
                "total": count,
                "unread": count,
                "unseen": count,
                "unread_by_severity": {
                    "type": "object",
                    "properties": {s: count for s in _SEVERITIES},
                },
                "seq": {
                    **count,
                    "description": "The highest stream sequence stored when these counts were"
                    " taken: add what you hold with a higher seq, nothing else.",
                },
            },
        },
        "CountsAnswer": {"type": "object", "properties": {"counts": _ref("Counts")}},
        "StateRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ids"],
            "properties": {
                "ids": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 1000},
                "read": _FLAG,
                "seen": _FLAG,
                "archived": _FLAG,
            },
        },
        "StateAnswer": {
            "type": "object",
            "properties": {
                "changed": {"type": "array", "items": {"type": "string"}},
                "counts": _ref("Counts"),
            },
        },
        "MarkAllRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "read": {"const": True},
                "seen": {"const": True},
                "archived": {"const": True},
                "filter": {"type": "object", "description": "the list's filter keys"},
            },
        },
        "RetentionRequest": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "max_age_days": _limit(
                    MAX_AGE_DAYS, "days a notification is kept after it is stored"
                ),
                "max_items": _limit(MAX_ITEMS, "the newest N kept per audience"),
            },
        },
        "Retention": {
            "type": "object",
            "properties": {
                "max_age_days": _limit(MAX_AGE_DAYS, "the tenant's own (null: the global one)"),
                "max_items": _limit(MAX_ITEMS, "the tenant's own (null: the global one)"),
                "effective": {
                    "type": "object",
                    "description": "the limits in force (0: no limit)",
                    "properties": {"max_age_days": count, "max_items": count},
                },
            },
        },
        "Preferences": {
            "type": "object",
            "properties": {
                "channels": {"type": "array", "items": {"enum": list(CHANNELS)}},
                "defaults": _DOMAINS,
                "overrides": _DOMAINS,
                "effective": _DOMAINS,
            },
        },
    }
