"""The error hierarchy shared by the HTTP API, the wire protocol and the SDKs.

Every error carries a stable ``code`` (a client can switch on it forever) and the HTTP status
the publisher answers with. Validation errors also name the offending ``field``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TidingsError(Exception):
    """Base of every error Tidings raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"tidings: {where}{self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON body an HTTP client (or a wire ``error`` frame) receives."""
        body: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.field is not None:
            body["field"] = self.field
        return body

    def at(self, prefix: str) -> TidingsError:
        """Prefix the field path, e.g. ``tenant`` -> ``notifications[3].tenant``."""
        self.field = f"{prefix}.{self.field}" if self.field else prefix
        return self


class InvalidField(TidingsError):
    """A value failed validation; ``field`` names it."""

    code = "invalid"
    http_status = 400


class MalformedBody(TidingsError):
    """The body is not JSON, or not the JSON shape expected."""

    code = "malformed"
    http_status = 400


class UnknownEvent(InvalidField):
    """The event type is not in the catalogue and unknown types are not allowed."""

    code = "unknown_event"


class PayloadTooLarge(TidingsError):
    code = "too_large"
    http_status = 413


class UnsupportedMediaType(TidingsError):
    """The request body is not declared as JSON."""

    code = "unsupported_media_type"
    http_status = 415


class Unauthorized(TidingsError):
    code = "unauthorized"
    http_status = 401


class Forbidden(TidingsError):
    code = "forbidden"
    http_status = 403


class OutboxFull(TidingsError):
    """The durable outbox reached its bound; the caller should retry later."""

    code = "outbox_full"
    http_status = 503

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unavailable(TidingsError):
    """NATS or JetStream did not answer in time."""

    code = "unavailable"
    http_status = 503


class ConfigError(TidingsError):
    """A configuration value is invalid; ``field`` is the environment variable."""

    code = "config"


class StreamConflict(TidingsError):
    """The existing stream has settings that cannot be changed in place."""

    code = "stream_conflict"
