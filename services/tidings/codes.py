"""The one table of errors: every refusal Tidings answers with, on the wire, over HTTP, in the CLI.

A leaf module (it imports nothing of Tidings) so that every other module can name a row. Each
row has a stable name (the string a client switches on forever), a number that is never
renumbered or reused, the HTTP status an HTTP surface answers with, the WebSocket close code
used when the error ends a connection, whether it always ends the connection (``fatal``), and
whether the same request may succeed later (``retryable``). ``docs/protocol.md`` and
``docs/publisher.md`` print this table; a test keeps them in step.
"""

# Codes named TOKEN_* are error codes, not secrets:
# ruff: noqa: S105

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from http import HTTPStatus


class Reconnect(StrEnum):
    """What a client should do after a close code."""

    BACKOFF = "backoff"  # reconnect with exponential backoff and jitter, resuming
    NEW_TOKEN = "new_token"  # reconnect only with a new token
    NEVER = "never"  # a bug or a refusal: retrying unchanged fails the same way


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses; the close reason is an :class:`ErrorCode`."""

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4000
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    HELLO_TIMEOUT = 4008
    RATE_LIMITED = 4029
    TOKEN_EXPIRED = 4401

    @property
    def meaning(self) -> str:
        return _CLOSE_MEANINGS[self][0]

    @property
    def reconnect(self) -> Reconnect:
        return _CLOSE_MEANINGS[self][1]


_CLOSE_MEANINGS: dict[CloseCode, tuple[str, Reconnect]] = {
    CloseCode.NORMAL: ("normal closure", Reconnect.BACKOFF),
    CloseCode.MESSAGE_TOO_BIG: ("a client frame exceeded the size limit", Reconnect.NEVER),
    CloseCode.INTERNAL_ERROR: ("unexpected gateway error", Reconnect.BACKOFF),
    CloseCode.SERVICE_RESTART: ("the gateway is restarting (drain)", Reconnect.BACKOFF),
    CloseCode.TRY_AGAIN_LATER: (
        "slow consumer, overloaded, or a dependency (NATS, JWKS) is unavailable",
        Reconnect.BACKOFF,
    ),
    CloseCode.BAD_REQUEST: (
        "the first frame was not a valid hello (malformed, wrong type, bad room)",
        Reconnect.NEVER,
    ),
    CloseCode.UNAUTHORIZED: ("missing, malformed or invalid token", Reconnect.NEW_TOKEN),
    CloseCode.FORBIDDEN: ("the token does not allow what hello asked for", Reconnect.NEVER),
    CloseCode.HELLO_TIMEOUT: ("no hello within the hello timeout", Reconnect.BACKOFF),
    CloseCode.RATE_LIMITED: ("message rate or connection quota exceeded", Reconnect.BACKOFF),
    CloseCode.TOKEN_EXPIRED: ("the token expired (not refreshed in time)", Reconnect.NEW_TOKEN),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One error: its number, HTTP status, close code, and how a client should treat it."""

    number: int
    http: HTTPStatus
    close: CloseCode | None  # None: never sent on a WebSocket (HTTP, CLI or client side)
    fatal: bool  # ends a connection even after hello (every error during hello does)
    retryable: bool  # the same request may succeed later (with backoff)
    meaning: str


