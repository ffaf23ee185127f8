"""A request head too large for picows is answered ``431``, not cut off.

picows reads at most 16 KB of an HTTP request head and drops the connection beyond it without
an answer: a client (or the proxy in front) sees a reset and cannot tell a refusal from a crash
(issue 14). :class:`HeadGuard` sits in front of picows's protocol for the head only: it watches
the bytes picows reads into its own buffer (nothing is copied but the last three bytes), answers
``431 Request Header Fields Too Large`` with the error table's ``too_large`` body once the head
reaches :data:`MAX_HEAD`, and as soon as the head is complete hands the socket to picows
(``transport.set_protocol``): WebSocket frames never pass through it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any, cast

from tidings.codes import ErrorCode
from tidings.errors import error_body
from tidings.gateway.connect_rate import ConnectRate

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024  # picows's own bound on a request head (picows.pyx, _http_max_size)
_END = b"\r\n\r\n"
LINGER_SECONDS = 2.0  # after a 431, how long the rest of the request is read and dropped
LINGER_BYTES = 1 << 20  # ... or how much of it
_SCRATCH = memoryview(bytearray(64 * 1024))  # shared: what it holds is never read


def _refusal() -> bytes:
    body = error_body(ErrorCode.TOO_LARGE, f"request head over {MAX_HEAD} bytes")
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
    )


def _too_many(wait: float) -> bytes:
    body = error_body(ErrorCode.RATE_LIMITED, "too many new connections from this address")
    return (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %d\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b"
        % (max(1, math.ceil(wait)), len(body), body)
    )


class HeadGuard(asyncio.BufferedProtocol):
    """picows's protocol behind a guard on the request head's size (and, when given, on the
    rate of new connections per client address: 429 with ``Retry-After`` before picows sees
    anything)."""

    __slots__ = ("inner", "on_refused", "per_ip", "seen", "tail", "transport", "view")

    def __init__(
        self,
        inner: Any,
        per_ip: ConnectRate | None = None,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner: Any = inner
        self.per_ip = per_ip
        self.on_refused = on_refused
        self.transport: asyncio.Transport | None = None
        self.seen = 0  # bytes of the head read so far; negative once refused (-1 - dropped)
        self.tail = b""  # its last 3 bytes: a terminator may straddle two reads
        self.view: memoryview | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does all an asyncio.Transport does, without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        if self.per_ip is not None:
            peer = transport.get_extra_info("peername")
            wait = self.per_ip.take(str(peer[0])) if peer else 0.0
            if wait:
                self.inner = None  # picows never sees this connection
                self.seen = -1
                self.on_refused()
                transport.write(_too_many(wait))
                transport.write_eof()
                asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
                return
        self.inner.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.seen < 0 or self.inner is None:  # refused: what still comes is read and thrown away
            return _SCRATCH
        view: memoryview = self.inner.get_buffer(sizehint)
        self.view = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        if self.seen < 0:
            self.seen -= nbytes
            if -self.seen > LINGER_BYTES:
                self.transport.close()
            return
        assert self.view is not None
        chunk = self.tail + bytes(self.view[:nbytes])
        end = chunk.find(_END)
        head = -1 if end < 0 else self.seen - len(self.tail) + end
        self.seen += nbytes
        if (head < 0 and self.seen >= MAX_HEAD) or head >= MAX_HEAD:
            self._refuse()
            return
        if head >= 0:
            self.transport.set_protocol(self.inner)  # from here on picows alone
        else:
            self.tail = chunk[-3:]
        self.inner.buffer_updated(nbytes)

    def _refuse(self) -> None:
        """Answer 431, then read (and drop) what the client is still sending for a moment:
        closing with unread bytes would reset the socket, and the client might never read the
        answer (a lingering close, as nginx does)."""
        transport = self.transport
        assert transport is not None
        log.info("request head over %d bytes refused with 431", MAX_HEAD)
        self.seen = -1
        transport.write(_refusal())
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self.seen < 0:
            assert self.transport is not None
            self.transport.close()
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


def guard(
    server: asyncio.Server,
    *,
    per_ip: ConnectRate | None = None,
    on_refused: Callable[[], None] = lambda: None,
) -> asyncio.Server:
    """Put a :class:`HeadGuard` in front of every connection of a server created with
    ``start_serving=False``. asyncio keeps the factory as ``Server._protocol_factory`` (3.11
    to 3.13); a test fails if that ever changes."""
    factory = server._protocol_factory  # type: ignore[attr-defined]
    limit = per_ip if per_ip is not None and per_ip.rate > 0 else None
    server._protocol_factory = lambda: HeadGuard(factory(), limit, on_refused)  # type: ignore[attr-defined]
    return server
