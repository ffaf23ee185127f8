"""The errors the clients raise, and the one place a server's refusal becomes one of them.

Each class names its row in :mod:`tidings.codes` (the rows a client raises, never a server). A
gateway says why it refused in three shapes: an ``error`` frame, the reason of a close frame (an
error code name), or the ``{"error": {"code", "reason"}}`` body of a refused handshake; the
inbox API answers with that same body. :func:`gateway_error` reads them all, so a new field or
code is handled once.
"""

from __future__ import annotations

import orjson

from tidings import protocol as p
from tidings.codes import ErrorCode
from tidings.errors import TidingsError


class ClientError(TidingsError):
    """Base of the errors this client raises."""

    code = ErrorCode.INTERNAL


class Refused(ClientError):
    """The server refused in a way that retrying unchanged cannot fix: the gateway a
    connection, or the inbox API a call.

    ``error`` is the server's error code (``token_malformed``, ``forbidden``…, for an HTTP
    refusal its code such as ``origin_forbidden`` or the inbox API's ``not_found``),
    ``close_code`` the WebSocket close code (``None`` for an HTTP refusal, then ``status`` is
    set).
    """

    code = ErrorCode.REFUSED

    def __init__(
        self,
        reason: str,
        *,
        error: str,
        close_code: int | None = None,
        number: int | None = None,
        status: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(reason, field=field)
        self.error = error
        self.close_code = close_code
        self.number = number
        self.status = status

    @property
    def error_code(self) -> ErrorCode | None:
        """The code as an enum member; ``None`` for a code newer than this client."""
        try:
            return ErrorCode(self.error)
        except ValueError:
            return None

    def __str__(self) -> str:
        how = f"close {self.close_code}" if self.close_code is not None else f"HTTP {self.status}"
        return f"tidings: {self.error} ({how}): {self.reason}"


class RequestRefused(ClientError):
    """The gateway answered a request (subscribe, refresh…) with an ``error`` frame."""

    code = ErrorCode.REQUEST_REFUSED

    def __init__(self, frame: p.ErrorFrame) -> None:
        super().__init__(f"{frame.code}: {frame.reason}", field=frame.field)
        self.frame = frame


class ConnectionLost(ClientError):
    """The connection dropped before a request was answered; the client reconnects by itself."""

    code = ErrorCode.CONNECTION_LOST


class Closed(ClientError):
    """The subscriber was closed."""

    code = ErrorCode.CLOSED


class GaveUp(ClientError):
    """``max_attempts`` connection attempts in a row failed."""

    code = ErrorCode.UNREACHABLE


class Unreachable(ClientError):
    """An HTTP server (the inbox API) did not answer: refused, reset or timed out."""

    code = ErrorCode.UNREACHABLE


def gateway_error(
    said: p.ErrorFrame | bytes | str, *, close_code: int | None = None, status: int | None = None
) -> Refused | RequestRefused:
    """The client's error for what a server said.

    ``said`` is an ``error`` frame (with ``close_code`` when the connection ended after it, else
    it answered a request), the body of a refused handshake or of an inbox API answer (with
    its HTTP ``status``), or the reason of a close frame that came without an error frame
    (with ``close_code``).
    """
    if isinstance(said, p.ErrorFrame):
        if close_code is None:
            return RequestRefused(said)
        return Refused(
            said.reason,
            error=said.code,
            close_code=close_code,
            number=said.number,
            field=said.field,
        )
    if isinstance(said, bytes):
        try:
            body = orjson.loads(said or b"{}")["error"]
            error, reason, field = str(body["code"]), str(body["reason"]), body.get("field")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return Refused(f"HTTP {status}", error=f"http_{status}", status=status)
        return Refused(
            f"HTTP {status}: {reason}",
            error=error,
            status=status,
            field=field if isinstance(field, str) else None,
        )
    return Refused(said, error=said or "closed", close_code=close_code)