class ErrorCode(StrEnum):
    """Every error's stable name; its row in :data:`ERROR_TABLE` says the rest."""

    # 1xx: a frame or a request body
    INTERNAL = "internal"
    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    BAD_ROOM = "bad_room"
    TOO_MANY_ROOMS = "too_many_rooms"
    HELLO_REQUIRED = "hello_required"
    UNEXPECTED_FRAME = "unexpected_frame"
    HELLO_TIMEOUT = "hello_timeout"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_EVENT = "unknown_event"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    ORIGIN_FORBIDDEN = "origin_forbidden"
    SUBPROTOCOL_REQUIRED = "subprotocol_required"
    TOKEN_IN_URL = "token_in_url"
    CONFLICT = "conflict"
    # 2xx: the token and what it allows
    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_INVALID_SIGNATURE = "token_invalid_signature"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_BAD_AUDIENCE = "token_bad_audience"
    TOKEN_BAD_ISSUER = "token_bad_issuer"
    TOKEN_ALGORITHM_NOT_ALLOWED = "token_algorithm_not_allowed"
    TOKEN_CLAIM_MISSING = "token_claim_missing"
    TOKEN_CLAIM_INVALID = "token_claim_invalid"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    FORBIDDEN = "forbidden"
    IDENTITY_CHANGED = "identity_changed"
    QUOTA_EXCEEDED = "quota_exceeded"
    UNAUTHORIZED = "unauthorized"
    TOKEN_REVOKED = "token_revoked"
    PUBLISH_RATE_LIMITED = "publish_rate_limited"
    DAILY_QUOTA_EXCEEDED = "daily_quota_exceeded"
    USER_CONNECTIONS_FULL = "user_connections_full"
    # 3xx: the service's own state
    SLOW_CONSUMER = "slow_consumer"
    OVERLOADED = "overloaded"
    RESTARTING = "restarting"
    UNAVAILABLE = "unavailable"
    OUTBOX_FULL = "outbox_full"
    # 4xx: configuration and operations (CLI, start-up)
    CONFIG = "config"
    STREAM_CONFLICT = "stream_conflict"
    DEV_CONFLICT = "dev_conflict"
    START_FAILED = "start_failed"
    BENCH_FAILED = "bench_failed"
    # 5xx: raised by a client library itself, never sent by a server
    REFUSED = "refused"
    REQUEST_REFUSED = "request_refused"
    CONNECTION_LOST = "connection_lost"
    CLOSED = "closed"
    UNREACHABLE = "unreachable"

    @property
    def row(self) -> Row:
        return ERROR_TABLE[self]

    @property
    def number(self) -> int:
        return ERROR_TABLE[self].number

    @property
    def http_status(self) -> HTTPStatus:
        return ERROR_TABLE[self].http

    @property
    def close_code(self) -> CloseCode:
        """The close code when this error ends a connection (1011 for one never sent on one)."""
        return ERROR_TABLE[self].close or CloseCode.INTERNAL_ERROR

    @property
    def on_wire(self) -> bool:
        """Whether a gateway may send this code in an ``error`` frame or a close."""
        return ERROR_TABLE[self].close is not None

    @property
    def always_fatal(self) -> bool:
        return ERROR_TABLE[self].fatal

    @property
    def retryable(self) -> bool:
        return ERROR_TABLE[self].retryable

    @property
    def meaning(self) -> str:
        return ERROR_TABLE[self].meaning

    @classmethod
    def lookup(cls, name: str) -> ErrorCode | None:
        """The member named ``name``; ``None`` for a name newer than this code."""
        try:
            return cls(name)
        except ValueError:
            return None


def _row(
    number: int,
    http: int,
    close: CloseCode | None,
    meaning: str,
    *,
    fatal: bool = False,
    retryable: bool = False,
) -> Row:
    return Row(number, HTTPStatus(http), close, fatal, retryable, meaning)


