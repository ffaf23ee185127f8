"""Every error the services raise on purpose, each naming its row of :mod:`tidings.codes`.

One hierarchy (single inheritance) whose classes differ only where handling differs: a caller
catches :class:`AuthError` to refuse a token, :class:`Unavailable` to retry, and so on. The
HTTP status, the close code and the number come from the row, never from the class; the JSON
body every HTTP surface answers with is built here, once (:func:`error_body`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from tidings.codes import ErrorCode


class TidingsError(Exception):
    """Base of every error Tidings raises on purpose; ``code`` names its row."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"tidings: {where}{self.reason}"

    @property
    def http_status(self) -> int:
        return int(self.code.http_status)

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object an HTTP client (or a wire ``error`` frame) receives."""
        return error_dict(self.code, self.reason, self.field)

    def at(self, prefix: str) -> TidingsError:
        """Prefix the field path, e.g. ``tenant`` -> ``notifications[3].tenant``."""
        self.field = f"{prefix}.{self.field}" if self.field else prefix
        return self


def error_dict(code: ErrorCode, reason: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code.value, "reason": reason}
    if field is not None:
        body["field"] = field
    return body


def error_body(error: TidingsError | ErrorCode, reason: str | None = None) -> bytes:
    """``{"error": {"code", "reason", "field"?}}``: the one error body of every HTTP surface."""
    if isinstance(error, ErrorCode):
        return orjson.dumps({"error": error_dict(error, reason or error.meaning)})
    return orjson.dumps({"error": error.to_dict()})


def error_code_of(exc: BaseException) -> ErrorCode:
    """The code for ``exc``: its own when it is ours, else ``internal``."""
    return exc.code if isinstance(exc, TidingsError) else ErrorCode.INTERNAL


# --- a request body or a client frame ---------------------------------------------------------


class Malformed(TidingsError):
    """The body or frame is not JSON, or not the JSON shape expected."""

    code = ErrorCode.MALFORMED


class MissingField(TidingsError):
    code = ErrorCode.MISSING_FIELD


class InvalidField(TidingsError):
    """A value failed validation; ``field`` names it."""

    code = ErrorCode.INVALID_FIELD


class UnknownEvent(InvalidField):
    """The event type is not in the catalogue and unknown types are not allowed."""

    code = ErrorCode.UNKNOWN_EVENT


class UnknownFrameType(TidingsError):
    code = ErrorCode.UNKNOWN_TYPE


class BadRoom(TidingsError):
    code = ErrorCode.BAD_ROOM


class TooManyRooms(TidingsError):
    code = ErrorCode.TOO_MANY_ROOMS


class HelloRequired(TidingsError):
    code = ErrorCode.HELLO_REQUIRED


class UnexpectedFrame(TidingsError):
    code = ErrorCode.UNEXPECTED_FRAME


class TooLarge(TidingsError):
    code = ErrorCode.TOO_LARGE


class RateLimited(TidingsError):
    code = ErrorCode.RATE_LIMITED


class Conflict(TidingsError):
    """An idempotency key reused with a different notification: not a retry, and not stored."""

    code = ErrorCode.CONFLICT


class NotFound(TidingsError):
    """No such path, or no such notification for this caller (the same answer for an id that
    does not exist and one of another tenant or user: no existence oracle)."""

    code = ErrorCode.NOT_FOUND


class UnsupportedMediaType(TidingsError):
    """The request body is not declared as JSON."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


# --- the token and what it allows -------------------------------------------------------------


class AuthError(TidingsError):
    """A token was refused; ``code`` (and so its close code) goes on the wire."""

    code = ErrorCode.TOKEN_INVALID_SIGNATURE


class TokenMissing(AuthError):
    code = ErrorCode.TOKEN_MISSING


class TokenMalformed(AuthError):
    code = ErrorCode.TOKEN_MALFORMED


class TokenInvalidSignature(AuthError):
    code = ErrorCode.TOKEN_INVALID_SIGNATURE


class TokenExpired(AuthError):
    code = ErrorCode.TOKEN_EXPIRED


class TokenNotYetValid(AuthError):
    code = ErrorCode.TOKEN_NOT_YET_VALID


class TokenBadAudience(AuthError):
    code = ErrorCode.TOKEN_BAD_AUDIENCE


class TokenBadIssuer(AuthError):
    code = ErrorCode.TOKEN_BAD_ISSUER