_E, _C = ErrorCode, CloseCode
ERROR_TABLE: Mapping[ErrorCode, Row] = {
    _E.INTERNAL: _row(100, 500, _C.INTERNAL_ERROR, "unexpected error", retryable=True),
    _E.MALFORMED: _row(101, 400, _C.BAD_REQUEST, "not one JSON object of the expected shape"),
    _E.UNKNOWN_TYPE: _row(102, 400, _C.BAD_REQUEST, "`type` names no client frame"),
    _E.MISSING_FIELD: _row(103, 400, _C.BAD_REQUEST, "a required field is absent"),
    _E.INVALID_FIELD: _row(104, 400, _C.BAD_REQUEST, "a field has a wrong type or value"),
    _E.BAD_ROOM: _row(105, 400, _C.BAD_REQUEST, "not a named room `room:<name>`"),
    _E.TOO_MANY_ROOMS: _row(106, 400, _C.BAD_REQUEST, "named-room limit reached"),
    _E.HELLO_REQUIRED: _row(107, 400, _C.BAD_REQUEST, "first frame was not `hello`", fatal=True),
    _E.UNEXPECTED_FRAME: _row(108, 400, _C.BAD_REQUEST, "`hello` after `hello`"),
    _E.HELLO_TIMEOUT: _row(
        109, 408, _C.HELLO_TIMEOUT, "no `hello` in time", fatal=True, retryable=True
    ),
    _E.TOO_LARGE: _row(
        110, 413, _C.MESSAGE_TOO_BIG, "frame or body over the size limit", fatal=True
    ),
    _E.RATE_LIMITED: _row(
        111, 429, _C.RATE_LIMITED, "frames sent too fast", fatal=True, retryable=True
    ),
    _E.UNKNOWN_EVENT: _row(
        112, 400, None, "event type not in the catalogue (and unknown ones refused)"
    ),
    _E.UNSUPPORTED_MEDIA_TYPE: _row(113, 415, None, "the body is not declared as JSON"),
    _E.NOT_FOUND: _row(114, 404, None, "no such path, or no such notification for this token"),
    _E.METHOD_NOT_ALLOWED: _row(115, 405, None, "the path does not take this method"),
    _E.ORIGIN_FORBIDDEN: _row(116, 403, None, "the handshake's `Origin` is not on the allow-list"),
    _E.SUBPROTOCOL_REQUIRED: _row(
        117, 400, None, "the handshake did not offer the subprotocol `tidings.v1.json`"
    ),
    _E.TOKEN_IN_URL: _row(
        118, 400, None, "a token in the URL (it would be logged); send it in `hello`"
    ),
    _E.CONFLICT: _row(
        119, 409, None, "the id was used before, within the tenant, for another notification"
    ),
    _E.TOKEN_MISSING: _row(200, 401, _C.UNAUTHORIZED, "no token"),
    _E.TOKEN_MALFORMED: _row(201, 401, _C.UNAUTHORIZED, "not a JWT"),
    _E.TOKEN_INVALID_SIGNATURE: _row(
        202, 401, _C.UNAUTHORIZED, "signature does not verify (or unknown `kid`)"
    ),
    _E.TOKEN_EXPIRED: _row(203, 401, _C.TOKEN_EXPIRED, "`exp` has passed"),
    _E.TOKEN_NOT_YET_VALID: _row(
        204, 401, _C.UNAUTHORIZED, "`nbf` (or `iat`) is in the future", retryable=True
    ),
    _E.TOKEN_BAD_AUDIENCE: _row(205, 401, _C.UNAUTHORIZED, "`aud` missing or wrong"),
    _E.TOKEN_BAD_ISSUER: _row(206, 401, _C.UNAUTHORIZED, "`iss` missing or wrong"),
    _E.TOKEN_ALGORITHM_NOT_ALLOWED: _row(
        207, 401, _C.UNAUTHORIZED, "`alg` not on the allow-list (`none` never is)"
    ),
    _E.TOKEN_CLAIM_MISSING: _row(
        208, 401, _C.UNAUTHORIZED, "a required claim (user, tenant, `exp`) is absent"
    ),
    _E.TOKEN_CLAIM_INVALID: _row(
        209, 401, _C.UNAUTHORIZED, "a claim has a wrong type or an id outside the grammar"
    ),
    _E.JWKS_UNAVAILABLE: _row(
        210, 503, _C.TRY_AGAIN_LATER, "the key set could not be fetched", retryable=True
    ),
    _E.FORBIDDEN: _row(211, 403, _C.FORBIDDEN, "the token does not allow this"),
    _E.IDENTITY_CHANGED: _row(
        212, 403, _C.FORBIDDEN, "`refresh` token names another tenant or user"
    ),
    _E.QUOTA_EXCEEDED: _row(
        213, 429, _C.RATE_LIMITED, "tenant connection quota full", fatal=True, retryable=True
    ),
    _E.UNAUTHORIZED: _row(214, 401, None, "missing or wrong bearer token (publisher sidecar)"),
    _E.TOKEN_REVOKED: _row(
        215,
        403,
        _C.FORBIDDEN,
        "an operator revoked the token (`jti`), its user or its tenant",
        fatal=True,
    ),
    _E.PUBLISH_RATE_LIMITED: _row(
        216,
        429,
        None,
        "the tenant's publish rate quota is spent (`Retry-After`: until the next token)",
        retryable=True,
    ),
    _E.DAILY_QUOTA_EXCEEDED: _row(
        217,
        429,
        None,
        "the tenant's daily publish volume is spent (`Retry-After`: until 00:00 UTC)",
        retryable=True,
    ),
    _E.USER_CONNECTIONS_FULL: _row(
        218,
        429,
        _C.RATE_LIMITED,
        "the user holds its connection limit over all gateways (close one, or retry later)",
        fatal=True,
        retryable=True,
    ),
    _E.SLOW_CONSUMER: _row(
        300, 503, _C.TRY_AGAIN_LATER, "client did not read in time", fatal=True, retryable=True
    ),
    _E.OVERLOADED: _row(301, 503, _C.TRY_AGAIN_LATER, "over capacity", fatal=True, retryable=True),
    _E.RESTARTING: _row(302, 503, _C.SERVICE_RESTART, "draining", fatal=True, retryable=True),
    _E.UNAVAILABLE: _row(
        303, 503, _C.TRY_AGAIN_LATER, "NATS/JetStream unreachable", fatal=True, retryable=True
    ),
    _E.OUTBOX_FULL: _row(304, 503, None, "the sidecar's durable outbox is full", retryable=True),
    _E.CONFIG: _row(400, 500, None, "a configuration value is invalid"),
    _E.STREAM_CONFLICT: _row(401, 409, None, "the stream has settings that cannot change in place"),
    _E.DEV_CONFLICT: _row(
        402, 409, None, "a port is taken or another `tidings dev` owns the folder"
    ),
    _E.START_FAILED: _row(403, 500, None, "a part of the dev stack failed to start"),
    _E.BENCH_FAILED: _row(404, 500, None, "a benchmark could not run as asked"),
    _E.REFUSED: _row(500, 400, None, "the gateway refused the connection (client side)"),
    _E.REQUEST_REFUSED: _row(501, 400, None, "the gateway refused a request (client side)"),
    _E.CONNECTION_LOST: _row(
        502, 503, None, "the connection dropped (client side)", retryable=True
    ),
    _E.CLOSED: _row(503, 500, None, "the client was closed (client side)"),
    _E.UNREACHABLE: _row(504, 503, None, "reconnect attempts exhausted (client side)"),
}
del _E, _C