class TokenAlgorithmNotAllowed(AuthError):
    code = ErrorCode.TOKEN_ALGORITHM_NOT_ALLOWED


class TokenClaimMissing(AuthError):
    code = ErrorCode.TOKEN_CLAIM_MISSING


class TokenClaimInvalid(AuthError):
    code = ErrorCode.TOKEN_CLAIM_INVALID


class JwksUnavailable(AuthError):
    """The key set could not be fetched: not the client's fault, it should retry later."""

    code = ErrorCode.JWKS_UNAVAILABLE


class TokenRevoked(AuthError):
    """An operator revoked the token (its ``jti``), its user or its tenant (``tidings revoke``)."""

    code = ErrorCode.TOKEN_REVOKED


class Forbidden(TidingsError):
    """The token does not allow what was asked for (a room, a tenant)."""

    code = ErrorCode.FORBIDDEN


class IdentityChanged(Forbidden):
    """A ``refresh`` token for another tenant or user: a connection keeps its identity."""

    code = ErrorCode.IDENTITY_CHANGED


AUTH_ERRORS: tuple[type[TidingsError], ...] = (
    TokenMissing,
    TokenMalformed,
    TokenInvalidSignature,
    TokenExpired,
    TokenNotYetValid,
    TokenBadAudience,
    TokenBadIssuer,
    TokenAlgorithmNotAllowed,
    TokenClaimMissing,
    TokenClaimInvalid,
    JwksUnavailable,
    Forbidden,
    IdentityChanged,
)


class QuotaExceeded(TidingsError):
    code = ErrorCode.QUOTA_EXCEEDED


class PublishQuotaError(TidingsError):
    """A tenant's publish quota refused a publish; ``retry_after`` (whole seconds) says when
    the same publish can be accepted (the sidecar's ``Retry-After``)."""

    def __init__(self, reason: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(reason, field=field)
        self.retry_after = retry_after


class PublishRateLimited(PublishQuotaError):
    """The tenant publishes faster than its rate quota (a token bucket)."""

    code = ErrorCode.PUBLISH_RATE_LIMITED


class DailyQuotaExceeded(PublishQuotaError):
    """The tenant's notifications of the day (UTC) reached its daily volume quota."""

    code = ErrorCode.DAILY_QUOTA_EXCEEDED


class UserConnectionsFull(TidingsError):
    """One user holds ``TIDINGS_GATEWAY_USER_CONNECTIONS`` connections over all gateways."""

    code = ErrorCode.USER_CONNECTIONS_FULL


class Unauthorized(TidingsError):
    """The sidecar's bearer token is missing or wrong."""

    code = ErrorCode.UNAUTHORIZED


# --- the service's own state ------------------------------------------------------------------


class SlowConsumer(TidingsError):
    code = ErrorCode.SLOW_CONSUMER


class Unavailable(TidingsError):
    """NATS or JetStream did not answer in time."""

    code = ErrorCode.UNAVAILABLE


class StoredRowInvalid(TidingsError):
    """A row read from the database fails the validation its writer applies (edited by hand, or
    written by another version): not the caller's fault, so ``internal``; ``field`` names the
    column (``inbox_preferences.channel``) and the reason the row."""


class ReplayTooLarge(TidingsError):
    """A resume reaches back further than the replay bound (answered with a ``reset``)."""


class IllegalTransition(TidingsError):
    """A connection was asked to move to a state its lifecycle does not allow."""


class OutboxFull(TidingsError):
    """The durable outbox reached its bound; the caller should retry later."""

    code = ErrorCode.OUTBOX_FULL

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


# --- configuration and operations -------------------------------------------------------------


class ConfigError(TidingsError):
    """A configuration value is invalid; ``field`` is the environment variable."""

    code = ErrorCode.CONFIG


class StreamConflict(TidingsError):
    """The existing stream has settings that cannot be changed in place."""

    code = ErrorCode.STREAM_CONFLICT


class DevConflict(ConfigError):
    """The stack cannot start here: a port is taken or another `tidings dev` owns the dir."""

    code = ErrorCode.DEV_CONFLICT


class StartFailed(TidingsError):
    """A part of the dev stack (or the embedded nats-server) failed to start."""

    code = ErrorCode.START_FAILED


class PartFailed(TidingsError):
    """A long-running part of a process (a loop, a server, the NATS link) died unexpectedly."""


class BenchFailed(TidingsError):
    """A benchmark could not run as asked (a child failed, a deadline passed)."""

    code = ErrorCode.BENCH_FAILED
